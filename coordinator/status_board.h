// StatusBoard: what the coordinator knows about its run, for the people
// watching it (coordinator/status_http.h serves it as /status, /metrics and
// a dashboard; `bertctl status` prints it).
//
// The server's thread feeds it (registrations, messages, heartbeats, acks,
// checkpoint commits, the end of the run); any thread reads it (Snapshot,
// History). Every method takes the board's mutex: thread-safe.
//
// Steps. A step is complete when every rank acknowledged every micro-batch
// of it (the server's cursor passed it). Its figures are those of the whole
// step, which any rank reports on the Ack of its last micro-batch
// (proto::StepFigures: they are the same on every rank); per-rank figures
// (step time, compute time, data wait) come from each rank's own Acks. A
// worker that reports no figures (the tests' fake worker) still gets step
// times, loss and a metrics line, with the other figures null.
//
// metrics.jsonl. The board is the single writer of RUN_DIR/metrics.jsonl in
// a distributed run: one JSON line per log_every_steps completed steps and
// at the last step, with the keys a single-process run writes (step, loss,
// mlm_accuracy, nsp_accuracy, lr, grad_norm, samples_per_s, tokens_per_s,
// mfu, data_wait_fraction, elapsed_s; averages over the window, lr and
// grad_norm of its last step) plus per rank the mean step, compute and data
// wait times (worker_step_ms, worker_compute_ms, worker_data_wait_ms).
//
// Stragglers. A rank's "busy" time in a step is what it spent on its own:
// compute plus data wait (or its step time when it reports no compute time).
// In a synchronous data-parallel step every rank's wall time is about the
// same, as the fast ones wait for the slow one in the all-reduce, so the
// busy time is what tells the slow one apart. A rank whose busy time is over
// straggler_factor x the median of all ranks' for straggler_steps steps in
// a row is flagged (and logged) until a step brings it back under. The
// median of an even count is the lower middle value, so that with two ranks
// the slow one is compared with the fast one.
//
// Run states: starting (waiting for ranks to register), recovering (resumed
// from a checkpoint, no step done yet since), running, checkpointing (a
// checkpoint step is done and its checkpoint not committed yet), done,
// failed. Worker states: waiting (not registered), alive, late (silent over
// two heartbeat intervals), dead (silent over the timeout, or declared dead
// when the run ended), aborted (the run failed), done.
#pragma once

#include <cstdint>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/protocol.h"
#include "common/status.h"
#include "coordinator/worker_registry.h"

namespace bert {

struct StatusBoardOptions {
  std::string run_id;
  uint64_t total_steps = 0;
  uint64_t start_step = 0;           // the server's cursor at start (a resumed run's checkpoint step)
  uint32_t world_size = 1;
  uint64_t global_batch_size = 0;
  bool checkpoints = true;           // false: --without-checkpoints (never "checkpointing")
  uint64_t checkpoint_every = 0;     // steps between checkpoints; 0: only after the last
  std::string resumed_from;          // checkpoint the run resumed from; "": a fresh start
  uint64_t restarts = 0;             // earlier sessions of this run (coordinator restarts)
  int log_every_steps = 1;           // one metrics.jsonl line per this many steps
  std::string metrics_path;          // RUN_DIR/metrics.jsonl; "": write none
  int heartbeat_interval_ms = 500;   // a worker silent over 2 intervals is "late"
  int heartbeat_timeout_ms = 3000;   // ... and over the timeout "dead"
  double straggler_factor = 1.5;     // busy time over this x the median ...
  int straggler_steps = 5;           // ... this many steps in a row: a straggler
  size_t average_steps = 100;        // moving averages and rates over the last this many steps
  size_t max_history = 2048;         // dashboard points kept (thinned by halves when full)
  int64_t time_budget_s = 0;         // train.time_budget; 0: none
  double budget_used_s = 0;          // of it, what earlier sessions spent (the resumed checkpoint's)
};

class StatusBoard {
 public:
  // now_ms: monotonic milliseconds (MonotonicMs()) of the start.
  StatusBoard(StatusBoardOptions options, int64_t now_ms);

  // Fails naming the file when metrics.jsonl cannot be opened for appending.
  Status OpenMetricsFile();

