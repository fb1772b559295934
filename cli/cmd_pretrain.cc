// bertctl pretrain: one pretraining run on this machine. Freezes the
// resolved config into the run directory, starts bert-coordinator, waits for
// the endpoint it bound, launches the workers with mpirun, and supervises
// both until they end: a failure on one side gives the other a grace period
// to exit by itself (with a code that says what it saw), then SIGTERM, then
// SIGKILL (cli/supervisor.h). Ctrl-C only sets a flag; the loop forwards SIGTERM.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/elastic.h"
#include "cli/launcher.h"
#include "cli/slurm_job.h"
#include "cli/supervisor.h"
#include "cli/worker_launch.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/process.h"
#include "common/run_config.h"
#include "datapipe/dispatch_plan.h"

namespace bert::cli {
namespace {

namespace fs = std::filesystem;

struct PretrainArgs {
  std::string config_path;
  uint32_t workers = 1;
  std::string name;                        // also the run dir runs/NAME
  int64_t steps = 0;                       // 0: the config's train.steps
  std::string time_budget;                 // "": the config's train.time_budget
  std::string bind = "tcp://127.0.0.1:*";  // the coordinator's endpoint
  std::string mpirun_args;                 // extra mpirun flags, split on whitespace
  std::string coordinator_args;            // extra bert-coordinator flags, split on whitespace
  bool show_coordinator = false;           // echo the coordinator's output here as well
  bool insecure = false;                   // no CURVE: --insecure to the coordinator and the workers
  int max_restarts = 3;                    // relaunches after a retryable failure
  double restart_backoff_s = 2;            // first wait before a relaunch; doubles, at most 60 s
  std::string launcher = "mpirun";         // mpirun, or srun inside a Slurm allocation (cli/launcher.h)
  std::string srun_args;                   // extra srun flags, split on whitespace
  std::string worker_args;                 // extra bert-worker flags, split on whitespace
  uint32_t min_workers = 0;                // elastic shrink down to this many (0: off; cli/elastic.h)
  double replace_timeout_s = 300;          // a lost worker not back by then is given up
};

std::vector<std::string> SplitWords(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

std::string Absolute(const std::string& path) {
  return path.empty() ? path : fs::absolute(path).lexically_normal().string();
}

// The run config with the command's overrides, every path absolute (the
// frozen copy is read from the run directory by every process), checked
// against the world size.
Result<RunConfig> ResolveConfig(const PretrainArgs& args) {
  if (!args.name.empty() && (args.name.find('/') != std::string::npos || args.name == "." || args.name == "..")) {
    return Status::InvalidArgument("--name: must be a name without '/', got '" + args.name + "'");
  }
  Result<RunConfig> loaded = LoadRunConfig(args.config_path);
  if (!loaded.ok()) return Status::InvalidArgument(loaded.status().message());
  RunConfig config = std::move(loaded).value();
  if (!args.name.empty()) {
    config.name = args.name;
    config.run_dir = "runs/" + args.name;
  }
  if (args.steps > 0) {
    config.train.steps = args.steps;
    config.train.warmup_steps = std::min(config.train.warmup_steps, args.steps);
  }
  if (!args.time_budget.empty()) {
    Result<int64_t> budget = ParseTimeBudget(args.time_budget);
    if (!budget.ok()) return Status::InvalidArgument("--time-budget: " + budget.status().message());
    config.train.time_budget_s = *budget;
  }
  config.run_dir = Absolute(config.run_dir);
  config.model = Absolute(config.model);
  config.vocab = Absolute(config.vocab);
  for (std::string& db : config.data.db) db = Absolute(db);
  Status valid = config.Validate();
  if (!valid.ok()) return Status::InvalidArgument(args.config_path + ": " + valid.message());
  Result<DispatchGeometry> geometry =
      DispatchGeometry::Make(config.train.global_batch_size, args.workers, config.train.micro_batch_size);
  if (!geometry.ok()) {
    return Status::InvalidArgument(args.config_path + " with --workers " + std::to_string(args.workers) + ": " +
                                   geometry.status().message());
  }
  return config;
}

std::string ReadTrimmed(const std::string& path) {
  std::ifstream in(path);
  std::string value;
  std::getline(in, value);
  return value;
}

// Creates the run directory and freezes the config into RUN_DIR/config.yaml.
// Returns true when it was already there with the same content (a resume).
Result<bool> FreezeConfig(const RunConfig& config) {
  std::error_code ec;
  fs::create_directories(config.run_dir + "/coordinator", ec);
  if (ec) return Status::IoError("cannot create " + config.run_dir + "/coordinator: " + ec.message());
  const std::string path = config.run_dir + "/config.yaml";
  const std::string yaml = config.ToYaml();
  if (fs::exists(path)) {
    Result<std::string> frozen = ReadFile(path);
    if (!frozen.ok()) return frozen.status();
    if (*frozen != yaml) {
      return Status::FailedPrecondition(path + " holds a different config (the run was started with other settings): "
                                        "pick another --name, or remove " + config.run_dir + " to start over");
    }
    return true;
  }
  BERT_RETURN_IF_ERROR(WriteFileAtomic(path, yaml));
  return false;
}

// An exclusive flock on RUN_DIR/pretrain.lock: one launcher per run.
class RunLock {
 public:
  ~RunLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  Status Acquire(const std::string& run_dir) {
    const std::string path = run_dir + "/pretrain.lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) return Status::IoError("cannot open " + path + ": " + std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      return Status::FailedPrecondition("another bertctl pretrain is running this run (" + path +
                                        " is locked): pick another --name");
    }
    return Status::Ok();
  }

 private:
  int fd_ = -1;
};

// mpirun [--allow-run-as-root] -np N --bind-to none [--oversubscribe] [EXTRA]
//   bert-worker --config RUN_DIR/config.yaml --coordinator ENDPOINT
std::vector<std::string> MpirunArgv(const std::string& mpirun, const std::string& worker_bin,
                                    const std::string& config_path, const std::string& endpoint,
                                    const PretrainArgs& args) {
  std::vector<std::string> argv = MpirunPrefix(mpirun, args.workers, SplitWords(args.mpirun_args));
  argv.insert(argv.end(), {worker_bin, "--config", config_path, "--coordinator", endpoint});
  return argv;
}

// Waits for RUN_DIR/coordinator/endpoint; "" if the coordinator exited or we
// were interrupted first.
std::string WaitForEndpoint(Child& coordinator, const std::string& path) {
  while (g_signal_count.load() == 0 && coordinator.running()) {
    Result<std::string> text = ReadFile(path);
    if (text.ok() && !text->empty() && text->back() == '\n') return text->substr(0, text->size() - 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return "";
}

// RUN_DIR/launch.json: how the run was launched, for `bertctl resume`.
Status WriteLaunchRecord(const std::string& run_dir, const PretrainArgs& args) {
  std::ostringstream json;
  json << "{\"workers\": " << args.workers << ", \"bind\": \"" << args.bind << "\", \"max_restarts\": "
       << args.max_restarts << "}\n";
  return WriteFileAtomic(run_dir + "/launch.json", json.str());
}

// Starts the coordinator and the workers of one generation and supervises
// them until both are gone. Returns true if interrupted.
bool RunOnce(const PretrainArgs& args, const std::string& coordinator_bin, const std::string& worker_bin,
             const std::string& mpirun, const std::string& config_path, const std::string& endpoint_path,
             uint64_t generation, Child* coordinator, Child* workers) {
  std::vector<std::string> coordinator_argv = {coordinator_bin, "--config", config_path, "--run-dir",
                                               fs::path(config_path).parent_path().string(), "--world-size",
                                               std::to_string(args.workers), "--bind", args.bind};
  for (std::string& word : SplitWords(args.coordinator_args)) coordinator_argv.push_back(std::move(word));
  if (args.insecure) coordinator_argv.push_back("--insecure");
  Result<std::unique_ptr<Process>> started = StartLogged(coordinator_argv, coordinator, args.show_coordinator);
  if (!started.ok()) {
    LOG(ERROR) << "[pretrain] " << started.status().message();
    return false;
  }
  coordinator->process = std::move(started).value();
  const std::string endpoint = WaitForEndpoint(*coordinator, endpoint_path);
  if (!endpoint.empty()) {
    LOG(INFO) << "[pretrain] coordinator (pid " << coordinator->process->pid() << ") serving on " << endpoint
              << "; log " << coordinator->log_path;
    std::vector<std::string> argv;
    if (args.launcher == "srun") {  // workers on every node of the allocation reach this node by name
      SrunSpec srun{mpirun, args.workers, SplitWords(args.srun_args),
                    fs::path(config_path).parent_path().string() + "/slurm/job-%j-rank-%t.log"};
      std::error_code ec;  // srun creates the per-rank logs, not their folder
      fs::create_directories(fs::path(config_path).parent_path() / "slurm", ec);
      argv = SrunArgv(srun, {worker_bin, "--config", config_path, "--coordinator",
                             AdvertisedEndpoint(endpoint, HostName())});
    } else {
      argv = MpirunArgv(mpirun, worker_bin, config_path, endpoint, args);
    }
    argv.insert(argv.end(), {"--generation", std::to_string(generation)});
    // The CURVE keys the coordinator generated in RUN_DIR/keys (coordinator/SECURITY.md).
    if (args.insecure) {
      argv.push_back("--insecure");
    } else {
      argv.insert(argv.end(), {"--keys", fs::path(config_path).parent_path().string() + "/keys"});
    }
    for (std::string& word : SplitWords(args.worker_args)) argv.push_back(std::move(word));
    started = StartLogged(argv, workers, /*echo=*/true);
    if (started.ok()) {
      workers->process = std::move(started).value();
      LOG(INFO) << "[pretrain] workers: " << args.workers << " ranks under " << args.launcher << " (pid " << workers->process->pid()
                << ", generation " << generation << "); output here and in " << workers->log_path;
    } else {
      LOG(ERROR) << "[pretrain] " << started.status().message();
      coordinator->StopAfter(0, "");
    }
  }
  const bool interrupted = Supervise(*coordinator, *workers);
  WaitForLeftovers();
  return interrupted;
}

int Fail(const Status& status) {
  LOG(ERROR) << "[pretrain] " << status.message();
  return status.code() == Status::Code::kInvalidArgument || status.code() == Status::Code::kFailedPrecondition
             ? kExitUsage
             : kExitError;
}

int RunPretrain(const PretrainArgs& args) {
  const Clock::time_point start = Clock::now();
  Result<RunConfig> config = ResolveConfig(args);
  if (!config.ok()) return Fail(config.status());
  Result<std::string> coordinator_bin = LocateBinary("bert-coordinator", "BERT_COORDINATOR_BIN");
  if (!coordinator_bin.ok()) return Fail(coordinator_bin.status());
  Result<std::string> worker_bin = LocateBinary("bert-worker", "BERT_WORKER_BIN");
  if (!worker_bin.ok()) return Fail(worker_bin.status());
  Result<LauncherKind> launcher = ParseLauncher(args.launcher);
  if (!launcher.ok()) return Fail(launcher.status());
  const std::optional<std::string> mpirun = FindExecutable(LauncherName(*launcher));  // or srun
  if (!mpirun) {
    return Fail(Status::NotFound(*launcher == LauncherKind::kSrun
                                     ? "srun not found on PATH: --launcher srun runs inside a Slurm allocation"
                                     : "mpirun not found on PATH: install Open MPI (apt-get install openmpi-bin, "
                                       "or run scripts/setup.sh)"));
  }
  if (*launcher == LauncherKind::kSrun && ::geteuid() == 0) {  // Open MPI ranks under srun refuse root otherwise
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  }
  const std::string& run_dir = config->run_dir;
  Result<bool> resumed = FreezeConfig(*config);
  if (!resumed.ok()) return Fail(resumed.status());
  RunLock lock;
  Status locked = lock.Acquire(run_dir);
  if (!locked.ok()) return Fail(locked);
  const std::string config_path = run_dir + "/config.yaml";
  const std::string endpoint_path = run_dir + "/coordinator/endpoint";
  std::error_code ec;
  fs::remove(endpoint_path, ec);  // a stale one would point the workers at a dead port
  LOG(INFO) << "[pretrain] run " << config->name << " in " << run_dir << " ("
            << (*resumed ? "resuming: config unchanged" : "new") << "): " << args.workers << " workers, "
            << (config->train.time_budget_s > 0
                    ? "time budget " + FormatTimeBudget(config->train.time_budget_s) + " (at most " +
                          std::to_string(config->train.steps) + " steps)"
                    : std::to_string(config->train.steps) + " steps")
            << " of " << config->train.global_batch_size << " samples";
  InstallSupervisorSignals();
  Status subreaper = BecomeSubreaper();  // ranks outliving mpirun come back to us
  if (!subreaper.ok()) LOG(WARNING) << "[pretrain] " << subreaper.message();

  Status recorded = WriteLaunchRecord(run_dir, args);
  if (!recorded.ok()) LOG(WARNING) << "[pretrain] " << recorded.message();
  double backoff_s = args.restart_backoff_s;
  uint64_t restarts = 0;  // after failures (--max-restarts); rollbacks after anomalies are not failures
  PretrainArgs sized = args;  // with the world size of this generation (elastic shrink)
  ElasticPolicy elastic(args.workers, args.min_workers > 0 ? args.min_workers : args.workers, args.replace_timeout_s,
                        [&](uint32_t w) {
                          return DispatchGeometry::Make(config->train.global_batch_size, w,
                                                        config->train.micro_batch_size)
                              .ok();
                        });
  for (uint64_t generation = 0;; ++generation) {
    Child coordinator("coordinator", run_dir + "/coordinator/coordinator.log");
    Child workers(std::string("workers (") + LauncherName(*launcher) + ")", run_dir + "/workers.log");
    const bool interrupted =
        RunOnce(sized, *coordinator_bin, *worker_bin, *mpirun, config_path, endpoint_path, generation, &coordinator,
                &workers);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (g_checkpoint_signals.load() > 0 && !interrupted) {  // stopped for preemption: no relaunch here
      const bool complete = coordinator.exit_code() == 0 && workers.exit_code().value_or(0) == 0;
      if (!complete && coordinator.exit_code() == kExitPreempted) {
        LOG(WARNING) << "[pretrain] preempted (SIGUSR1) after " << FormatDuration(seconds) << ": stopped at "
                     << ReadTrimmed(run_dir + "/checkpoints/latest") << "; the same command (or bertctl resume "
                     << run_dir << ") resumes from there";
        return kExitPreempted;
      }
      return Report(coordinator, workers, /*interrupted=*/!complete, seconds, run_dir);
    }
    const std::string latest = ReadTrimmed(run_dir + "/checkpoints/latest");
    const std::string from = latest.empty() ? std::string("the start (no checkpoint yet)") : latest;
    if (!interrupted && workers.exit_code() == kExitRollback) {
      // train.anomaly: the workers recorded the step to skip; the run goes
      // on from the last checkpoint at once (the worker caps the skips).
      LOG(WARNING) << "[pretrain] the workers rolled back after an anomalous step (train.anomaly; "
                   << run_dir << "/anomalies.json says which and why): restarting from " << from;
      std::error_code ignored;
      fs::remove(endpoint_path, ignored);
      continue;
    }
    if (!interrupted && Retryable(coordinator, workers) && args.min_workers > 0) {
      const double now_s = std::chrono::duration<double>(Clock::now() - start).count();
      const uint64_t latest_step = latest.rfind("step-", 0) == 0 ? std::stoull("0" + latest.substr(5)) : 0;
      const uint32_t before = elastic.workers();
      if (std::optional<uint32_t> fewer =
              elastic.AfterFailure(latest_step, now_s, restarts >= static_cast<uint64_t>(args.max_restarts))) {
        LOG(WARNING) << "[pretrain] " << Describe(coordinator, true) << "; " << Describe(workers, false)
                     << ". No progress with " << before << " workers"
                     << (restarts >= static_cast<uint64_t>(args.max_restarts) ? " after " + std::to_string(restarts) +
                                                                                    " relaunch(es)"
                                                                              : " for --replace-timeout-s " +
                                                                                    FormatDuration(args.replace_timeout_s))
                     << ": a lost worker that does not come back. Continuing with " << *fewer << " workers (--min-workers "
                     << args.min_workers << ") from " << from << "; the global batch stays "
                     << config->train.global_batch_size << " samples (more micro-batches per rank)";
        sized.workers = *fewer;
        restarts = 0;  // the new size gets its own relaunches
        std::error_code ignored;
        fs::remove(endpoint_path, ignored);
        continue;
      }
    }
    if (interrupted || !Retryable(coordinator, workers) || restarts >= static_cast<uint64_t>(args.max_restarts)) {
      if (!interrupted && restarts >= static_cast<uint64_t>(args.max_restarts) && Retryable(coordinator, workers) &&
          args.max_restarts > 0) {
        LOG(ERROR) << "[pretrain] giving up after " << args.max_restarts << " restart(s) (--max-restarts)";
      }
      return Report(coordinator, workers, interrupted, seconds, run_dir);
    }
    ++restarts;
    LOG(WARNING) << "[pretrain] " << Describe(coordinator, true) << "; " << Describe(workers, false)
                 << ". Restart " << restarts << " of " << args.max_restarts << " in " << backoff_s << " s, from "
                 << from;
    const Clock::time_point resume_at =
        Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(backoff_s * 1000));
    while (Clock::now() < resume_at && g_signal_count.load() == 0 && g_checkpoint_signals.load() == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (g_signal_count.load() > 0 || g_checkpoint_signals.load() > 0) return Report(coordinator, workers, true, seconds, run_dir);
    backoff_s = std::min(60.0, backoff_s * 2);
    std::error_code ignored;
    fs::remove(endpoint_path, ignored);
  }
}

std::function<int()> SetupPretrain(CLI::App& app) {
  auto args = std::make_shared<PretrainArgs>();
  CLI::App* cmd = app.add_subcommand("pretrain", "Pretrain on this machine: the coordinator and N workers (mpirun)");
  cmd->footer(
      "Freezes the resolved config (absolute paths) into RUN_DIR/config.yaml, starts bert-coordinator, waits\n"
      "for the endpoint it bound, then runs `mpirun -np N bert-worker --config RUN_DIR/config.yaml\n"
      "--coordinator ENDPOINT` and supervises both. When one side fails the other gets a few seconds to exit\n"
      "by itself, then SIGTERM, then SIGKILL. Ctrl-C stops both (SIGTERM, SIGKILL after 10 s; twice: at once).\n"
      "A retryable failure (a dead worker or coordinator) relaunches both from the latest committed checkpoint,\n"
      "up to --max-restarts times with a doubling back-off; a bad config (2) or corrupt data (7) is fatal.\n"
      "\n"
      "Example: bertctl pretrain --config configs/runs/tiny.yaml --workers 2 --name tiny-2w --steps 100\n"
      "\n"
      "RUN_DIR is the config's run_dir (default runs/NAME); --name NAME sets the name and RUN_DIR=runs/NAME,\n"
      "relative to the current directory. The same command again (or bertctl resume RUN_DIR) resumes the run from\n"
      "its latest good checkpoint; a RUN_DIR frozen with a different config is refused.\n"
      "  RUN_DIR/config.yaml                  the resolved config, frozen at the first start\n"
      "  RUN_DIR/coordinator/coordinator.log  coordinator output, appended per start (--show-coordinator: here too)\n"
      "  RUN_DIR/coordinator/ledger/          dispatch ledger (RocksDB); endpoint, stats.json\n"
      "  RUN_DIR/workers.log                  mpirun and worker output, appended per start (also shown here)\n"
      "  RUN_DIR/checkpoints/                 sharded checkpoints (workers write shards, the coordinator commits)\n"
      "  RUN_DIR/metrics.jsonl                step metrics, written by the coordinator (bertctl status RUN_DIR)\n"
      "  RUN_DIR/pretrain.lock                held by the one bertctl pretrain running the run\n"
      "\n"
      "Binaries: bert-coordinator and bert-worker next to bertctl, or $BERT_COORDINATOR_BIN and $BERT_WORKER_BIN;\n"
      "mpirun (Open MPI: apt-get install openmpi-bin) from PATH. --mpirun-args and --coordinator-args are split\n"
      "on whitespace (no quoting), e.g. --coordinator-args \"--register-timeout-ms 5000 --prefetch 8\".\n"
      "\n"
      "Exit codes: 0 run complete; 1 error, or the workers failed (the last line names who exited with what);\n"
      "2 bad flag or config, or RUN_DIR taken by another config; 3 a worker died and the others were aborted;\n"
      "5 not every rank registered in time; 6 interrupted; 7 a corrupt corpus or checkpoint; 8 preempted.\n"
      "SIGUSR1 (a Slurm preemption notice; see bertctl submit): the coordinator checkpoints at the next step\n"
      "boundary (the ranks take it after the step they are in, within one step time plus the save) and stops\n"
      "the workers; bertctl exits 8 (preempted) and the same command resumes from that checkpoint.");
  cmd->add_option("--config", args->config_path, "Run config (YAML), e.g. configs/runs/tiny.yaml")->required();
  cmd->add_option("--workers", args->workers, "Worker processes (ranks)")
      ->capture_default_str()
      ->check(CLI::Range(1u, kMaxWorldSize));
  cmd->add_option("--name", args->name, "Run name; the run directory becomes runs/NAME");
  cmd->add_option("--steps", args->steps, "Optimizer steps (override train.steps; warmup clamped to it)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd->add_option("--time-budget", args->time_budget,
                  "Wall-clock training budget, e.g. 30m or 1h30m (override train.time_budget): the learning rate "
                  "decays over it and the run ends with a final checkpoint when it is spent; train.steps is then a cap");
  cmd->add_option("--bind", args->bind, "Coordinator endpoint; port * picks a free one")->capture_default_str();
  cmd->add_option("--mpirun-args", args->mpirun_args, "Extra mpirun flags, e.g. \"-x OMP_NUM_THREADS=1\"");
  cmd->add_option("--coordinator-args", args->coordinator_args,
                  "Extra bert-coordinator flags, e.g. \"--heartbeat-timeout-ms 10000\"");
  cmd->add_flag("--show-coordinator", args->show_coordinator, "Also show the coordinator's output here");
  cmd->add_flag("--insecure", args->insecure,
                "Run the control plane without CURVE authentication (passed to the coordinator and the workers)");
  cmd->add_option("--max-restarts", args->max_restarts,
                  "Relaunch coordinator and workers from the latest checkpoint after a retryable failure "
                  "(a dead worker or coordinator) up to this many times")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  cmd->add_option("--restart-backoff-s", args->restart_backoff_s, "Wait before the first relaunch; doubles each time")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_option("--launcher", args->launcher,
                  "mpirun (this machine), or srun (inside a Slurm allocation: `srun --mpi=pmix --ntasks=N`, per-rank "
                  "logs RUN_DIR/slurm/job-JOB-rank-R.log; with --bind tcp://0.0.0.0:* workers get this host's name)")
      ->capture_default_str();
  cmd->add_option("--srun-args", args->srun_args, "Extra srun flags, e.g. \"--ntasks-per-node=8 --gpus-per-task=1\"");
  cmd->add_option("--worker-args", args->worker_args, "Extra bert-worker flags, e.g. \"--checksum-every 10\"");
  cmd->add_option("--min-workers", args->min_workers,
                  "Elastic shrink: when lost workers do not come back, continue from the last checkpoint with fewer "
                  "ranks, down to this many, with the same global batch (0: never)")
      ->capture_default_str()
      ->check(CLI::Range(0u, kMaxWorldSize));
  cmd->add_option("--replace-timeout-s", args->replace_timeout_s,
                  "With --min-workers: relaunches that make no progress for this long (or run out) give the lost "
                  "workers up")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0 * 30));
  return [args] { return RunPretrain(*args); };
}

// bertctl resume RUN_DIR: the run's frozen config, launched as it was
// (RUN_DIR/launch.json: workers, bind, restarts); the coordinator resumes
// from the latest good checkpoint.
std::function<int()> SetupResume(CLI::App& app) {
  auto run_dir = std::make_shared<std::string>();
  auto workers = std::make_shared<uint32_t>(0);
  CLI::App* cmd = app.add_subcommand("resume", "Resume a local run from its latest checkpoint");
  cmd->footer(
      "Relaunches RUN_DIR with its frozen config (RUN_DIR/config.yaml) and the launch settings recorded in\n"
      "RUN_DIR/launch.json (workers, bind, max restarts). The coordinator continues from the latest good\n"
      "checkpoint (a damaged newest one is skipped and named), the workers restore weights, optimizer, schedule\n"
      "and RNG, and the data continues at the checkpoint's step. --workers N resumes with another world size\n"
      "(the same global batches follow). Exit codes as for bertctl pretrain.\n"
      "A run submitted with bertctl submit (RUN_DIR/slurm.json) is resubmitted to Slurm instead.\n"
      "Example: bertctl resume runs/tiny");
  cmd->add_option("RUN_DIR", *run_dir, "The run directory (holds config.yaml)")->required();
  cmd->add_option("--workers", *workers, "Another number of workers than the run used")
      ->check(CLI::Range(1u, kMaxWorldSize));
  return [run_dir, workers] {
    if (fs::exists(SlurmRecordPath(*run_dir))) {  // submitted with bertctl submit: resubmit the batch job
      Result<std::string> id = ResubmitRun(*run_dir);
      if (!id.ok()) return Fail(id.status());
      LOG(INFO) << "[pretrain] resubmitted " << *run_dir << " as Slurm job " << *id
                << "; it resumes from the latest checkpoint (bertctl status " << *run_dir << ")";
      return static_cast<int>(kExitOk);
    }
    PretrainArgs args;
    args.config_path = *run_dir + "/config.yaml";
    if (!fs::exists(args.config_path)) {
      return Fail(Status::NotFound(args.config_path + ": not a run directory (no frozen config); start runs with "
                                   "bertctl pretrain"));
    }
    Result<std::string> launch = ReadFile(*run_dir + "/launch.json");
    if (launch.ok()) {
      const nlohmann::json j = nlohmann::json::parse(*launch, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object()) {
        return Fail(Status::InvalidArgument(*run_dir + "/launch.json: not a JSON object"));
      }
      args.workers = j.value("workers", 1u);
      args.bind = j.value("bind", args.bind);
      args.max_restarts = j.value("max_restarts", args.max_restarts);
    }
    if (*workers > 0) args.workers = *workers;
    return RunPretrain(args);
  };
}

}  // namespace

BERT_REGISTER_COMMAND(SetupPretrain);
BERT_REGISTER_COMMAND(SetupResume);

}  // namespace bert::cli
