#include "worker/local_pretrain.h"

#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/logging.h"
#include "datapipe/training_data.h"
#include "worker/bert_heads.h"
#include "worker/flops.h"
#include "worker/train_step.h"

namespace bert {
namespace {

using Clock = std::chrono::steady_clock;

Result<TrainerOptions> TrainerOptionsFrom(const TrainConfig& t) {
  TrainerOptions options;
  Result<OptimizerKind> kind = ParseOptimizerKind(t.optimizer);
  if (!kind.ok()) return Status::InvalidArgument("train.optimizer: " + kind.status().message());
  options.optimizer.kind = *kind;
  options.optimizer.beta1 = t.beta1;
  options.optimizer.beta2 = t.beta2;
  options.optimizer.epsilon = t.eps;
  options.optimizer.weight_decay = t.weight_decay;
  Result<LrDecay> decay = ParseLrDecay(t.schedule);
  if (!decay.ok()) return Status::InvalidArgument("train.schedule: " + decay.status().message());
  options.schedule.peak_lr = t.lr;
  options.schedule.warmup_steps = t.warmup_steps;
  options.schedule.total_steps = t.steps;
  options.schedule.decay = *decay;
  options.schedule.power = t.poly_power;
  options.schedule.end_lr = t.lr * t.end_lr_ratio;
  options.max_grad_norm = t.max_grad_norm;
  BERT_RETURN_IF_ERROR(options.Validate());
  return options;
}

// Sums of the steps since the last log line.
struct Window {
  int64_t steps = 0, sequences = 0, tokens = 0, masked = 0;
  double loss = 0, mlm_correct = 0, nsp_correct = 0, flops = 0, seconds = 0;
  void Add(const StepMetrics& m, double step_flops, double step_seconds) {
    ++steps;
    sequences += m.num_sequences;
    tokens += m.num_tokens;
    masked += m.num_masked;
    loss += m.loss;
    mlm_correct += m.mlm_accuracy * m.num_masked;
    nsp_correct += m.nsp_accuracy * m.num_sequences;
    flops += step_flops;
    seconds += step_seconds;
  }
};

class LocalLoop {
 public:
  explicit LocalLoop(const RunConfig& config) : config_(config) {}

  Result<LocalPretrainResult> Run() {
    BERT_RETURN_IF_ERROR(Prepare());
    for (int64_t step = 0; step < config_.train.steps; ++step) BERT_RETURN_IF_ERROR(Step(step));
    return result_;
  }

 private:
  Status Prepare() {
    torch::set_num_threads(config_.train.intra_op_threads);
    Result<TrainerOptions> trainer_options = TrainerOptionsFrom(config_.train);
    if (!trainer_options.ok()) return trainer_options.status();
    ModelOptions model_options;
    model_options.seed = config_.train.init_seed;
    Result<std::unique_ptr<BertForPreTraining>> model = BertForPreTraining::FromConfigFile(config_.model, model_options);
    if (!model.ok()) return model.status();
    model_ = std::move(model).value();
    Result<std::unique_ptr<TrainingData>> data = TrainingData::Open(config_, /*num_threads=*/2);
    if (!data.ok()) return data.status();
    data_ = std::move(data).value();
    if (data_->vocab().vocab_size != model_->config().vocab_size) {
      return Status::InvalidArgument(config_.model + ": vocab_size " + std::to_string(model_->config().vocab_size) +
                                     " differs from the corpus vocabulary's " +
                                     std::to_string(data_->vocab().vocab_size));
    }
    trainer_ = std::make_unique<Trainer>(model_.get(), *trainer_options);
    micro_batch_ = config_.train.micro_batch_size > 0 ? config_.train.micro_batch_size : config_.train.global_batch_size;
    if (config_.train.global_batch_size % micro_batch_ != 0) {
      return Status::InvalidArgument("train.micro_batch_size: " + std::to_string(micro_batch_) +
                                     " must divide train.global_batch_size " +
                                     std::to_string(config_.train.global_batch_size));
    }
    std::error_code ec;
    std::filesystem::create_directories(config_.run_dir, ec);
    if (ec) return Status::IoError(config_.run_dir + ": cannot create the run directory: " + ec.message());
    BERT_RETURN_IF_ERROR(WriteFileAtomic(config_.run_dir + "/config.yaml", config_.ToYaml()));
    metrics_.open(config_.run_dir + "/metrics.jsonl", std::ios::app);
    if (!metrics_) return Status::IoError(config_.run_dir + "/metrics.jsonl: cannot open for writing");
    gemm_peak_gflops_ = MeasureGemmGflops(2048, 3);
    LOG(INFO) << "[worker r0] " << model_->parameters().numel() << " parameters, " << config_.train.steps
              << " steps of " << config_.train.global_batch_size << " samples (micro-batch " << micro_batch_
              << "), fp32 GEMM peak " << gemm_peak_gflops_ << " GFLOP/s, run dir " << config_.run_dir;
    start_ = Clock::now();
    return Status::Ok();
  }

