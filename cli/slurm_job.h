// Slurm batch jobs of a pretraining run (bertctl submit, status, cancel,
// resume): the resources a job asks for and their checks, the batch script
// rendered from slurm/pretrain.sbatch.in, and the run's job record
// RUN_DIR/slurm.json. The sbatch/squeue/scontrol/scancel calls run the
// Slurm client commands from PATH; a missing one is an error naming it.
// Not thread-safe (popen); every function returns Status/Result, none exits.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace bert::cli {

struct SlurmResources {
  uint32_t nodes = 1;              // --nodes: nodes of the allocation
  uint32_t gpus_per_node = 0;      // --gpus-per-node: 0 = CPU mode; else GPU mode, one worker rank per GPU
  uint32_t tasks_per_node = 1;     // CPU mode: worker ranks per node (GPU mode: gpus_per_node)
  uint32_t cpus_per_task = 1;      // --cpus-per-task: cores per worker rank
  std::string time = "01:00:00";   // --time: Slurm time limit ([D-]H:M:S, M:S, M, D-H, D-H:M)
  std::string partition;           // --partition; "" = the cluster's default
  std::string account;             // --account; "" = the user's default
  uint32_t signal_before_s = 300;  // USR1 reaches the batch script this long before the time limit
};

// Seconds of a Slurm time limit; an error naming --time if it is malformed.
Result<int64_t> ParseSlurmTime(const std::string& text);
// Checks every field, naming the flag: --nodes 0, a malformed --time, ...
Status ValidateResources(const SlurmResources& resources);
// Worker ranks over the allocation.
uint32_t WorldSize(const SlurmResources& resources);
// Flags for the workers' srun step beyond --ntasks (see cli/launcher.h).
std::vector<std::string> SrunResourceArgs(const SlurmResources& resources);

struct SbatchJob {
  SlurmResources resources;
  std::string job_name;                    // --job-name; the singleton chain key (bert-RUNNAME)
  std::string run_dir;                     // absolute; logs go to RUN_DIR/slurm/
  std::string workdir;                     // absolute; the job runs here (relative config paths)
  std::string bertctl;                     // absolute path of bertctl on the nodes
  std::string worker_bin;                  // absolute path of bert-worker (shown in the srun line)
  std::vector<std::string> pretrain_args;  // after `bertctl pretrain`: --config FILE, --name, ...
};

// The batch script (slurm/pretrain.sbatch.in with the job's values).
std::string RenderSbatch(const SbatchJob& job);

// RUN_DIR/slurm.json: {"job_name", "script", "job_ids": [oldest .. newest]}.
struct SlurmRecord {
  std::string job_name;              // --job-name of every job of the run
  std::string script;                // RUN_DIR/slurm/job.sbatch
  std::vector<std::string> job_ids;  // every submission, oldest first
};
std::string SlurmRecordPath(const std::string& run_dir);
// NotFound when the run was never submitted; InvalidArgument naming the
// file when it is not a record.
Result<SlurmRecord> ReadSlurmRecord(const std::string& run_dir);
Status WriteSlurmRecord(const std::string& run_dir, const SlurmRecord& record);  // temp + rename

// Runs a Slurm client command (argv[0] from PATH). NotFound naming the
// command if it is not installed; otherwise the exit code and output.
struct CommandOutput {
  int exit_code = -1;
  std::string output;  // stdout (stderr too when merge_stderr)
};
Result<CommandOutput> RunSlurmCommand(const std::vector<std::string>& argv, bool merge_stderr = true);

// FailedPrecondition naming the partition and the ones that exist.
Status CheckPartition(const std::string& partition);
// sbatch --parsable SCRIPT: the job id.
Result<std::string> SubmitScript(const std::string& script_path);

struct SlurmJobState {
  std::string state;   // PENDING, RUNNING, COMPLETED, ...; "" if Slurm no longer knows the job
  std::string reason;  // why pending (Dependency, Resources, ...), or ""
  std::string source;  // squeue, scontrol or sacct
};
// The job's state from squeue, else scontrol show job, else sacct.
Result<SlurmJobState> QueryJob(const std::string& job_id);

// Submits RUN_DIR's recorded batch script again (bertctl resume of a Slurm
// run: the job resumes from the latest checkpoint) and records the job id.
Result<std::string> ResubmitRun(const std::string& run_dir);

// The Slurm side of `bertctl status RUN_DIR`: the newest job's state.
struct RunJobStatus {
  std::string job_id;    // newest job of the run
  std::string job_name;  // --job-name
  SlurmJobState job;     // its state (state "" when Slurm forgot it)
  std::string error;     // why there is no state (a broken record, no squeue), or ""
};
// nullopt when the run was never submitted to Slurm.
std::optional<RunJobStatus> RunSlurmStatus(const std::string& run_dir);

}  // namespace bert::cli
