// bertctl submit / cancel: pretraining as a Slurm batch job. submit renders
// slurm/pretrain.sbatch.in for the run (cli/slurm_job.h) into
// RUN_DIR/slurm/job.sbatch, submits it with `sbatch --parsable` and records
// the job id in RUN_DIR/slurm.json; --dry-run prints the script and touches
// nothing. cancel scancels the run's newest job. (bertctl status shows the
// job's state; bertctl resume resubmits a submitted run.)
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "cli/command.h"
#include "cli/slurm_job.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/process.h"
#include "common/run_config.h"

namespace bert::cli {
namespace {

namespace fs = std::filesystem;

constexpr int kExitOk = 0, kExitError = 1, kExitUsage = 2;  // as bertctl pretrain

struct SubmitArgs {
  std::string config_path;
  std::string name;              // run name; RUN_DIR = runs/NAME (as bertctl pretrain --name)
  int64_t steps = 0;             // 0: the config's train.steps
  SlurmResources resources;
  int max_restarts = 3;          // relaunches of a failed worker step within one job
  std::string worker_args;       // extra bert-worker flags
  std::string coordinator_args;  // extra bert-coordinator flags
  bool dry_run = false;          // print the script; write and submit nothing
};

int Fail(const Status& status) {
  std::cerr << "bertctl: " << status.message() << "\n";
  return status.code() == Status::Code::kInvalidArgument || status.code() == Status::Code::kFailedPrecondition
             ? kExitUsage
             : kExitError;
}

// $ENV_VAR if set, else next to this bertctl; absolute.
std::string SiblingBinary(const std::string& name, const char* env_var) {
  const char* from_env = std::getenv(env_var);
  if (from_env != nullptr && *from_env != '\0') return fs::absolute(from_env).lexically_normal().string();
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ((ec ? fs::current_path() : self.parent_path()) / name).string();
}

int RunSubmit(const SubmitArgs& args) {
  Status valid = ValidateResources(args.resources);
  if (!valid.ok()) return Fail(valid);
  Result<RunConfig> config = LoadRunConfig(args.config_path);
  if (!config.ok()) return Fail(Status::InvalidArgument(config.status().message()));
  if (!args.name.empty() && (args.name.find('/') != std::string::npos || args.name == "." || args.name == "..")) {
    return Fail(Status::InvalidArgument("--name: must be a name without '/', got '" + args.name + "'"));
  }
  const std::string name = args.name.empty() ? config->name : args.name;
  const std::string run_dir =
      fs::absolute(args.name.empty() ? config->run_dir : "runs/" + args.name).lexically_normal().string();

  SbatchJob job;
  job.resources = args.resources;
  job.job_name = "bert-" + name;
  job.run_dir = run_dir;
  job.workdir = fs::current_path().string();
  job.bertctl = SiblingBinary("bertctl", "BERT_BERTCTL_BIN");
  job.worker_bin = SiblingBinary("bert-worker", "BERT_WORKER_BIN");
  job.pretrain_args = {"--config", fs::absolute(args.config_path).lexically_normal().string()};
  if (!args.name.empty()) job.pretrain_args.insert(job.pretrain_args.end(), {"--name", args.name});
  if (args.steps > 0) job.pretrain_args.insert(job.pretrain_args.end(), {"--steps", std::to_string(args.steps)});
  job.pretrain_args.insert(job.pretrain_args.end(), {"--max-restarts", std::to_string(args.max_restarts)});
  if (!args.worker_args.empty()) job.pretrain_args.insert(job.pretrain_args.end(), {"--worker-args", args.worker_args});
  if (!args.coordinator_args.empty()) {
    job.pretrain_args.insert(job.pretrain_args.end(), {"--coordinator-args", args.coordinator_args});
  }
  const std::string script = RenderSbatch(job);
  if (args.dry_run) {
    std::cout << script;
    return kExitOk;
  }

  if (!FindExecutable("sbatch")) {
    return Fail(Status::NotFound("sbatch not found on PATH: bertctl submit needs the Slurm client (apt-get install "
                                 "slurm-client) on a cluster's login node; --dry-run prints the script"));
  }
  if (!args.resources.partition.empty()) {
    Status known = CheckPartition(args.resources.partition);
    if (!known.ok()) return Fail(known);
  }
  std::error_code ec;
  fs::create_directories(run_dir + "/slurm", ec);
  if (ec) return Fail(Status::IoError("cannot create " + run_dir + "/slurm: " + ec.message()));
  const std::string script_path = run_dir + "/slurm/job.sbatch";
  Status written = WriteFileAtomic(script_path, script);
  if (!written.ok()) return Fail(written);
  ::chmod(script_path.c_str(), 0755);
  SlurmRecord record;
  Result<SlurmRecord> previous = ReadSlurmRecord(run_dir);
  if (previous.ok()) record = *previous;
  record.job_name = job.job_name;
  record.script = script_path;
  Result<std::string> id = SubmitScript(script_path);
  if (!id.ok()) return Fail(id.status());
  record.job_ids.push_back(*id);
  Status recorded = WriteSlurmRecord(run_dir, record);
  if (!recorded.ok()) return Fail(recorded);
  std::cout << "submitted job " << *id << " (" << job.job_name << ", " << WorldSize(args.resources)
            << " worker ranks on " << args.resources.nodes << " node(s)); run directory " << run_dir
            << "\nwatch: bertctl status " << run_dir << "   log: " << run_dir << "/slurm/job-" << *id << ".log\n";
  return kExitOk;
}

std::function<int()> SetupSubmit(CLI::App& app) {
  auto args = std::make_shared<SubmitArgs>();
  CLI::App* cmd = app.add_subcommand("submit", "Submit a pretraining run as a Slurm batch job");
  cmd->footer(
      "Renders slurm/pretrain.sbatch.in for the run into RUN_DIR/slurm/job.sbatch, submits it with\n"
      "`sbatch --parsable` and records the job id in RUN_DIR/slurm.json. The job runs `bertctl pretrain\n"
      "--launcher srun` on its first node: the coordinator there, the workers as one srun --mpi=pmix step over\n"
      "all nodes (GPU mode, --gpus-per-node G: one rank per GPU; CPU mode: --tasks-per-node ranks per node).\n"
      "A failed worker step is relaunched from the latest checkpoint (--max-restarts). USR1 arrives\n"
      "--signal-before-s before the time limit (or by `scancel --signal=USR1 --batch JOB`): the run checkpoints\n"
      "at the next step boundary, stops, and the job requeues itself and resumes from that checkpoint.\n"
      "Jobs of one run share a job name with --dependency=singleton, so resubmissions queue as a chain.\n"
      "Logs: RUN_DIR/slurm/job-JOB.log (the job), RUN_DIR/slurm/job-JOB-rank-R.log (each worker rank).\n"
      "--dry-run prints the script and writes and submits nothing (no cluster needed).\n"
      "Then: bertctl status RUN_DIR, bertctl cancel RUN_DIR, bertctl resume RUN_DIR (resubmits).\n"
      "Example: bertctl submit --config configs/runs/base.yaml --nodes 4 --gpus-per-node 8 --cpus-per-task 8 \\\n"
      "           --time 24:00:00 --partition gpu --account myproj\n"
      "Exit codes: 0 submitted (or printed), 1 sbatch missing or failed, 2 bad flag, config or partition.");
  cmd->add_option("--config", args->config_path, "Run config (YAML)")->required();
  cmd->add_option("--name", args->name, "Run name; the run directory becomes runs/NAME");
  cmd->add_option("--steps", args->steps, "Optimizer steps (override train.steps)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  SlurmResources& r = args->resources;
  cmd->add_option("--nodes", r.nodes, "Nodes")->capture_default_str();
  cmd->add_option("--gpus-per-node", r.gpus_per_node, "GPUs per node, one worker rank each (0: CPU mode)")
      ->capture_default_str();
  cmd->add_option("--tasks-per-node", r.tasks_per_node, "CPU mode: worker ranks per node")->capture_default_str();
  cmd->add_option("--cpus-per-task", r.cpus_per_task, "Cores per worker rank")->capture_default_str();
  cmd->add_option("--time", r.time, "Time limit, e.g. 04:00:00 or 2-00:00:00")->capture_default_str();
  cmd->add_option("--partition", r.partition, "Partition (checked with sinfo; default: the cluster's)");
  cmd->add_option("--account", r.account, "Account to charge");
  cmd->add_option("--signal-before-s", r.signal_before_s, "USR1 (checkpoint, stop, requeue) this long before --time")
      ->capture_default_str();
  cmd->add_option("--max-restarts", args->max_restarts, "Relaunches of a failed worker step within a job")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  cmd->add_option("--worker-args", args->worker_args, "Extra bert-worker flags");
  cmd->add_option("--coordinator-args", args->coordinator_args, "Extra bert-coordinator flags");
  cmd->add_flag("--dry-run", args->dry_run, "Print the batch script; write and submit nothing");
  return [args] { return RunSubmit(*args); };
}

std::function<int()> SetupCancel(CLI::App& app) {
  auto run_dir = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("cancel", "Cancel a submitted run's Slurm job (scancel)");
  cmd->footer("Cancels the newest job recorded in RUN_DIR/slurm.json. Its checkpoints stay: bertctl resume RUN_DIR\n"
              "submits the run again from the latest one. Exit codes: 0 cancelled, 1 scancel failed, 2 not a\n"
              "submitted run.");
  cmd->add_option("RUN_DIR", *run_dir, "The run directory")->required();
  return [run_dir] {
    Result<SlurmRecord> record = ReadSlurmRecord(*run_dir);
    if (!record.ok()) return Fail(Status::InvalidArgument(record.status().message()));
    if (record->job_ids.empty()) return Fail(Status::InvalidArgument(SlurmRecordPath(*run_dir) + ": no job id"));
    const std::string& id = record->job_ids.back();
    Result<CommandOutput> cancelled = RunSlurmCommand({"scancel", id});
    if (!cancelled.ok()) return Fail(cancelled.status());
    if (cancelled->exit_code != 0) {
      std::cerr << "bertctl: scancel " << id << " failed: " << cancelled->output;
      return kExitError;
    }
    std::cout << "cancelled job " << id << " (" << record->job_name << "); resume with bertctl resume " << *run_dir
              << "\n";
    return kExitOk;
  };
}

}  // namespace

BERT_REGISTER_COMMAND(SetupSubmit);
BERT_REGISTER_COMMAND(SetupCancel);

}  // namespace bert::cli
