// Loss-spike and NaN rollback (train.anomaly, common/run_config.h).
//
// Before a step's update is applied, its loss (summed over the ranks) and
// its gradient norm (before clipping) are checked. An anomaly is a value
// that is not finite or, with train.anomaly.loss_spike (grad_norm_spike)
// K > 0, a loss (norm) above K times the median of the last median_window
// accepted steps, once 10 are there. The anomalous update is not applied;
// the step joins the run's skipped steps, recorded durably in
// RUN_DIR/anomalies.json with the reason, and the workers exit with
// kExitRollback. The launcher restarts the run from the last committed
// checkpoint, and from then on the skipped steps' batches are received and
// acknowledged but never trained on (no forward pass, no update; the
// optimizer's step count, and so the schedule, does not advance).
//
// A step's batches are a pure function of the step and the replay from a
// checkpoint is exact, so the result equals a run that was given the same
// skip list (train.anomaly.skip_steps) from the start. The replay is what
// undoes a fault that corrupted the state before the step (a bad GPU, a
// flipped bit); the skip is what gets past a bad batch. Checkpoints carry the
// run's skipped steps and the medians' history (the manifest's "anomaly"),
// so a resumed run judges its steps as the uninterrupted run does.
//
// More than max_skips anomalies within skip_window steps stop the run
// instead (kExitDiverged, not retried): a run that keeps spiking diverges,
// and skipping batches would only hide it.
//
// Pure bookkeeping: no collectives here. The training loop makes every rank
// judge the same all-reduced figures; only rank 0 writes the record.
// Not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "common/run_config.h"
#include "common/status.h"

namespace bert {

// The run's record of anomalies, next to its checkpoints.
std::string AnomalyRecordPath(const std::string& run_dir);

class AnomalyGuard {
 public:
  explicit AnomalyGuard(AnomalyConfig config);

  bool enabled() const { return config_.action == "rollback"; }

  // Continues from a checkpoint manifest's "anomaly" object (null: a run
  // without one). Errors name `source` and the field.
  Status Restore(const nlohmann::json& state, const std::string& source);
  // Adds the skips recorded in RUN_DIR/anomalies.json (absent: none), those
  // made after the checkpoint included. A corrupt record is an error naming
  // the file.
  Status LoadRecord(const std::string& path);

  // The step's batches are not trained on (a recorded skip or one in
  // train.anomaly.skip_steps).
  bool Skips(uint64_t step) const { return skipped_.count(step) > 0 || config_skips_.count(step) > 0; }

  // "" when the step is sound (its figures then join the history); else why
  // not, on one line, e.g. "gradient norm nan".
  std::string Check(double loss, double grad_norm);

  // Records the anomaly of `step` (reason from Check) as a skip. An error
  // when that is more than max_skips within skip_window steps: the run
  // diverges (the message says what to do).
  Status AddSkip(uint64_t step, const std::string& reason, const std::string& latest_checkpoint);

  // The run's own skipped steps, in order (not train.anomaly.skip_steps).
  const std::set<uint64_t>& skipped() const { return skipped_; }
  // For a checkpoint's manifest: the skipped steps and the history.
  nlohmann::json StateJson() const;
  // The record file's text: the skipped steps and each event's reason.
  std::string RecordText() const;

 private:
  static double Median(const std::deque<double>& values);
  void Accept(double loss, double grad_norm);

  AnomalyConfig config_;
  std::set<uint64_t> config_skips_;
  std::set<uint64_t> skipped_;
  std::deque<double> losses_, grad_norms_;  // the last median_window accepted steps
  nlohmann::json events_ = nlohmann::json::array();  // {"step", "reason", "at"}
};

}  // namespace bert
