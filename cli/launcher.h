// How `bertctl pretrain` starts the worker ranks of one generation: under
// Open MPI's mpirun on this machine, or as a Slurm job step (srun
// --mpi=pmix) inside an allocation. Pure functions: they only build command
// lines, so `bertctl submit --dry-run` shows exactly the srun line that the
// batch job will run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace bert::cli {

enum class LauncherKind {
  kMpirun,  // mpirun -np N on this machine (the default)
  kSrun,    // srun --mpi=pmix inside a Slurm allocation (sbatch/salloc)
};

// "mpirun" or "srun"; anything else is an error naming --launcher.
Result<LauncherKind> ParseLauncher(const std::string& name);
const char* LauncherName(LauncherKind kind);

struct SrunSpec {
  std::string srun = "srun";       // the srun binary
  uint32_t workers = 1;            // --ntasks: ranks over the whole allocation
  std::vector<std::string> extra;  // e.g. --ntasks-per-node=8 --gpus-per-task=1 (before the worker binary)
  // Per-rank output file (srun --output; %j job, %t rank), appended across
  // the relaunches of one job. Empty: srun's own output (bertctl's log).
  std::string rank_log_pattern;
};

// srun --mpi=pmix --ntasks=N --kill-on-bad-exit=1 [--output=P --open-mode=append]
//   [EXTRA] WORKER_ARGV...
// --kill-on-bad-exit: one dead rank ends the step (the rest would wait on a
// collective forever); bertctl then relaunches the step from the checkpoint.
std::vector<std::string> SrunArgv(const SrunSpec& spec, const std::vector<std::string>& worker_argv);

// The endpoint workers on other nodes connect to: the bound endpoint with a
// wildcard host (tcp://0.0.0.0:P, tcp://*:P) replaced by `host`; others as
// they are. "" if `bound` is not tcp://HOST:PORT.
std::string AdvertisedEndpoint(const std::string& bound, const std::string& host);

// This machine's host name (gethostname), "localhost" if it has none.
std::string HostName();

// POSIX shell quoting for one word ('...' unless it is plainly safe).
std::string ShellQuote(const std::string& word);
std::string ShellJoin(const std::vector<std::string>& words);

}  // namespace bert::cli
