#include "coordinator/status_board.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include <glog/logging.h>

#include "common/file_util.h"

namespace bert {
namespace {

using Json = nlohmann::json;

// The lower middle value (see the header: two ranks compare with the faster).
double LowerMedian(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[(values.size() - 1) / 2];
}

// Busy times this small are clock noise (or a fake worker that does
// nothing): no straggler is judged on them.
constexpr double kMinBusyMsForStragglers = 1.0;

}  // namespace

Json StatusBoard::OrNull(const std::optional<double>& value) {
  return value && std::isfinite(*value) ? Json(*value) : Json(nullptr);
}

StatusBoard::StatusBoard(StatusBoardOptions options, int64_t now_ms)
    : options_(std::move(options)), total_steps_(options_.total_steps), start_ms_(now_ms), workers_(options_.world_size) {
  cursor_ = options_.start_step;
  if (!options_.resumed_from.empty()) {
    last_checkpoint_ = options_.resumed_from;
    last_checkpoint_step_ = options_.start_step;
  }
  window_.rank_step_ms.assign(options_.world_size, 0);
  window_.rank_compute_ms.assign(options_.world_size, 0);
  window_.rank_wait_ms.assign(options_.world_size, 0);
}

Status StatusBoard::OpenMetricsFile() {
  if (options_.metrics_path.empty()) return Status::Ok();
  std::lock_guard<std::mutex> lock(mutex_);
  // A resumed run logs the steps after its checkpoint again: drop the lines
  // of those steps (and a line cut short by a kill) so that each step
  // appears once.
  Result<std::string> existing = ReadFile(options_.metrics_path);
  if (existing.ok() && !existing->empty()) {
    std::istringstream in(*existing);
    std::string kept;
    size_t dropped = 0;
    for (std::string line; std::getline(in, line);) {
      const nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      const bool keep = record.is_object() && record.contains("step") && record["step"].is_number_unsigned() &&
                        record["step"].get<uint64_t>() <= options_.start_step;
      if (keep) {
        kept += line + "\n";
      } else {
        ++dropped;
      }
    }
    if (dropped > 0) {
      BERT_RETURN_IF_ERROR(WriteFileAtomic(options_.metrics_path, kept));
      LOG(INFO) << "[coord] " << options_.metrics_path << ": dropped " << dropped
                << " line(s) of steps after " << options_.start_step << " (they run again)";
    }
  }
  metrics_.open(options_.metrics_path, std::ios::app);
  if (!metrics_) return Status::IoError(options_.metrics_path + ": cannot open for appending");
  return Status::Ok();
}

void StatusBoard::OnRegister(const WorkerInfo& worker, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (worker.rank >= workers_.size()) return;
  Worker& w = workers_[worker.rank];
  w = Worker();
  w.registered = true;
  w.info = worker;
  w.last_seen_ms = now_ms;
  w.steps_acked = cursor_;
}

void StatusBoard::OnSeen(uint32_t rank, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (rank < workers_.size()) workers_[rank].last_seen_ms = std::max(workers_[rank].last_seen_ms, now_ms);
}

void StatusBoard::OnHeartbeat(uint32_t rank, const proto::Heartbeat& heartbeat) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (rank >= workers_.size()) return;
  if (heartbeat.rss_bytes() > 0) workers_[rank].rss_bytes = heartbeat.rss_bytes();
  if (heartbeat.has_activity()) workers_[rank].phase = WorkerPhaseName(static_cast<WorkerPhase>(heartbeat.phase()));
}

void StatusBoard::OnEpoch(uint64_t step, uint64_t epoch) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (step >= cursor_) epochs_[step] = epoch;
}

void StatusBoard::OnAck(uint32_t rank, const proto::Ack& ack, uint64_t cursor, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (rank >= workers_.size()) return;
  Worker& worker = workers_[rank];
  worker.steps_acked = std::max(worker.steps_acked, ack.step() + 1);
  if (ack.step() >= cursor_) {
    PendingStep& pending = pending_[ack.step()];
    pending.ranks.resize(options_.world_size);
    RankStep& mine = pending.ranks[rank];
    ++mine.micro_acked;
    // A real worker reports the whole step's time on each micro-batch's Ack.
    mine.step_ms = std::max(mine.step_ms, static_cast<double>(ack.step_time_ms()));
    mine.data_wait_ms += ack.data_wait_ms();
    if (ack.has_figures()) {
      mine.compute_ms = ack.figures().compute_ms();
      if (!pending.figures) pending.figures = ack.figures();
    }
    if (!pending.loss) pending.loss = ack.loss();
  }
  while (cursor_ < cursor) {
    auto it = pending_.find(cursor_);
    PendingStep step;
    if (it != pending_.end()) {
      step = std::move(it->second);
      pending_.erase(it);
    }
    CompleteStep(cursor_, std::move(step), now_ms);
    ++cursor_;
  }
}

