#include "worker/train/local_pretrain.h"

#include "worker/torch.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/run_config.h"
#include "common/logging.h"
#include "datapipe/training_data.h"
#include "worker/model/bert_heads.h"
#include "worker/model/flops.h"
#include "worker/train/device.h"
#include "worker/train/init_from.h"
#include "worker/train/pretrain_progress.h"
#include "worker/train/train_step.h"

namespace bert {
namespace {

using Clock = std::chrono::steady_clock;

class LocalLoop {
 public:
  explicit LocalLoop(const RunConfig& config) : config_(config) {}

  Result<LocalPretrainResult> Run() {
    BERT_RETURN_IF_ERROR(Prepare());
    const Clock::time_point start = Clock::now();
    const double budget_s = static_cast<double>(config_.train.time_budget_s);
    for (int64_t step = 0; step < config_.train.steps; ++step) {
      const double spent = std::chrono::duration<double>(Clock::now() - start).count();
      if (budget_s > 0) {
        trainer_->SetBudgetFraction(spent / budget_s);
        progress_->SetBudget(budget_s, spent);
      }
      BERT_RETURN_IF_ERROR(Step(step));
      const double now_spent = std::chrono::duration<double>(Clock::now() - start).count();
      if (budget_s > 0 && now_spent >= budget_s && step + 1 < config_.train.steps) {
        progress_->Flush(step + 1);
        LOG(INFO) << "[worker r0] time budget " << FormatTimeBudget(config_.train.time_budget_s) << " spent after step "
                  << step + 1 << " of at most " << config_.train.steps;
        break;
      }
    }
    return result_;
  }

 private:
  Status Prepare() {
    Result<DeviceChoice> device = ChooseDeviceForThisProcess(config_.train.device, "train.device", config_.train.tf32);
    if (!device.ok()) return device.status();
    Result<Pretraining> pretraining = MakePretraining(config_, OptimizerShard(), device->device);
    if (!pretraining.ok()) return pretraining.status();
    model_ = std::move(pretraining->model);
    trainer_ = std::move(pretraining->trainer);
    if (!config_.train.init_from.empty()) {
      BERT_RETURN_IF_ERROR(InitializeFromPretrained(config_.train.init_from, model_.get()));
    }
    Result<std::unique_ptr<TrainingData>> data = TrainingData::Open(config_, /*num_threads=*/2);
    if (!data.ok()) return data.status();
    data_ = std::move(data).value();
    if (data_->vocab().vocab_size != model_->config().vocab_size) {
      return Status::InvalidArgument(config_.model + ": vocab_size " + std::to_string(model_->config().vocab_size) +
                                     " differs from the corpus vocabulary's " +
                                     std::to_string(data_->vocab().vocab_size));
    }
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
    const double peak_gflops = MeasureTrainingPeakGflops(device->device, trainer_->options().bf16_autocast);
    auto progress = PretrainProgress::Open(config_.run_dir, 0, config_.train.steps, config_.log.every_steps,
                                           peak_gflops, "[worker r0]");
    if (!progress.ok()) return progress.status();
    progress_ = std::move(progress).value();
    LOG(INFO) << "[worker r0] " << model_->parameters().numel() << " parameters, " << config_.train.steps
              << " steps of " << config_.train.global_batch_size << " samples (micro-batch " << micro_batch_
              << "), device " << device->description << ", " << config_.train.precision << " GEMM peak "
              << peak_gflops << " GFLOP/s, run dir " << config_.run_dir;
    return Status::Ok();
  }

  Status Step(int64_t step) {
    auto step_start = Clock::now();
    std::vector<TrainingSample> samples;
    BERT_RETURN_IF_ERROR(data_->RankSamples(static_cast<uint64_t>(step), 0, 1, &samples));
    std::vector<PretrainBatch> micro_batches;
    StepRecord record;
    for (size_t first = 0; first < samples.size(); first += static_cast<size_t>(micro_batch_)) {
      std::vector<TrainingSample> part(samples.begin() + first,
                                       samples.begin() + std::min(samples.size(), first + micro_batch_));
      CollateOptions collate;
      collate.pad_id = data_->vocab().pad_id;
      Result<PretrainBatch> batch = CollateSamples(part, collate);
      if (!batch.ok()) return batch.status();
      record.flops += PreTrainingFlops(model_->config(), batch->batch_size(), batch->seq_len(), batch->num_masked());
      micro_batches.push_back(std::move(batch).value());
    }
    // In this loop the training thread makes its own samples: that is its data wait.
    record.data_wait_seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
    StepMetrics metrics = trainer_->TrainStep(micro_batches);
    record.sequences = metrics.num_sequences;
    record.tokens = metrics.num_tokens;
    record.masked = metrics.num_masked;
    record.loss = metrics.loss;
    record.mlm_correct = metrics.mlm_accuracy * static_cast<double>(metrics.num_masked);
    record.nsp_correct = metrics.nsp_accuracy * static_cast<double>(metrics.num_sequences);
    record.lr = metrics.lr;
    record.grad_norm = metrics.grad_norm;
    record.seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
    progress_->Add(step + 1, record);
    const ProgressSummary& last = progress_->last();
    result_ = {last.steps, last.loss, last.mlm_accuracy, last.samples_per_second, last.mfu};
    return Status::Ok();
  }

  RunConfig config_;
  std::unique_ptr<BertForPreTraining> model_;
  std::unique_ptr<TrainingData> data_;
  std::unique_ptr<Trainer> trainer_;
  int64_t micro_batch_ = 0;
  std::unique_ptr<PretrainProgress> progress_;
  LocalPretrainResult result_;
};

}  // namespace

Result<LocalPretrainResult> RunLocalPretraining(const RunConfig& config) {
  LocalLoop loop(config);
  return loop.Run();
}

}  // namespace bert
