#include "worker/finetune/finetune_trainer.h"

#include <glog/logging.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "common/file_util.h"
#include "common/logging.h"
#include "common/protocol.h"
#include "finetune/metrics.h"
#include "worker/finetune/distillation.h"
#include "worker/finetune/finetune_loss.h"
#include "worker/finetune/finetune_model.h"
#include "worker/finetune/finetune_optim.h"
#include "worker/finetune/finetune_predict.h"
#include "datapipe/random.h"
#include "worker/train/device.h"
#include "worker/train/lr_schedule.h"
#include "worker/train/optimizer.h"

namespace bert {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// SplitMix64 finaliser: decorrelates (seed, epoch) and (seed, rank) streams.
uint64_t Mix(uint64_t seed, uint64_t salt) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (salt + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// One labelled file read and encoded.
struct DataSet {
  std::string path;
  std::vector<finetune::Feature> features;
  std::vector<int32_t> labels;  // features[i].label
};

Result<DataSet> LoadDataSet(const std::string& path, const finetune::FinetuneConfig& config,
                            const finetune::LabelMap& labels, const FullTokenizer& tokenizer) {
  Result<std::vector<finetune::Example>> examples = finetune::ReadExamples(path, config.fields, config.format, true);
  if (!examples.ok()) return examples.status();
  if (examples->empty()) return Status::InvalidArgument(path + ": no examples");
  Result<finetune::EncodedSet> encoded =
      finetune::EncodeExamples(*examples, labels, tokenizer, config.max_seq_len, path);
  if (!encoded.ok()) return encoded.status();
  if (encoded->truncated > 0) {
    LOG(INFO) << "[finetune] " << path << ": " << encoded->truncated << " of " << examples->size()
              << " examples truncated to " << config.max_seq_len << " tokens";
  }
  DataSet set;
  set.path = path;
  set.features = std::move(encoded->features);
  for (const finetune::Feature& feature : set.features) set.labels.push_back(feature.label);
  return set;
}

// Everything one run holds; the loop below reads like the steps.
class FinetuneRun {
 public:
  FinetuneRun(const finetune::FinetuneConfig& config, Communicator* comm, Communicator* buffer_comm)
      : config_(config), comm_(comm), buffer_comm_(buffer_comm != nullptr ? buffer_comm : comm) {
    rank_ = comm ? comm->rank() : 0;
    world_ = comm ? comm->world_size() : 1;
    tag_ = "[finetune r" + std::to_string(rank_) + "] ";
  }

  FinetuneOutcome Run();

 private:
  FinetuneOutcome Fail(Status status, int exit_code) {
    FinetuneOutcome outcome;
    outcome.status = std::move(status);
    outcome.exit_code = exit_code;
    return outcome;
  }
  Status Setup(int* exit_code);
  // Distillation: appends the transfer set to train_ and labels every
  // training example with the teacher's log-probabilities (teacher_).
  Status SetupDistillation(torch::Device device);
  // The loss of one pass: the hard-label loss, or with teacher_rows (the
  // teacher's log-probabilities of the batch's rows) the distillation loss
  // over it (worker/finetune/distillation.h).
  torch::Tensor TaskLoss(const torch::Tensor& logits, const ClassificationBatch& batch, double normalizer,
                         int64_t global_count, const torch::Tensor& teacher_rows);
  // Forward/backward of this rank's slice of one global batch; returns this rank's loss share.
  // global_count: examples in the global batch (R-Drop's and distillation's normaliser).
  double ForwardBackward(const ClassificationBatch& batch, double normalizer, int64_t global_count, bool with_rdrop,
                         const torch::Tensor& teacher_rows);
  Status SumGradients(double* loss_share);
  Status TrainStep(const std::vector<int64_t>& order, int64_t first, int64_t last, double* loss, bool* skipped);
  Result<finetune::ClassificationMetrics> Evaluate(const DataSet& set);
  Status WriteOutputs(const finetune::ClassificationMetrics* best_dev);
  void LogProgress(int64_t epoch, double loss);

  const finetune::FinetuneConfig& config_;
  Communicator* comm_;         // host scalars (MPI)
  Communicator* buffer_comm_;  // the flat gradients (NCCL on a GPU; else comm_)
  int rank_ = 0, world_ = 1;
  std::string tag_;
  ClassifierBundle bundle_;
  finetune::LabelMap labels_;
  DataSet train_, dev_, test_;
  int64_t transfer_examples_ = 0;  // distillation: examples of distill.transfer at the end of train_
  torch::Tensor teacher_;          // distillation: [train_ size, labels] teacher log-probabilities (CPU)
  int32_t pad_id_ = 0;
  ClassificationLossOptions loss_;
  LrSchedule schedule_;
  std::unique_ptr<FlatOptimizer> optimizer_;
  std::unique_ptr<Fgm> fgm_;
  int64_t steps_per_epoch_ = 0, total_steps_ = 0, step_ = 0;
  // Progress: examples and time since the start of training.
  int64_t examples_done_ = 0;
  double train_seconds_ = 0;
  // Early stopping.
  torch::Tensor best_values_;
  int64_t best_step_ = 0, best_epoch_ = 0;
  double best_metric_ = 0;
  bool have_best_ = false;
  nlohmann::json history_ = nlohmann::json::array();
  nlohmann::json best_dev_json_;
};

Status FinetuneRun::Setup(int* exit_code) {
  *exit_code = kExitUsage;
  BERT_RETURN_IF_ERROR(config_.Validate());
  if (config_.dev_file.empty()) return Status::InvalidArgument(config_.source + ": data.dev: required");
  Result<finetune::LabelMap> labels = finetune::LabelMap::FromNames(config_.labels, config_.source + ": labels");
  if (!labels.ok()) return labels.status();
  labels_ = std::move(labels).value();
  if (!config_.class_weights.empty() && static_cast<int32_t>(config_.class_weights.size()) != labels_.size()) {
    return Status::InvalidArgument(config_.source +
                                   ": loss.class_weights: " + std::to_string(config_.class_weights.size()) +
                                   " weights for " + std::to_string(labels_.size()) + " labels");
  }
  Result<ClassificationLossKind> kind = ParseClassificationLossKind(config_.loss);
  if (!kind.ok()) return Status::InvalidArgument(config_.source + ": " + kind.status().message());
  loss_.kind = *kind;
  loss_.label_smoothing = config_.label_smoothing;
  loss_.focal_gamma = config_.focal_gamma;
  loss_.class_weights = config_.class_weights;
  if (config_.intra_op_threads > 0) torch::set_num_threads(config_.intra_op_threads);

  *exit_code = config_.init == "none" ? kExitUsage : kExitBadData;
  Result<DeviceChoice> device = ChooseDeviceForThisProcess(config_.device, "train.device");
  if (!device.ok()) {
    *exit_code = kExitUsage;
    return Status::InvalidArgument(config_.source + ": " + device.status().message());
  }
  LOG(INFO) << tag_ << "device " << device->description;
  Result<ClassifierBundle> bundle = BuildFinetuneModel(config_, torch::kFloat32, device->device);
  if (!bundle.ok()) return bundle.status();
  bundle_ = std::move(bundle).value();
  if (config_.max_seq_len > bundle_.model->config().max_position_embeddings) {
    *exit_code = kExitUsage;
    return Status::InvalidArgument(config_.source + ": train.max_seq_len: must be <= the model's " +
                                   "max_position_embeddings (" +
                                   std::to_string(bundle_.model->config().max_position_embeddings) + "), got " +
                                   std::to_string(config_.max_seq_len));
  }
  pad_id_ = std::max(0, bundle_.vocab->pad_id());
  // Ranks differ only in their dropout stream (rank 0 keeps the seed's).
  bundle_.model->dropout_rng().Restore(rank_ == 0 ? config_.seed : Mix(config_.seed, rank_), 0);

  *exit_code = kExitBadData;
  const std::pair<const std::string*, DataSet*> files[] = {
      {&config_.train_file, &train_}, {&config_.dev_file, &dev_}, {&config_.test_file, &test_}};
  for (const auto& [path, set] : files) {
    if (path->empty()) continue;
    Result<DataSet> loaded = LoadDataSet(*path, config_, labels_, *bundle_.tokenizer);
    if (!loaded.ok()) return loaded.status();
    *set = std::move(loaded).value();
  }

  if (config_.class_weights_mode == "balanced" && loss_.class_weights.empty()) {
    // n / (k * count_c) over the training labels (scikit-learn's "balanced").
    std::vector<double> counts(static_cast<size_t>(labels_.size()), 0.0);
    for (int32_t label : train_.labels) counts[label] += 1;
    for (double count : counts) {
      loss_.class_weights.push_back(count > 0 ? static_cast<double>(train_.labels.size()) / (counts.size() * count)
                                              : 0.0);
    }
  }
  if (!config_.distill_teacher.empty()) {
    Status distill = SetupDistillation(device->device);
    if (!distill.ok()) {
      *exit_code = distill.code() == Status::Code::kCorruption ? kExitBadData : kExitUsage;
      return distill;
    }
  }
  *exit_code = kExitUsage;
  const int64_t examples = static_cast<int64_t>(train_.features.size());
  steps_per_epoch_ = (examples + config_.batch_size - 1) / config_.batch_size;
  total_steps_ = steps_per_epoch_ * config_.epochs;
  schedule_.peak_lr = config_.lr;
  schedule_.total_steps = total_steps_;
  schedule_.warmup_steps = static_cast<int64_t>(std::llround(config_.warmup_ratio * static_cast<double>(total_steps_)));
  schedule_.decay = LrDecay::kLinear;
  schedule_.end_lr = 0;
  BERT_RETURN_IF_ERROR(schedule_.Validate());
  OptimizerOptions optimizer;
  optimizer.kind = OptimizerKind::kAdamW;
  optimizer.weight_decay = config_.weight_decay;
  BERT_RETURN_IF_ERROR(optimizer.Validate());
  LayerwiseLrOptions layerwise;
  layerwise.num_layers = bundle_.model->config().num_hidden_layers;
  layerwise.layer_lr_decay = config_.layer_lr_decay;
  layerwise.freeze_embeddings = config_.freeze_embeddings;
  layerwise.freeze_layers = config_.freeze_layers;
  FlatParameters& params = bundle_.model->parameters();
  optimizer_ = std::make_unique<FlatOptimizer>(optimizer, LayerwiseRanges(params, layerwise),
                                               static_cast<int64_t>(params.size()), 0, params.numel(),
                                               params.values().options());
  if (config_.fgm_epsilon > 0) fgm_ = std::make_unique<Fgm>(&params, config_.fgm_epsilon);
  *exit_code = kExitOk;
  return Status::Ok();
}

Status FinetuneRun::SetupDistillation(torch::Device device) {
  Result<std::vector<finetune::Example>> examples =
      finetune::ReadExamples(config_.train_file, config_.fields, config_.format, true);
  if (!examples.ok()) return examples.status();
  if (!config_.distill_transfer_file.empty()) {
    Result<std::vector<finetune::Example>> transfer =
        finetune::ReadExamples(config_.distill_transfer_file, config_.fields, config_.format, false);
    if (!transfer.ok()) return Status::Corruption(transfer.status().message());
    if (transfer->empty()) return Status::Corruption(config_.distill_transfer_file + ": no examples");
    Result<finetune::EncodedSet> encoded = finetune::EncodeExamples(
        *transfer, labels_, *bundle_.tokenizer, config_.max_seq_len, config_.distill_transfer_file);
    if (!encoded.ok()) return Status::Corruption(encoded.status().message());
    for (finetune::Feature& feature : encoded->features) {
      train_.labels.push_back(feature.label);
      train_.features.push_back(std::move(feature));
    }
    transfer_examples_ = static_cast<int64_t>(transfer->size());
    examples->insert(examples->end(), transfer->begin(), transfer->end());
  }
  const std::string cache = !config_.distill_teacher_logits.empty() ? config_.distill_teacher_logits
                                                                    : config_.output + "/teacher_logits.safetensors";
  Result<torch::Tensor> teacher = TeacherLogProbs(config_, *examples, labels_.names(), cache, comm_, device);
  if (!teacher.ok()) return teacher.status();
  teacher_ = std::move(teacher).value();
  CHECK_EQ(teacher_.size(0), static_cast<int64_t>(train_.features.size()));
  if (rank_ == 0) {
    LOG(INFO) << tag_ << "distilling from " << config_.distill_teacher << " at temperature "
              << config_.distill_temperature << ", alpha " << config_.distill_alpha << "; " << transfer_examples_
              << " transfer examples from " << (transfer_examples_ > 0 ? config_.distill_transfer_file : "none");
  }
  return Status::Ok();
}

torch::Tensor FinetuneRun::TaskLoss(const torch::Tensor& logits, const ClassificationBatch& batch, double normalizer,
                                    int64_t global_count, const torch::Tensor& teacher_rows) {
  if (!teacher_rows.defined()) return ClassificationLoss(logits, batch.labels, loss_, normalizer);
  const double alpha = config_.distill_alpha;
  torch::Tensor loss = alpha * DistillationLoss(logits, teacher_rows.to(logits.device()), config_.distill_temperature,
                                                static_cast<double>(global_count));
  // The hard loss over the labelled rows only (transfer examples may have none).
  const torch::Tensor labelled = (batch.labels >= 0).nonzero().view({-1});
  if (labelled.numel() > 0 && alpha < 1) {
    loss = loss + (1 - alpha) * ClassificationLoss(logits.index_select(0, labelled),
                                                   batch.labels.index_select(0, labelled), loss_, normalizer);
  }
  return loss;
}

double FinetuneRun::ForwardBackward(const ClassificationBatch& host_batch, double normalizer, int64_t global_count,
                                    bool with_rdrop, const torch::Tensor& teacher_rows) {
  if (host_batch.size() == 0) return 0;  // this rank has no share of a short batch
  BertForSequenceClassification& model = *bundle_.model;
  const torch::Device device = model.parameters().values().device();
  if (!device.is_cpu()) {
    // Device dropout draws from the device's generator: per rank and step from this rank's stream.
    DropoutRng& rng = model.dropout_rng();
    SeedDeviceGenerator(device, rnd::Hash(rng.seed(), /*stream=*/0x6674646f70 /* "ftdop" */, rng.Take(1)));
  }
  const ClassificationBatch batch = host_batch.To(device);
  torch::Tensor logits = model.Forward(batch.input_ids, batch.token_type_ids, batch.lengths, true);
  torch::Tensor loss = TaskLoss(logits, batch, normalizer, global_count, teacher_rows);
  if (with_rdrop && config_.rdrop_alpha > 0) {
    // R-Drop: a second pass with fresh dropout masks; the task loss is the
    // mean of both passes' plus the symmetric KL between them.
    torch::Tensor logits2 = model.Forward(batch.input_ids, batch.token_type_ids, batch.lengths, true);
    loss = 0.5 * (loss + TaskLoss(logits2, batch, normalizer, global_count, teacher_rows)) +
           RDropLoss(logits, logits2, config_.rdrop_alpha, static_cast<double>(global_count));
  }
  loss.backward();
  return loss.item<double>();
}

Status FinetuneRun::SumGradients(double* loss_share) {
  if (world_ == 1) return Status::Ok();
  FlatParameters& params = bundle_.model->parameters();
  BERT_RETURN_IF_ERROR(buffer_comm_->AllReduceBuckets(params.grads().data_ptr(), static_cast<size_t>(params.numel()),
                                               CommDataType::kFloat32, size_t{25} << 20));
  if (loss_share != nullptr) {
    BERT_RETURN_IF_ERROR(comm_->AllReduce(loss_share, 1, CommDataType::kFloat64, CommReduceOp::kSum));
  }
  return Status::Ok();
}

Status FinetuneRun::TrainStep(const std::vector<int64_t>& order, int64_t first, int64_t last, double* loss,
                              bool* skipped) {
  FlatParameters& params = bundle_.model->parameters();
  std::vector<int32_t> global_labels;  // the labelled examples' (distillation's transfer set may have none)
  for (int64_t i = first; i < last; ++i) {
    if (train_.labels[order[i]] >= 0) global_labels.push_back(train_.labels[order[i]]);
  }
  const double normalizer = global_labels.empty() ? 1.0 : LossNormalizer(global_labels, loss_);
  const auto [begin, end] = RankSlice(last - first, rank_, world_);
  const ClassificationBatch batch = CollateFeatures(train_.features, order, first + begin, first + end, pad_id_);
  torch::Tensor teacher_rows;  // the teacher's rows of this rank's slice
  if (teacher_.defined()) {
    const std::vector<int64_t> rows(order.begin() + first + begin, order.begin() + first + end);
    teacher_rows = teacher_.index_select(0, torch::tensor(rows, torch::kLong));
  }
  *loss = ForwardBackward(batch, normalizer, last - first, /*with_rdrop=*/true, teacher_rows);
  BERT_RETURN_IF_ERROR(SumGradients(loss));
  // FGM needs the whole batch's clean gradient (summed above) for r; the
  // adversarial pass's gradient is summed on its own and added back.
  if (fgm_ != nullptr && fgm_->Attack()) {
    torch::Tensor clean = params.grads().clone();
    params.ZeroGrad();
    ForwardBackward(batch, normalizer, last - first, /*with_rdrop=*/false, teacher_rows);
    fgm_->Restore();
    BERT_RETURN_IF_ERROR(SumGradients(nullptr));
    params.grads().add_(clean);
  }
  const double norm = GlobalNorm(params.grads());
  *skipped = !std::isfinite(norm);
  if (*skipped) {
    params.ZeroGrad();
    return Status::Ok();
  }
  const double scale = config_.max_grad_norm > 0 && norm > config_.max_grad_norm ? config_.max_grad_norm / norm : 1.0;
  optimizer_->Step(params.values(), params.grads(), schedule_.At(optimizer_->step() + 1), scale,
                   /*zero_grads=*/true);
  return Status::Ok();
}

Result<finetune::ClassificationMetrics> FinetuneRun::Evaluate(const DataSet& set) {
  Result<InferenceResult> inference =
      RunInference(bundle_.model.get(), set.features, std::max(config_.batch_size, 32), pad_id_, comm_, &loss_);
  if (!inference.ok()) return inference.status();
  finetune::ClassificationMetrics metrics = finetune::ComputeMetrics(set.labels, inference->predicted, labels_);
  metrics.loss = inference->loss;
  return metrics;
}

void FinetuneRun::LogProgress(int64_t epoch, double loss) {
  if (rank_ != 0) return;
  const double rate = train_seconds_ > 0 ? static_cast<double>(examples_done_) / train_seconds_ : 0;
  const double eta =
      step_ > 0 ? train_seconds_ / static_cast<double>(step_) * static_cast<double>(total_steps_ - step_) : 0;
  char line[256];
  std::snprintf(line, sizeof line, "epoch %lld/%d step %lld/%lld loss %.4f lr %.3g | %.1f examples/s | ETA %s",
                static_cast<long long>(epoch), config_.epochs, static_cast<long long>(step_),
                static_cast<long long>(total_steps_), loss, schedule_.At(std::max<int64_t>(1, step_)), rate,
                FormatDuration(eta).c_str());
  LOG(INFO) << tag_ << line;
}

Status FinetuneRun::WriteOutputs(const finetune::ClassificationMetrics* best_dev) {
  nlohmann::json metrics;
  metrics["dev"] = best_dev != nullptr ? best_dev->ToJson() : nlohmann::json();
  if (!test_.features.empty()) {
    Result<finetune::ClassificationMetrics> test = Evaluate(test_);  // every rank: a collective
    if (!test.ok()) return test.status();
    metrics["test"] = test->ToJson();
    if (rank_ == 0) LOG(INFO) << tag_ << "test (best model):\n" << test->Table();
  }
  if (rank_ != 0) return Status::Ok();
  metrics["best_step"] = best_step_;
  metrics["best_epoch"] = best_epoch_;
  metrics["history"] = history_;
  metrics["init"] = config_.init;
  metrics["seed"] = config_.seed;
  if (teacher_.defined()) {
    metrics["distill"] = {{"teacher", config_.distill_teacher},
                          {"temperature", config_.distill_temperature},
                          {"alpha", config_.distill_alpha},
                          {"transfer", config_.distill_transfer_file},
                          {"transfer_examples", transfer_examples_}};
  }
  std::error_code ec;
  std::filesystem::create_directories(config_.output, ec);
  if (ec) return Status::IoError(config_.output + ": cannot create the output directory: " + ec.message());
  const std::string metrics_path = config_.output + "/metrics.json";
  std::filesystem::remove(metrics_path, ec);  // an old metrics.json must not vouch for a half-written model
  BERT_RETURN_IF_ERROR(WriteHfDirectory(
      config_.output, ToHfClassifier(*bundle_.model, bundle_.model->parameters().values(), labels_.names(),
                                     *bundle_.vocab, bundle_.tokenizer->options().lower_case, config_.max_seq_len)));
  return WriteFileAtomic(metrics_path, metrics.dump(2) + "\n");
}

FinetuneOutcome FinetuneRun::Run() {
  int exit_code = kExitOk;
  Status setup = Setup(&exit_code);
  if (!setup.ok()) return Fail(setup, exit_code);
  FlatParameters& params = bundle_.model->parameters();
  if (rank_ == 0) {
    LOG(INFO) << tag_ << train_.features.size() - transfer_examples_ << " training examples, " << dev_.features.size() << " dev, "
              << labels_.size() << " labels; " << total_steps_ << " steps (" << config_.epochs << " epochs of "
              << steps_per_epoch_ << ") of " << config_.batch_size << " over " << world_ << " rank(s); init "
              << config_.init;
  }
  const int64_t examples = static_cast<int64_t>(train_.features.size());
  bool stop = false;
  int32_t evaluations_without_gain = 0;
  double loss_sum = 0;
  int64_t loss_steps = 0;
  for (int64_t epoch = 0; epoch < config_.epochs && !stop; ++epoch) {
    const std::vector<int64_t> order = EpochOrder(examples, config_.seed, epoch);
    for (int64_t s = 0; s < steps_per_epoch_ && !stop; ++s) {
      const Clock::time_point start = Clock::now();
      const int64_t first = s * config_.batch_size, last = std::min(examples, first + config_.batch_size);
      double loss = 0;
      bool skipped = false;
      Status stepped = TrainStep(order, first, last, &loss, &skipped);
      if (!stepped.ok()) return Fail(stepped, kExitError);
      ++step_;
      if (skipped) LOG(WARNING) << tag_ << "step " << step_ << ": non-finite gradient norm; update skipped";
      loss_sum += loss;
      ++loss_steps;
      examples_done_ += last - first;
      train_seconds_ += SecondsSince(start);
      const int64_t log_every = std::max<int64_t>(1, total_steps_ / 20);
      if (step_ % log_every == 0 || step_ == total_steps_) LogProgress(epoch + 1, loss);
      const bool epoch_end = s + 1 == steps_per_epoch_;
      const bool evaluate =
          config_.eval_every_steps > 0 ? step_ % config_.eval_every_steps == 0 || step_ == total_steps_ : epoch_end;
      if (!evaluate) continue;
      Result<finetune::ClassificationMetrics> dev = Evaluate(dev_);
      if (!dev.ok()) return Fail(dev.status(), kExitError);
      Result<double> value = dev->Get(config_.early_stopping_metric);
      if (!value.ok())
        return Fail(Status::InvalidArgument(config_.source + ": early_stopping.metric: " + value.status().message()),
                    kExitUsage);
      history_.push_back(
          {{"step", step_}, {"epoch", epoch + 1}, {"train_loss", loss_sum / loss_steps}, {"dev", dev->ToJson()}});
      loss_sum = 0;
      loss_steps = 0;
      const bool improved =
          !have_best_ || finetune::MetricImproves(config_.early_stopping_metric, *value, best_metric_);
      if (rank_ == 0) {
        LOG(INFO) << tag_ << "dev at step " << step_ << ": accuracy " << dev->accuracy << ", macro-F1 " << dev->macro_f1
                  << ", loss " << dev->loss << (improved ? " (best so far)" : "");
      }
      if (improved) {
        have_best_ = true;
        best_metric_ = *value;
        best_step_ = step_;
        best_epoch_ = epoch + 1;
        best_values_ = params.values().clone();
        best_dev_json_ = dev->ToJson();
        evaluations_without_gain = 0;
      } else if (config_.patience > 0 && ++evaluations_without_gain >= config_.patience) {
        if (rank_ == 0) LOG(INFO) << tag_ << "early stop: no gain in " << config_.patience << " evaluations";
        stop = true;
      }
    }
  }
  if (have_best_) {
    torch::NoGradGuard no_grad;
    params.values().copy_(best_values_);
  }
  Result<finetune::ClassificationMetrics> best_dev =
      finetune::ClassificationMetrics::FromJson(best_dev_json_, "best dev metrics");
  Status written = WriteOutputs(have_best_ && best_dev.ok() ? &*best_dev : nullptr);
  if (!written.ok()) return Fail(written, kExitError);
  if (comm_ != nullptr && world_ > 1) {
    Status barrier = comm_->Barrier();
    if (!barrier.ok()) return Fail(barrier, kExitError);
  }
  if (rank_ == 0) {
    LOG(INFO) << tag_ << "best dev " << config_.early_stopping_metric << " " << best_metric_ << " at step "
              << best_step_ << "; wrote " << config_.output;
  }
  FinetuneOutcome outcome;
  outcome.steps = step_;
  outcome.best_step = best_step_;
  outcome.best_metric = best_metric_;
  return outcome;
}

}  // namespace

std::vector<int64_t> EpochOrder(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 generator(Mix(seed, static_cast<uint64_t>(epoch)));
  // Fisher-Yates with our own index draw: std::shuffle's use of the
  // generator is implementation-defined, this is the same everywhere.
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(generator() % static_cast<uint64_t>(i + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

std::pair<int64_t, int64_t> RankSlice(int64_t n, int rank, int world) {
  CHECK(world > 0 && rank >= 0 && rank < world);
  return {n * rank / world, n * (rank + 1) / world};
}

FinetuneOutcome RunFinetune(const finetune::FinetuneConfig& config, Communicator* comm, Communicator* buffer_comm) {
  FinetuneRun run(config, comm, buffer_comm);
  return run.Run();
}

}  // namespace bert