  void OnRegister(const WorkerInfo& worker, int64_t now_ms);
  void OnSeen(uint32_t rank, int64_t now_ms);  // any valid message of a registered rank
  void OnHeartbeat(uint32_t rank, const proto::Heartbeat& heartbeat);
  void OnEpoch(uint64_t step, uint64_t epoch);  // the samples of `step` are of `epoch`
  // A valid Ack of a batch in flight; `cursor` is the server's after it
  // (steps below it are complete).
  void OnAck(uint32_t rank, const proto::Ack& ack, uint64_t cursor, int64_t now_ms);
  void OnShardReported(uint64_t step);
  void OnCheckpointCommitted(uint64_t step, const std::string& name);
  // The time budget is spent: `step` is the run's last (its total from now on).
  void OnEndStep(uint64_t step);
  // The run ended with this exit code (common/protocol.h ExitCode).
  void OnFinish(int exit_code, const std::string& reason, int dead_rank, int64_t now_ms);

  // /status: the JSON object described in README.md ("Monitoring").
  nlohmann::json Snapshot(int64_t now_ms) const;
  // The dashboard's series, one entry per metrics.jsonl line kept:
  // {"step": [...], "loss": [...], "mlm_accuracy": [...], "nsp_accuracy": [...],
  //  "samples_per_s": [...], "tokens_per_s": [...]}.
  nlohmann::json History() const;
  std::vector<uint32_t> Stragglers() const;

 private:
  // One rank's share of a step not yet complete.
  struct RankStep {
    uint32_t micro_acked = 0;
    double step_ms = 0, data_wait_ms = 0;
    std::optional<double> compute_ms;
  };
  struct PendingStep {
    std::vector<RankStep> ranks;
    std::optional<float> loss;
    std::optional<proto::StepFigures> figures;
  };
  struct Worker {
    bool registered = false;
    WorkerInfo info;
    int64_t last_seen_ms = 0;
    uint64_t steps_acked = 0;  // last acked step + 1
    uint64_t rss_bytes = 0;
    std::string phase;         // what its training thread does, at its last heartbeat ("" unknown)
    std::optional<double> step_ms, compute_ms, data_wait_ms;  // of its last complete step
    int slow_steps = 0;        // in a row
    double slowness = 0;       // busy time / median, last complete step
    bool straggler = false;
    bool declared_dead = false;
  };
  // What a complete step contributes to rates and averages.
  struct StepSample {
    uint64_t step = 0;
    int64_t completed_ms = 0;
    double seconds = 0, wait_seconds = 0;
    std::optional<double> loss, mlm_accuracy, nsp_accuracy;
    uint64_t samples = 0, tokens = 0, masked = 0;
    double flops = 0, peak_flops = 0;
    bool has_figures = false;
  };
  // Sums over the steps since the last metrics.jsonl line.
  struct Window {
    uint64_t steps = 0, figure_steps = 0;
    double loss = 0, seconds = 0, wait_seconds = 0, flops = 0, peak_flops = 0;
    uint64_t loss_steps = 0;
    double mlm_correct = 0, nsp_correct = 0;
    uint64_t samples = 0, tokens = 0, masked = 0;
    std::vector<double> rank_step_ms, rank_compute_ms, rank_wait_ms;
    uint64_t compute_steps = 0;
  };
  struct HistoryPoint {
    uint64_t step;
    std::optional<double> loss, mlm_accuracy, nsp_accuracy, samples_per_s, tokens_per_s;
  };

  void CompleteStep(uint64_t step, PendingStep pending, int64_t now_ms);
  void UpdateStragglers(uint64_t step, const std::vector<double>& busy_ms);
  void AddToWindow(const StepSample& sample, const PendingStep& pending);
  void WriteMetricsLine(uint64_t steps_done, int64_t now_ms);
  std::string State() const;
  std::string WorkerState(const Worker& worker, int64_t now_ms) const;
  // A finite value, else JSON null.
  static nlohmann::json OrNull(const std::optional<double>& value);

  const StatusBoardOptions options_;
  uint64_t total_steps_;  // options_.total_steps, or the step a spent time budget ended the run at
  const int64_t start_ms_;
  mutable std::mutex mutex_;  // guards everything below
  std::vector<Worker> workers_;
  std::map<uint64_t, PendingStep> pending_;
  std::map<uint64_t, uint64_t> epochs_;  // step -> epoch, for steps not complete yet
  uint64_t cursor_ = 0;                  // steps below are complete
  uint64_t epoch_ = 0;
  std::deque<StepSample> recent_;        // the last average_steps complete steps
  std::optional<double> last_lr_, last_grad_norm_;
  Window window_;
  std::ofstream metrics_;
  std::vector<HistoryPoint> history_;
  uint64_t history_stride_ = 1, lines_written_ = 0;
  uint64_t last_checkpoint_step_ = 0, pending_checkpoint_step_ = 0;
  std::string last_checkpoint_;
  std::optional<int> exit_code_;
  std::string exit_reason_;
  int64_t finished_ms_ = 0;
};

}  // namespace bert