  Status Step(int64_t step) {
    auto step_start = Clock::now();
    std::vector<TrainingSample> samples;
    BERT_RETURN_IF_ERROR(data_->RankSamples(static_cast<uint64_t>(step), 0, 1, &samples));
    std::vector<PretrainBatch> micro_batches;
    double flops = 0;
    for (size_t first = 0; first < samples.size(); first += static_cast<size_t>(micro_batch_)) {
      std::vector<TrainingSample> part(samples.begin() + first,
                                       samples.begin() + std::min(samples.size(), first + micro_batch_));
      CollateOptions collate;
      collate.pad_id = data_->vocab().pad_id;
      Result<PretrainBatch> batch = CollateSamples(part, collate);
      if (!batch.ok()) return batch.status();
      flops += PreTrainingFlops(model_->config(), batch->batch_size(), batch->seq_len(), batch->num_masked());
      micro_batches.push_back(std::move(batch).value());
    }
    StepMetrics metrics = trainer_->TrainStep(micro_batches);
    window_.Add(metrics, flops, std::chrono::duration<double>(Clock::now() - step_start).count());
    last_lr_ = metrics.lr;
    if ((step + 1) % config_.log.every_steps == 0 || step + 1 == config_.train.steps) Log(step + 1);
    return Status::Ok();
  }

  void Log(int64_t steps_done) {
    const Window& w = window_;
    double samples_per_s = w.sequences / w.seconds, tokens_per_s = w.tokens / w.seconds;
    double mfu = w.flops / w.seconds / (gemm_peak_gflops_ * 1e9);
    double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    double eta = elapsed / steps_done * (config_.train.steps - steps_done);
    double loss = w.loss / w.steps, mlm_acc = w.mlm_correct / std::max<int64_t>(1, w.masked);
    double nsp_acc = w.nsp_correct / std::max<int64_t>(1, w.sequences);
    char line[512];
    std::snprintf(line, sizeof(line),
                  "[worker r0] step %lld/%lld (%.0f%%) loss %.4f mlm_acc %.3f nsp_acc %.3f lr %.2e | %.1f samples/s "
                  "%.0f tokens/s MFU %.1f%% | ETA %s",
                  (long long)steps_done, (long long)config_.train.steps, 100.0 * steps_done / config_.train.steps,
                  loss, mlm_acc, nsp_acc, last_lr_, samples_per_s, tokens_per_s, 100 * mfu,
                  FormatDuration(eta).c_str());
    LOG(INFO) << line;
    nlohmann::json record = {{"step", steps_done},          {"loss", loss},
                             {"mlm_accuracy", mlm_acc},     {"nsp_accuracy", nsp_acc},
                             {"lr", last_lr_},              {"samples_per_s", samples_per_s},
                             {"tokens_per_s", tokens_per_s}, {"mfu", mfu},
                             {"elapsed_s", elapsed}};
    metrics_ << record.dump() << "\n";
    metrics_.flush();
    result_ = {steps_done, loss, mlm_acc, samples_per_s, mfu};
    window_ = Window();
  }

  RunConfig config_;
  std::unique_ptr<BertForPreTraining> model_;
  std::unique_ptr<TrainingData> data_;
  std::unique_ptr<Trainer> trainer_;
  int64_t micro_batch_ = 0;
  double gemm_peak_gflops_ = 0;
  double last_lr_ = 0;
  std::ofstream metrics_;
  Window window_;
  LocalPretrainResult result_;
  Clock::time_point start_;
};

}  // namespace

Result<LocalPretrainResult> RunLocalPretraining(const RunConfig& config) {
  LocalLoop loop(config);
  return loop.Run();
}

}  // namespace bert
