// Progress of a pretraining run, for the single-process and the distributed
// loops alike: every log.every_steps steps (and at the last) one line with
// loss, MLM and NSP accuracy, lr, samples/s, tokens/s, MFU, data-wait
// fraction and an ETA, to the log and (single-process runs) as one JSON
// object per line to RUN_DIR/metrics.jsonl; in distributed runs the
// coordinator writes that file (coordinator/status_board.h). The figures are of the whole step (all ranks):
// the distributed loop sums each rank's share first.
//
// MFU is model FLOPs (flops.h) per second over the fp32 GEMM peak of all
// ranks together, measured while they all run (so ranks sharing a machine
// share its peak). Not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

#include "common/status.h"

namespace bert {

// One optimizer step, summed over micro-batches and ranks.
struct StepRecord {
  int64_t sequences = 0, tokens = 0, masked = 0;
  double loss = 0;                      // the step's loss (mean MLM + mean NSP)
  double mlm_correct = 0, nsp_correct = 0;
  double flops = 0;                     // model FLOPs of the step
  double seconds = 0;                   // wall time of the step
  double data_wait_seconds = 0;         // of it, waiting for batches (slowest rank)
  double lr = 0, grad_norm = 0;
};

struct ProgressSummary {
  int64_t steps = 0;
  double loss = 0, mlm_accuracy = 0, nsp_accuracy = 0;
  double samples_per_second = 0, tokens_per_second = 0, mfu = 0, data_wait_fraction = 0;
};

class PretrainProgress {
 public:
  // Appends to RUN_DIR/metrics.jsonl (created) when write_jsonl; logs only
  // otherwise (a distributed run, where the coordinator writes that file).
  // first_step: steps already done before this process started (a resumed run).
  static Result<std::unique_ptr<PretrainProgress>> Open(const std::string& run_dir, int64_t first_step,
                                                        int64_t total_steps, int every_steps,
                                                        double peak_gflops, const std::string& tag,
                                                        bool write_jsonl = true);
  // `step_done`: optimizer steps completed including this one.
  void Add(int64_t step_done, const StepRecord& record);
  // A time-budget run: `spent_s` of `budget_s` seconds are spent (the ETA is
  // the sooner of the budget's end and the last step's).
  void SetBudget(double budget_s, double spent_s) {
    budget_s_ = budget_s;
    budget_spent_s_ = spent_s;
  }
  // Logs the window now (the run's last step came before the next multiple
  // of every_steps).
  void Flush(int64_t step_done) {
    if (window_steps_ > 0) Log(step_done);
  }
  // Of the last logged window.
  const ProgressSummary& last() const { return last_; }

 private:
  PretrainProgress() = default;
  void Log(int64_t step_done);

  std::ofstream metrics_;
  std::string tag_;
  int64_t first_step_ = 0, total_steps_ = 0;
  int every_steps_ = 1;
  double peak_gflops_ = 0;
  double budget_s_ = 0, budget_spent_s_ = 0;
  StepRecord window_;
  int64_t window_steps_ = 0;
  ProgressSummary last_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace bert