void StatusBoard::OnShardReported(uint64_t step) {
  std::lock_guard<std::mutex> lock(mutex_);
  pending_checkpoint_step_ = std::max(pending_checkpoint_step_, step);
}

void StatusBoard::OnCheckpointCommitted(uint64_t step, const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (step < last_checkpoint_step_) return;
  last_checkpoint_step_ = step;
  last_checkpoint_ = name;
}

void StatusBoard::OnEndStep(uint64_t step) {
  std::lock_guard<std::mutex> lock(mutex_);
  total_steps_ = step;
}

void StatusBoard::OnFinish(int exit_code, const std::string& reason, int dead_rank, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mutex_);
  exit_code_ = exit_code;
  exit_reason_ = reason;
  finished_ms_ = now_ms;
  if (dead_rank >= 0 && static_cast<size_t>(dead_rank) < workers_.size()) workers_[dead_rank].declared_dead = true;
}

void StatusBoard::CompleteStep(uint64_t step, PendingStep pending, int64_t now_ms) {
  pending.ranks.resize(options_.world_size);
  std::vector<double> busy_ms(options_.world_size);
  StepSample sample;
  sample.step = step;
  sample.completed_ms = now_ms;
  double step_ms = 0, slowest_wait_ms = 0;
  for (uint32_t rank = 0; rank < options_.world_size; ++rank) {
    const RankStep& mine = pending.ranks[rank];
    Worker& worker = workers_[rank];
    worker.step_ms = mine.step_ms;
    worker.data_wait_ms = mine.data_wait_ms;
    worker.compute_ms = mine.compute_ms;
    busy_ms[rank] = mine.compute_ms ? *mine.compute_ms + mine.data_wait_ms : mine.step_ms;
    step_ms = std::max(step_ms, mine.step_ms);
    slowest_wait_ms = std::max(slowest_wait_ms, mine.data_wait_ms);
  }
  UpdateStragglers(step, busy_ms);
  sample.seconds = step_ms / 1e3;
  if (pending.loss) sample.loss = *pending.loss;
  if (pending.figures) {
    const proto::StepFigures& f = *pending.figures;
    sample.has_figures = true;
    sample.mlm_accuracy = f.mlm_accuracy();
    sample.nsp_accuracy = f.nsp_accuracy();
    sample.samples = f.samples();
    sample.tokens = f.tokens();
    sample.masked = f.masked();
    sample.flops = f.model_flops();
    sample.peak_flops = f.peak_flops();
    sample.wait_seconds = f.data_wait_ms() / 1e3;
    last_lr_ = f.lr();
    last_grad_norm_ = f.grad_norm();
  } else {
    sample.samples = options_.global_batch_size;
    sample.wait_seconds = slowest_wait_ms / 1e3;
  }
  recent_.push_back(sample);
  while (recent_.size() > std::max<size_t>(1, options_.average_steps)) recent_.pop_front();
  auto epoch = epochs_.find(step);
  if (epoch != epochs_.end()) {
    epoch_ = epoch->second;
    epochs_.erase(epochs_.begin(), std::next(epoch));
  }
  AddToWindow(sample, pending);
  const uint64_t done = step + 1;
  const uint64_t every = static_cast<uint64_t>(std::max(1, options_.log_every_steps));
  if (done % every == 0 || done == total_steps_) WriteMetricsLine(done, now_ms);
}

void StatusBoard::UpdateStragglers(uint64_t step, const std::vector<double>& busy_ms) {
  const double median = LowerMedian(busy_ms);
  for (uint32_t rank = 0; rank < options_.world_size; ++rank) {
    Worker& worker = workers_[rank];
    worker.slowness = median > 0 ? busy_ms[rank] / median : 0;
    const bool slow = median >= kMinBusyMsForStragglers && busy_ms[rank] > options_.straggler_factor * median;
    worker.slow_steps = slow ? worker.slow_steps + 1 : 0;
    const bool straggler = worker.slow_steps >= std::max(1, options_.straggler_steps);
    if (straggler && !worker.straggler) {
      char line[256];
      std::snprintf(line, sizeof(line),
                    "busy %.1f ms in step %llu, %.2fx the median %.1f ms, over %.2fx for %d steps in a row", busy_ms[rank],
                    static_cast<unsigned long long>(step), worker.slowness, median, options_.straggler_factor,
                    worker.slow_steps);
      LOG(WARNING) << "[coord] straggler: " << worker.info.Describe() << ": " << line;
    } else if (!straggler && worker.straggler) {
      LOG(INFO) << "[coord] " << worker.info.Describe() << " is no longer a straggler (step " << step << ", "
                << worker.slowness << "x the median)";
    }
    worker.straggler = straggler;
  }
}

