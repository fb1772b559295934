// Finding and launching bert-worker (and bert-coordinator) from bertctl:
// shared by `bertctl pretrain`, `finetune`, `eval` and `predict`.
// No LibTorch; POSIX, Linux.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace bert::cli {

// The absolute path of `name` (bert-worker, bert-coordinator): $env_var if
// set, else next to the running bertctl. NotFound naming the path tried and
// how to fix it.
Result<std::string> LocateBinary(const std::string& name, const char* env_var);

// Cores this process may use, hyperthreads of a core counted once: Open
// MPI's default number of slots, beyond which mpirun refuses to start
// without --oversubscribe.
int UsableCores();

// mpirun [--allow-run-as-root] -np N --bind-to none [--oversubscribe] EXTRA...
// (the flags `bertctl pretrain` uses; the program and its flags follow).
std::vector<std::string> MpirunPrefix(const std::string& mpirun, uint32_t workers,
                                      const std::vector<std::string>& extra_args);

// Runs `argv` to its end, its output shown on stderr (and appended to
// `log_path` unless ""). Ctrl-C or SIGTERM is forwarded as SIGTERM (twice:
// SIGKILL). Returns the child's exit code (128 + N for signal N), or 1 when
// it could not be started (logged with `tag`, e.g. "[finetune]").
int RunToEnd(const std::vector<std::string>& argv, const std::string& log_path, const std::string& tag);

}  // namespace bert::cli
