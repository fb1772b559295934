// The status board's views (coordinator/status_board.h): the run's state,
// each worker's, the /status snapshot, the history the dashboard charts,
// and the stragglers.
#include "coordinator/status_board.h"

#include <algorithm>
#include <cmath>

namespace bert {
namespace {

using Json = nlohmann::json;

}  // namespace

std::string StatusBoard::State() const {
  if (exit_code_) {
    // Preempted: a checkpoint is committed and the run resumes from it.
    return *exit_code_ == kExitOk ? "done" : *exit_code_ == kExitPreempted ? "preempted" : "failed";
  }
  if (!options_.resumed_from.empty() && cursor_ <= options_.start_step) return "recovering";
  for (const Worker& worker : workers_) {
    if (!worker.registered) return "starting";
  }
  if (options_.checkpoints) {
    const uint64_t scheduled = cursor_ >= total_steps_ ? total_steps_
                               : options_.checkpoint_every > 0 ? cursor_ / options_.checkpoint_every *
                                                                     options_.checkpoint_every
                                                               : 0;
    if (pending_checkpoint_step_ > last_checkpoint_step_ ||
        (scheduled > options_.start_step && scheduled > last_checkpoint_step_)) {
      return "checkpointing";
    }
  }
  return "running";
}

std::string StatusBoard::WorkerState(const Worker& worker, int64_t now_ms) const {
  if (!worker.registered) return "waiting";
  if (worker.declared_dead) return "dead";
  if (exit_code_) return *exit_code_ == kExitOk ? "done" : *exit_code_ == kExitPreempted ? "stopped" : "aborted";
  const int64_t silent_ms = now_ms - worker.last_seen_ms;
  if (silent_ms > options_.heartbeat_timeout_ms) return "dead";
  if (silent_ms > 2 * options_.heartbeat_interval_ms) return "late";
  return "alive";
}

Json StatusBoard::Snapshot(int64_t now_ms) const {
  std::lock_guard<std::mutex> lock(mutex_);
  // After the end, ages and elapsed time stop where the run stopped.
  const int64_t at_ms = exit_code_ ? finished_ms_ : now_ms;
  // A time budget's spent seconds: earlier sessions' and this one's.
  const double budget_spent_s = options_.budget_used_s + static_cast<double>(at_ms - start_ms_) / 1e3;
  std::optional<double> loss, loss_avg, mlm, mlm_avg, nsp, nsp_avg, samples_per_s, tokens_per_s, mfu, wait_fraction,
      step_time_s, eta_s;
  if (!recent_.empty()) {
    const StepSample& last = recent_.back();
    loss = last.loss;
    mlm = last.mlm_accuracy;
    nsp = last.nsp_accuracy;
    double loss_sum = 0, seconds = 0, wait = 0, flops = 0, mlm_correct = 0, nsp_correct = 0;
    uint64_t loss_steps = 0, samples = 0, tokens = 0, masked = 0, figure_samples = 0, figure_steps = 0;
    for (const StepSample& s : recent_) {
      if (s.loss) {
        loss_sum += *s.loss;
        ++loss_steps;
      }
      seconds += s.seconds;
      wait += s.wait_seconds;
      samples += s.samples;
      if (s.has_figures) {
        ++figure_steps;
        tokens += s.tokens;
        flops += s.flops;
        masked += s.masked;
        figure_samples += s.samples;
        mlm_correct += *s.mlm_accuracy * static_cast<double>(s.masked);
        nsp_correct += *s.nsp_accuracy * static_cast<double>(s.samples);
      }
    }
    if (loss_steps > 0) loss_avg = loss_sum / static_cast<double>(loss_steps);
    if (seconds > 0) {
      samples_per_s = static_cast<double>(samples) / seconds;
      wait_fraction = wait / seconds;
      if (figure_steps > 0) {
        tokens_per_s = static_cast<double>(tokens) / seconds;
        if (last.peak_flops > 0) mfu = flops / seconds / last.peak_flops;
      }
    }
    if (figure_steps > 0) {
      mlm_avg = mlm_correct / static_cast<double>(std::max<uint64_t>(1, masked));
      nsp_avg = nsp_correct / static_cast<double>(std::max<uint64_t>(1, figure_samples));
    }
    step_time_s = seconds / static_cast<double>(recent_.size());
    // Wall time per step from completion times (includes what step times
    // miss: checkpoint pauses, stalls); the step time until there are two.
    const double per_step_s = recent_.size() >= 2 ? static_cast<double>(last.completed_ms - recent_.front().completed_ms) /
                                                        1e3 / static_cast<double>(recent_.size() - 1)
                                                  : *step_time_s;
    // None once the run has ended: 0 only when it is done, unknown when it
    // stopped early (a preempted run's time to go depends on its restart).
    if (!exit_code_) {
      eta_s = per_step_s * static_cast<double>(total_steps_ - cursor_);
      if (options_.time_budget_s > 0) {  // whichever ends the run first
        eta_s = std::min(*eta_s, std::max(0.0, static_cast<double>(options_.time_budget_s) - budget_spent_s));
      }
    } else if (*exit_code_ == kExitOk) {
      eta_s = 0.0;
    }
  }
  const uint64_t epoch = recent_.empty() && !epochs_.empty() ? epochs_.begin()->second : epoch_;
  Json workers = Json::array(), stragglers = Json::array();
  for (uint32_t rank = 0; rank < options_.world_size; ++rank) {
    const Worker& w = workers_[rank];
    Json entry = {{"rank", rank}, {"state", WorkerState(w, at_ms)}, {"straggler", w.straggler}};
    if (w.registered) {
      entry["host"] = w.info.host;
      entry["device"] = w.info.device;
      entry["pid"] = w.info.pid;
      entry["generation"] = w.info.generation;
      entry["heartbeat_age_s"] = static_cast<double>(std::max<int64_t>(0, at_ms - w.last_seen_ms)) / 1e3;
      entry["step"] = w.steps_acked;
      entry["rss_bytes"] = w.rss_bytes > 0 ? Json(w.rss_bytes) : Json(nullptr);
      entry["phase"] = w.phase.empty() ? Json(nullptr) : Json(w.phase);
    }
    entry["step_time_ms"] = OrNull(w.step_ms);
    entry["compute_ms"] = OrNull(w.compute_ms);
    entry["data_wait_ms"] = OrNull(w.data_wait_ms);
    entry["data_wait_fraction"] =
        w.step_ms && w.data_wait_ms && *w.step_ms > 0 ? Json(*w.data_wait_ms / *w.step_ms) : Json(nullptr);
    entry["slowness"] = w.slowness > 0 ? Json(w.slowness) : Json(nullptr);
    if (w.straggler) stragglers.push_back(rank);
    workers.push_back(std::move(entry));
  }
  const double total = static_cast<double>(std::max<uint64_t>(1, total_steps_));
  double progress = static_cast<double>(cursor_) / total;
  if (options_.time_budget_s > 0) {  // the share of the budget spent, when it ends the run sooner than the steps
    progress = std::max(progress, std::min(1.0, budget_spent_s / static_cast<double>(options_.time_budget_s)));
    if (exit_code_ && *exit_code_ == kExitOk) progress = 1.0;
  }
  return Json{{"run", options_.run_id},
              {"state", State()},
              {"exit_code", exit_code_ ? Json(*exit_code_) : Json(nullptr)},
              {"exit_reason", exit_reason_},
              {"step", cursor_},
              {"total_steps", total_steps_},
              {"time_budget_s", options_.time_budget_s > 0 ? Json(options_.time_budget_s) : Json(nullptr)},
              {"progress", progress},
              {"start_step", options_.start_step},
              {"epoch", epoch},
              {"samples_seen", cursor_ * options_.global_batch_size},
              {"world_size", options_.world_size},
              {"global_batch_size", options_.global_batch_size},
              {"elapsed_s", static_cast<double>(at_ms - start_ms_) / 1e3},
              {"loss", OrNull(loss)},
              {"loss_avg", OrNull(loss_avg)},
              {"mlm_accuracy", OrNull(mlm)},
              {"mlm_accuracy_avg", OrNull(mlm_avg)},
              {"nsp_accuracy", OrNull(nsp)},
              {"nsp_accuracy_avg", OrNull(nsp_avg)},
              {"average_steps", recent_.size()},
              {"lr", OrNull(last_lr_)},
              {"grad_norm", OrNull(last_grad_norm_)},
              {"samples_per_s", OrNull(samples_per_s)},
              {"tokens_per_s", OrNull(tokens_per_s)},
              {"mfu", OrNull(mfu)},
              {"data_wait_fraction", OrNull(wait_fraction)},
              {"step_time_s", OrNull(step_time_s)},
              {"eta_s", OrNull(eta_s)},
              {"last_checkpoint", last_checkpoint_},
              {"last_checkpoint_step", last_checkpoint_step_},
              {"checkpoint_every", options_.checkpoint_every},
              {"restarts", options_.restarts},
              {"heartbeat_timeout_ms", options_.heartbeat_timeout_ms},
              {"straggler_factor", options_.straggler_factor},
              {"straggler_steps", options_.straggler_steps},
              {"stragglers", stragglers},
              {"workers", workers}};
}

Json StatusBoard::History() const {
  std::lock_guard<std::mutex> lock(mutex_);
  Json step = Json::array(), loss = Json::array(), mlm = Json::array(), nsp = Json::array(),
       samples = Json::array(), tokens = Json::array();
  for (const HistoryPoint& point : history_) {
    step.push_back(point.step);
    loss.push_back(OrNull(point.loss));
    mlm.push_back(OrNull(point.mlm_accuracy));
    nsp.push_back(OrNull(point.nsp_accuracy));
    samples.push_back(OrNull(point.samples_per_s));
    tokens.push_back(OrNull(point.tokens_per_s));
  }
  return Json{{"step", step},         {"loss", loss},         {"mlm_accuracy", mlm}, {"nsp_accuracy", nsp},
              {"samples_per_s", samples}, {"tokens_per_s", tokens}};
}

std::vector<uint32_t> StatusBoard::Stragglers() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<uint32_t> ranks;
  for (uint32_t rank = 0; rank < options_.world_size; ++rank) {
    if (workers_[rank].straggler) ranks.push_back(rank);
  }
  return ranks;
}

}  // namespace bert