void StatusBoard::AddToWindow(const StepSample& sample, const PendingStep& pending) {
  Window& w = window_;
  ++w.steps;
  if (sample.loss) {
    w.loss += *sample.loss;
    ++w.loss_steps;
  }
  w.seconds += sample.seconds;
  w.wait_seconds += sample.wait_seconds;
  w.samples += sample.samples;
  if (sample.has_figures) {
    ++w.figure_steps;
    w.mlm_correct += *sample.mlm_accuracy * static_cast<double>(sample.masked);
    w.nsp_correct += *sample.nsp_accuracy * static_cast<double>(sample.samples);
    w.masked += sample.masked;
    w.tokens += sample.tokens;
    w.flops += sample.flops;
    w.peak_flops = sample.peak_flops;
  }
  bool all_compute = true;
  for (uint32_t rank = 0; rank < options_.world_size; ++rank) {
    const RankStep& mine = pending.ranks[rank];
    w.rank_step_ms[rank] += mine.step_ms;
    w.rank_wait_ms[rank] += mine.data_wait_ms;
    w.rank_compute_ms[rank] += mine.compute_ms.value_or(0);
    all_compute = all_compute && mine.compute_ms.has_value();
  }
  if (all_compute) ++w.compute_steps;
}

void StatusBoard::WriteMetricsLine(uint64_t steps_done, int64_t now_ms) {
  const Window& w = window_;
  const double seconds = std::max(w.seconds, 1e-9);
  const bool figures = w.figure_steps > 0;
  std::optional<double> loss, mlm, nsp, tokens_per_s, mfu;
  if (w.loss_steps > 0) loss = w.loss / static_cast<double>(w.loss_steps);
  if (figures) {
    mlm = w.mlm_correct / static_cast<double>(std::max<uint64_t>(1, w.masked));
    nsp = w.nsp_correct / static_cast<double>(std::max<uint64_t>(1, w.samples));
    tokens_per_s = static_cast<double>(w.tokens) / seconds;
    if (w.peak_flops > 0) mfu = w.flops / seconds / w.peak_flops;
  }
  const double samples_per_s = static_cast<double>(w.samples) / seconds;
  Json step_ms = Json::array(), compute_ms = Json::array(), wait_ms = Json::array();
  const double steps = static_cast<double>(std::max<uint64_t>(1, w.steps));
  for (uint32_t rank = 0; rank < options_.world_size; ++rank) {
    step_ms.push_back(w.rank_step_ms[rank] / steps);
    wait_ms.push_back(w.rank_wait_ms[rank] / steps);
    compute_ms.push_back(w.compute_steps == w.steps ? Json(w.rank_compute_ms[rank] / steps) : Json(nullptr));
  }
  Json record = {{"step", steps_done},
                 {"loss", OrNull(loss)},
                 {"mlm_accuracy", OrNull(mlm)},
                 {"nsp_accuracy", OrNull(nsp)},
                 {"lr", OrNull(last_lr_)},
                 {"grad_norm", OrNull(last_grad_norm_)},
                 {"samples_per_s", samples_per_s},
                 {"tokens_per_s", OrNull(tokens_per_s)},
                 {"tokens", figures ? Json(w.tokens) : Json(nullptr)},
                 {"mfu", OrNull(mfu)},
                 {"data_wait_fraction", w.wait_seconds / seconds},
                 {"elapsed_s", static_cast<double>(now_ms - start_ms_) / 1e3},
                 {"worker_step_ms", step_ms},
                 {"worker_compute_ms", compute_ms},
                 {"worker_data_wait_ms", wait_ms}};
  if (metrics_.is_open()) {
    metrics_ << record.dump() << "\n";
    metrics_.flush();
    if (!metrics_) {
      LOG_EVERY_N(ERROR, 100) << "[coord] " << options_.metrics_path << ": write failed";
    }
  }
  // Dashboard points: when full, keep every other one and take half as many.
  if (lines_written_++ % history_stride_ == 0) {
    history_.push_back({steps_done, loss, mlm, nsp, samples_per_s, tokens_per_s});
    if (history_.size() >= std::max<size_t>(2, options_.max_history)) {
      std::vector<HistoryPoint> kept;
      for (size_t i = 0; i < history_.size(); i += 2) kept.push_back(history_[i]);
      history_ = std::move(kept);
      history_stride_ *= 2;
    }
  }
  window_ = Window();
  window_.rank_step_ms.assign(options_.world_size, 0);
  window_.rank_compute_ms.assign(options_.world_size, 0);
  window_.rank_wait_ms.assign(options_.world_size, 0);
}

}  // namespace bert
