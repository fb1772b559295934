// Supervision of a run's two sides, the coordinator and the workers, for
// bertctl pretrain (cli/cmd_pretrain.cc): each is a Child process whose
// output goes to its own log; Supervise() runs until both are gone. A
// failure on one side gives the other a grace period to exit by itself
// (with a code that says what it saw), then SIGTERM, then SIGKILL. Signal
// handlers only count signals; the supervision loop acts on the counts:
// SIGINT/SIGTERM/SIGHUP stop the run, SIGUSR1 (a preemption notice) is
// forwarded to the coordinator, which checkpoints and stops.
// Not thread-safe: one supervising thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/exit_codes.h"
#include "common/process.h"
#include "common/status.h"

namespace bert::cli {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kMaxWorldSize = 65536;  // as in common/protocol.h (which bertctl does not include)

constexpr int kStopGraceMs = 10000;  // after SIGTERM, before SIGKILL
// One side failed: the other normally notices within the heartbeat timeout
// (3 s by default) and exits by itself with a code that tells what it saw.
constexpr int kAfterFailureGraceMs = 5000;
// The coordinator finished (sent Done): workers finish their last step.
constexpr int kAfterCoordinatorDoneGraceMs = 60000;
// The workers finished first: the coordinator exits right after its Done.
constexpr int kAfterWorkersDoneGraceMs = 10000;

// Signals counted since InstallSupervisorSignals().
extern std::atomic<int> g_signal_count;        // SIGINT, SIGTERM, SIGHUP
extern std::atomic<int> g_checkpoint_signals;  // SIGUSR1
void InstallSupervisorSignals();

// One supervised process and when it is to get SIGTERM, then SIGKILL.
struct Child {
  Child(std::string label_in, std::string log_path_in)
      : label(std::move(label_in)), log_path(std::move(log_path_in)) {}

  std::string label;
  std::string log_path;
  uint64_t log_offset = 0;  // where this start's output begins in log_path
  std::unique_ptr<Process> process;
  std::optional<Clock::time_point> term_at, kill_at;
  bool stopped = false;  // got SIGTERM from us: its exit code tells little
  std::string stop_reason;

  bool running() { return process != nullptr && !process->Poll().has_value(); }
  std::optional<int> exit_code() const { return process ? process->exit_code() : std::nullopt; }
  // Schedules SIGTERM in grace_ms (or sooner, if already scheduled);
  // `why` is logged if the grace runs out.
  void StopAfter(int grace_ms, const std::string& why);
  void KillNow();
  void Tick(Clock::time_point now);
};

// Starts argv with its output appended to child->log_path (and echoed to
// stderr with `echo`), after a marker line for this start.
Result<std::unique_ptr<Process>> StartLogged(std::vector<std::string> argv, Child* child, bool echo);

// Runs until both processes are gone. Returns true if interrupted.
bool Supervise(Child& coordinator, Child& workers);

// Ranks can outlive mpirun by a moment; as their subreaper we wait for them
// (killing them after a grace), so nothing of the run is left behind.
void WaitForLeftovers();

// "coordinator exited 3 (a worker died; ...; see LOG)": what the child's exit says.
std::string Describe(const Child& child, bool coordinator);

// One summary line; the exit code of the command.
int Report(const Child& coordinator, const Child& workers, bool interrupted, double seconds,
           const std::string& run_dir);

// A failure worth a relaunch from the latest checkpoint: a dead or killed
// process, a lost peer. Not a bad flag or config (2) or corrupt data (7).
bool Retryable(const Child& coordinator, const Child& workers);

std::string Join(const std::vector<std::string>& words);

}  // namespace bert::cli
