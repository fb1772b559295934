#include "worker/train/pretrain_progress.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include <glog/logging.h>
#include <nlohmann/json.hpp>

#include "common/logging.h"

namespace bert {

Result<std::unique_ptr<PretrainProgress>> PretrainProgress::Open(const std::string& run_dir, int64_t first_step,
                                                                 int64_t total_steps, int every_steps,
                                                                 double peak_gflops, const std::string& tag,
                                                                 bool write_jsonl) {
  std::unique_ptr<PretrainProgress> progress(new PretrainProgress());
  if (write_jsonl) {
    std::error_code ec;
    std::filesystem::create_directories(run_dir, ec);
    if (ec) return Status::IoError(run_dir + ": cannot create the run directory: " + ec.message());
    progress->metrics_.open(run_dir + "/metrics.jsonl", std::ios::app);
    if (!progress->metrics_) return Status::IoError(run_dir + "/metrics.jsonl: cannot open for writing");
  }
  progress->tag_ = tag;
  progress->first_step_ = first_step;
  progress->total_steps_ = total_steps;
  progress->every_steps_ = std::max(1, every_steps);
  progress->peak_gflops_ = peak_gflops;
  progress->start_ = std::chrono::steady_clock::now();
  return progress;
}

void PretrainProgress::Add(int64_t step_done, const StepRecord& r) {
  StepRecord& w = window_;
  w.sequences += r.sequences;
  w.tokens += r.tokens;
  w.masked += r.masked;
  w.loss += r.loss;
  w.mlm_correct += r.mlm_correct;
  w.nsp_correct += r.nsp_correct;
  w.flops += r.flops;
  w.seconds += r.seconds;
  w.data_wait_seconds += r.data_wait_seconds;
  w.lr = r.lr;
  w.grad_norm = r.grad_norm;
  ++window_steps_;
  if (step_done % every_steps_ == 0 || step_done == total_steps_) Log(step_done);
}

void PretrainProgress::Log(int64_t step_done) {
  const StepRecord& w = window_;
  const double seconds = std::max(w.seconds, 1e-9);
  ProgressSummary s;
  s.steps = step_done;
  s.loss = w.loss / static_cast<double>(window_steps_);
  s.mlm_accuracy = w.mlm_correct / static_cast<double>(std::max<int64_t>(1, w.masked));
  s.nsp_accuracy = w.nsp_correct / static_cast<double>(std::max<int64_t>(1, w.sequences));
  s.samples_per_second = static_cast<double>(w.sequences) / seconds;
  s.tokens_per_second = static_cast<double>(w.tokens) / seconds;
  s.mfu = peak_gflops_ > 0 ? w.flops / seconds / (peak_gflops_ * 1e9) : 0;
  s.data_wait_fraction = w.data_wait_seconds / seconds;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const int64_t done_here = std::max<int64_t>(1, step_done - first_step_);
  double eta = elapsed / static_cast<double>(done_here) * static_cast<double>(total_steps_ - step_done);
  double done_fraction = static_cast<double>(step_done) / static_cast<double>(total_steps_);
  if (budget_s_ > 0) {  // a time budget: the sooner end counts (the step count is then a cap)
    eta = std::min(eta, std::max(0.0, budget_s_ - budget_spent_s_));
    done_fraction = std::max(done_fraction, std::min(1.0, budget_spent_s_ / budget_s_));
  }
  char line[512];
  std::snprintf(line, sizeof(line),
                "%s step %lld/%lld (%.0f%%) loss %.4f mlm_acc %.3f nsp_acc %.3f lr %.2e | %.1f samples/s %.0f "
                "tokens/s MFU %.1f%% data wait %.1f%% | ETA %s",
                tag_.c_str(), static_cast<long long>(step_done), static_cast<long long>(total_steps_),
                100.0 * done_fraction, s.loss, s.mlm_accuracy,
                s.nsp_accuracy, w.lr, s.samples_per_second, s.tokens_per_second, 100 * s.mfu,
                100 * s.data_wait_fraction, FormatDuration(eta).c_str());
  LOG(INFO) << line;
  nlohmann::json record = {{"step", step_done},
                           {"loss", s.loss},
                           {"mlm_accuracy", s.mlm_accuracy},
                           {"nsp_accuracy", s.nsp_accuracy},
                           {"lr", w.lr},
                           {"grad_norm", w.grad_norm},
                           {"samples_per_s", s.samples_per_second},
                           {"tokens_per_s", s.tokens_per_second},
                           {"tokens", w.tokens},
                           {"mfu", s.mfu},
                           {"data_wait_fraction", s.data_wait_fraction},
                           {"elapsed_s", elapsed}};
  if (metrics_.is_open()) {
    metrics_ << record.dump() << "\n";
    metrics_.flush();
  }
  last_ = s;
  window_ = StepRecord();
  window_steps_ = 0;
}

}  // namespace bert
