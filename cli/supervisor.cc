#include "cli/supervisor.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/file_util.h"
#include "common/logging.h"

namespace bert::cli {

namespace fs = std::filesystem;

std::atomic<int> g_signal_count{0};
std::atomic<int> g_checkpoint_signals{0};

namespace {
void OnSignal(int) { g_signal_count.fetch_add(1); }
// SIGUSR1: a preemption notice, e.g. from the Slurm batch script; the loop
// forwards it to the coordinator, which checkpoints and stops the run.
void OnCheckpointSignal(int) { g_checkpoint_signals.fetch_add(1); }
}  // namespace

void InstallSupervisorSignals() {
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  action.sa_handler = OnCheckpointSignal;
  ::sigaction(SIGUSR1, &action, nullptr);
  action.sa_handler = OnSignal;
  struct sigaction previous = {};
  ::sigaction(SIGHUP, nullptr, &previous);
  if (previous.sa_handler != SIG_IGN) ::sigaction(SIGHUP, &action, nullptr);  // respect nohup
  ::signal(SIGPIPE, SIG_IGN);  // a closed terminal must not kill the supervisor
}


std::string Join(const std::vector<std::string>& words) {
  std::string line;
  for (const std::string& word : words) line += (line.empty() ? "" : " ") + word;
  return line;
}

void Child::StopAfter(int grace_ms, const std::string& why) {
  if (!running()) return;
  const Clock::time_point at = Clock::now() + std::chrono::milliseconds(grace_ms);
  if (!term_at) stop_reason = why;
  if (!term_at || at < *term_at) term_at = at;
}

void Child::KillNow() {
  if (running()) process->Kill();
}

void Child::Tick(Clock::time_point now) {
  if (!running()) return;
  if (term_at && now >= *term_at && !kill_at) {
    if (!stop_reason.empty()) {
      LOG(WARNING) << "[pretrain] " << stop_reason << ": stopping the " << label << " (SIGTERM)";
    }
    process->Signal(SIGTERM);
    stopped = true;
    kill_at = now + std::chrono::milliseconds(kStopGraceMs);
  } else if (kill_at && now >= *kill_at) {
    LOG(WARNING) << "[pretrain] the " << label << " did not stop within " << kStopGraceMs / 1000
                 << " s of SIGTERM: killing it";
    process->Kill();
  }
}

namespace {

// Appends a marker so each start's output can be told apart; returns the
// file's size after it (where this start's output begins).
uint64_t MarkSession(const std::string& log_path) {
  const std::time_t now = std::time(nullptr);
  char when[64];
  std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", std::localtime(&now));
  std::ofstream(log_path, std::ios::app) << "==== bertctl pretrain " << when << " (pid " << ::getpid() << ")\n";
  std::error_code ec;
  const uintmax_t size = fs::file_size(log_path, ec);
  return ec ? 0 : size;
}

// The last glog ERROR/FATAL line written after `offset`, without its prefix.
std::string LastErrorLine(const std::string& log_path, uint64_t offset) {
  Result<std::string> text = ReadFile(log_path);
  if (!text.ok() || text->size() < offset) return "";
  std::istringstream in(text->substr(offset));
  std::string last;
  for (std::string line; std::getline(in, line);) {
    if (line.size() > 1 && (line[0] == 'E' || line[0] == 'F') && std::isdigit(static_cast<unsigned char>(line[1]))) {
      const size_t body = line.find("] ");
      last = body == std::string::npos ? line : line.substr(body + 2);
    }
  }
  return last;
}

}  // namespace

Result<std::unique_ptr<Process>> StartLogged(std::vector<std::string> argv, Child* child, bool echo) {
  child->log_offset = MarkSession(child->log_path);
  LOG(INFO) << "[pretrain] " << child->label << ": " << Join(argv);
  ProcessOptions options;
  options.argv = std::move(argv);
  options.log_path = child->log_path;
  options.echo_fd = echo ? STDERR_FILENO : -1;
  options.stop_with_parent = true;  // a killed bertctl takes its run down (started from the main thread)
  return Process::Start(options);
}

// Runs until both processes are gone. Returns true if interrupted.
bool Supervise(Child& coordinator, Child& workers) {
  int signals_seen = 0;
  bool interrupted = false;
  bool checkpoint_forwarded = false;
  while (coordinator.running() || workers.running()) {
    if (!checkpoint_forwarded && g_checkpoint_signals.load() > 0 && coordinator.running()) {
      LOG(WARNING) << "[pretrain] SIGUSR1: the coordinator checkpoints at the next step boundary, then stops the run";
      coordinator.process->Signal(SIGUSR1);
      checkpoint_forwarded = true;
    }
    const int signals = g_signal_count.load();
    if (signals > signals_seen) {
      if (signals_seen == 0) {
        LOG(WARNING) << "[pretrain] interrupted: stopping the coordinator and the workers (SIGTERM, SIGKILL after "
                     << kStopGraceMs / 1000 << " s; interrupt again to kill them now)";
      }
      signals_seen = signals;
      interrupted = true;
      for (Child* child : {&coordinator, &workers}) {
        if (signals > 1) child->KillNow();
        child->StopAfter(0, "");
      }
    }
    const std::optional<int> coordinator_code = coordinator.exit_code(), workers_code = workers.exit_code();
    if (coordinator_code) {
      workers.StopAfter(*coordinator_code == 0 ? kAfterCoordinatorDoneGraceMs : kAfterFailureGraceMs,
                        "the coordinator exited " + std::to_string(*coordinator_code) +
                            " and the workers are still running");
    }
    if (workers_code) {
      coordinator.StopAfter(*workers_code == 0 ? kAfterWorkersDoneGraceMs : kAfterFailureGraceMs,
                            "the workers (mpirun) exited " + std::to_string(*workers_code) +
                                " and the coordinator is still running");
    }
    const Clock::time_point now = Clock::now();
    coordinator.Tick(now);
    workers.Tick(now);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return interrupted;
}

// Ranks can outlive mpirun by a moment (it may exit as soon as one rank
// failed); as their subreaper we wait for them, so that nothing of the run
// is left when bertctl exits.
void WaitForLeftovers() {
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {  // those already gone
  }
  const size_t left = DescendantPids(::getpid()).size();
  if (left == 0) return;
  LOG(INFO) << "[pretrain] waiting up to " << kStopGraceMs / 1000 << " s for " << left
            << " leftover process(es) of the workers to exit";
  const int killed = ReapChildren(kStopGraceMs);
  if (killed > 0) LOG(WARNING) << "[pretrain] killed " << killed << " leftover process(es)";
}

namespace {

// What an exit code means; "" when it says nothing more than "failed".
// mpirun exits with the code of the first rank that failed.
std::string Meaning(int code, bool coordinator) {
  if (code > 128) return "killed by signal " + std::to_string(code - 128);
  switch (code) {
    case kExitOk: return "done";
    case kExitUsage: return "bad flag or config";
    case kExitAborted:
      return coordinator ? "a worker died; the others were told to abort" : "the coordinator ordered an abort";
    case kExitCoordinatorLost: return coordinator ? "" : "a worker lost the coordinator";
    case kExitRegistration:
      return coordinator ? "not every rank registered in time" : "a worker's registration was refused";
    case kExitInterrupted: return "interrupted";
    case kExitBadData: return "a corrupt corpus or checkpoint";
    case kExitPreempted: return "preempted: a checkpoint is committed";
    case kExitRollback: return coordinator ? "" : "rolled back after an anomalous step (train.anomaly)";
    case kExitDiverged: return coordinator ? "" : "the run diverges: more anomalies than train.anomaly.max_skips";
    default: return "";
  }
}

}  // namespace

std::string Describe(const Child& child, bool coordinator) {
  if (!child.process) return child.label + " not started";
  const int code = *child.exit_code();
  if (child.stopped) return child.label + " stopped by bertctl (exit " + std::to_string(code) + ")";
  std::string details = Meaning(code, coordinator);
  if (code != 0) details += (details.empty() ? "see " : "; see ") + child.log_path;
  return child.label + " exited " + std::to_string(code) + (details.empty() ? "" : " (" + details + ")");
}

// One summary line; the exit code of the command.
int Report(const Child& coordinator, const Child& workers, bool interrupted, double seconds,
           const std::string& run_dir) {
  const std::string elapsed = FormatDuration(seconds);
  const std::optional<int> coordinator_code = coordinator.exit_code(), workers_code = workers.exit_code();
  const std::string summary = Describe(coordinator, true) + "; " + Describe(workers, false);
  if (interrupted) {
    LOG(WARNING) << "[pretrain] interrupted after " << elapsed << ": " << summary;
    return kExitInterrupted;
  }
  if (coordinator_code == 0 && workers_code == 0) {
    LOG(INFO) << "[pretrain] run complete in " << elapsed << "; see " << run_dir;
    return kExitOk;
  }
  LOG(ERROR) << "[pretrain] failed after " << elapsed << ": " << summary;
  if (coordinator_code.value_or(0) != 0 && !coordinator.stopped) {
    const std::string error = LastErrorLine(coordinator.log_path, coordinator.log_offset);
    if (!error.empty()) LOG(ERROR) << "[pretrain] the coordinator's last error: " << error;
  }
  if (workers_code == kExitDiverged) {  // what to do is in the worker's message
    const std::string error = LastErrorLine(workers.log_path, workers.log_offset);
    if (!error.empty()) LOG(ERROR) << "[pretrain] " << error;
    return kExitDiverged;
  }
  const int code = coordinator_code.value_or(kExitError);
  const bool telling =
      code == kExitUsage || code == kExitAborted || code == kExitRegistration || code == kExitBadData;
  return telling && !coordinator.stopped ? code : kExitError;
}

// A failure worth a relaunch from the latest checkpoint: a dead or killed
// process, a lost peer. Not a bad flag or config (2) or corrupt data (7):
// those fail the same way again.
bool Retryable(const Child& coordinator, const Child& workers) {
  const std::optional<int> c = coordinator.exit_code(), w = workers.exit_code();
  if (!c) return false;                              // the coordinator never started
  if (*c == 0 && w.value_or(0) == 0) return false;   // complete
  if (*c == kExitPreempted) return false;            // stopped on purpose (SIGUSR1), resumed by its launcher
  auto fatal = [](const Child& child) {
    const std::optional<int> code = child.exit_code();
    return code && !child.stopped && (*code == kExitUsage || *code == kExitBadData || *code == kExitDiverged);
  };
  return !fatal(coordinator) && !fatal(workers);
}

}  // namespace bert::cli
