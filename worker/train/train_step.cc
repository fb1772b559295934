#include "worker/train/train_step.h"

#include "checkpoint/checkpoint.h"
#include "datapipe/random.h"
#include "worker/train/device.h"

#include <glog/logging.h>

#include <chrono>
#include <cmath>
#include <optional>
#include <thread>

// BERT_WITH_CUDA comes from CMake (worker/CMakeLists.txt): set when the
// LibTorch found has CUDA.
#if defined(BERT_WITH_CUDA)
#define BERT_HAVE_CUDA 1
#include <ATen/autocast_mode.h>
#else
#define BERT_HAVE_CUDA 0
#endif

namespace bert {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kStreamDeviceDropout = 0x646576646f70;  // "devdop"

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

#if BERT_HAVE_CUDA
// bf16 autocast on CUDA for the lifetime of the object (forward only: the
// backward runs outside, as PyTorch recommends), with the per-device API that
// replaced is_enabled/set_enabled/set_autocast_gpu_dtype in LibTorch 2.4.
// Untested in this CPU-only environment.
class CudaBf16Autocast {
 public:
  CudaBf16Autocast()
      : was_enabled_(at::autocast::is_autocast_enabled(at::kCUDA)),
        previous_dtype_(at::autocast::get_autocast_dtype(at::kCUDA)) {
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::increment_nesting();
  }
  ~CudaBf16Autocast() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCUDA, was_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype_);
  }

 private:
  bool was_enabled_;
  at::ScalarType previous_dtype_;
};
#endif

}  // namespace

bool BuiltWithCuda() { return BERT_HAVE_CUDA != 0; }

Status TrainerOptions::Validate() const {
  BERT_RETURN_IF_ERROR(optimizer.Validate());
  BERT_RETURN_IF_ERROR(schedule.Validate());
  if (!std::isfinite(max_grad_norm)) {
    return Status::InvalidArgument("trainer.max_grad_norm: must be finite, got " + std::to_string(max_grad_norm));
  }
  if (bf16_autocast && !BERT_HAVE_CUDA) {
    return Status::InvalidArgument("trainer.bf16_autocast: needs a CUDA build of LibTorch (this one is CPU-only)");
  }
  return Status::Ok();
}

namespace {

ShardRange RangeOf(const OptimizerShard& shard, const FlatParameters& params) {
  CHECK(shard.world_size > 0 && shard.rank < shard.world_size) << "rank " << shard.rank << " of " << shard.world_size;
  return ShardRanges(static_cast<uint64_t>(params.numel()), shard.world_size)[shard.rank];
}

}  // namespace

Trainer::Trainer(BertForPreTraining* model, const TrainerOptions& options, OptimizerShard shard)
    : model_(model),
      options_(options),
      shard_(std::move(shard)),
      shard_begin_(static_cast<int64_t>(RangeOf(shard_, model->parameters()).begin)),
      shard_end_(static_cast<int64_t>(RangeOf(shard_, model->parameters()).end)),
      optimizer_(options.optimizer, ShardRanges(model->parameters(), shard_begin_, shard_end_),
                 static_cast<int64_t>(model->parameters().size()), shard_begin_, shard_end_,
                 model->parameters().values().options()) {
  CHECK(options.Validate().ok()) << options.Validate().ToString();
  if (shard_.norm_reducer) optimizer_.set_norm_reducer(shard_.norm_reducer);
}

Result<TrainerOptions> TrainerOptionsFromConfig(const TrainConfig& t) {
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
  options.bf16_autocast = t.precision == "bf16";
  if (options.bf16_autocast && !BERT_HAVE_CUDA) {
    return Status::InvalidArgument("train.precision: bf16 needs a CUDA build of LibTorch (this one is CPU-only)");
  }
  BERT_RETURN_IF_ERROR(options.Validate());
  return options;
}

LossWeights LossWeights::ShareOf(const PretrainBatch& batch, int64_t step_masked, int64_t step_sequences) {
  LossWeights weights;
  weights.mlm = step_masked > 0 ? static_cast<double>(batch.num_masked()) / static_cast<double>(step_masked) : 0.0;
  weights.nsp =
      step_sequences > 0 ? static_cast<double>(batch.batch_size()) / static_cast<double>(step_sequences) : 0.0;
  return weights;
}

void Trainer::ForwardBackward(const PretrainBatch& host_batch, const LossWeights& weights) {
  if (activity_ != nullptr) activity_->Enter(WorkerPhase::kForward);
  Clock::time_point start = Clock::now();
  const torch::Device device = model_->parameters().values().device();
  const PretrainBatch batch = host_batch.input_ids.device() == device ? host_batch : host_batch.To(device);
  if (!device.is_cpu()) {
    // Device dropout draws from the device's generator: seeded per micro-batch
    // from this rank's checkpointed stream (device.h).
    DropoutRng& rng = model_->dropout_rng();
    SeedDeviceGenerator(device, rnd::Hash(rng.seed(), kStreamDeviceDropout, rng.Take(1)));
  }
  PreTrainingLoss loss;
  {
#if BERT_HAVE_CUDA
    std::optional<CudaBf16Autocast> autocast;
    if (options_.bf16_autocast && model_->parameters().values().is_cuda()) autocast.emplace();
#endif
    BertForPreTraining::Output output = model_->Forward(batch, /*training=*/true);
    loss = model_->Loss(output, batch);
  }
  pending_.forward_seconds += SecondsSince(start);
  start = Clock::now();
  LossWeights used = weights;
  if (!options_.nsp_loss) {
    used.nsp = 0;
    loss.nsp_loss = 0;
    loss.nsp_correct = 0;
  }
  if (activity_ != nullptr) activity_->Enter(WorkerPhase::kBackward);
  if (used.nsp == 0) {
    (loss.mlm * used.mlm).backward();
  } else if (used.mlm == 1.0 && used.nsp == 1.0) {
    loss.loss.backward();
  } else {
    (loss.mlm * used.mlm + loss.nsp * used.nsp).backward();
  }
  pending_.backward_seconds += SecondsSince(start);

  pending_.loss += loss.mlm_loss * used.mlm + loss.nsp_loss * used.nsp;
  pending_.mlm_loss += loss.mlm_loss * used.mlm;
  pending_.nsp_loss += loss.nsp_loss * used.nsp;
  pending_.micro_batches += 1;
  pending_.mlm_correct += loss.mlm_correct;
  pending_.num_masked += loss.num_masked;
  pending_.nsp_correct += loss.nsp_correct;
  pending_.num_sequences += loss.num_sequences;
  pending_.num_tokens += host_batch.num_tokens();  // the host copy: no device sync
  pending_.num_padded_tokens += batch.batch_size() * batch.seq_len();
}

StepMetrics Trainer::ApplyGradients(const UpdateGate& accept) {
  CHECK_GT(pending_.micro_batches, 0) << "ApplyGradients without ForwardBackward";
  if (activity_ != nullptr) activity_->Enter(WorkerPhase::kOptimizer);
  const Clock::time_point start = Clock::now();
  FlatParameters& params = model_->parameters();
  StepMetrics metrics;
  metrics.loss = pending_.loss;
  metrics.mlm_loss = pending_.mlm_loss;
  metrics.nsp_loss = pending_.nsp_loss;
  metrics.mlm_accuracy =
      pending_.num_masked > 0 ? static_cast<double>(pending_.mlm_correct) / static_cast<double>(pending_.num_masked) : 0;
  metrics.nsp_accuracy = pending_.num_sequences > 0 ? static_cast<double>(pending_.nsp_correct) /
                                                          static_cast<double>(pending_.num_sequences)
                                                    : 0;
  metrics.num_sequences = pending_.num_sequences;
  metrics.num_tokens = pending_.num_tokens;
  metrics.num_padded_tokens = pending_.num_padded_tokens;
  metrics.num_masked = pending_.num_masked;
  metrics.forward_seconds = pending_.forward_seconds;
  metrics.backward_seconds = pending_.backward_seconds;
  pending_ = MicroBatchStats();

  const torch::Tensor& grads = params.grads();
  const bool whole = shard_begin_ == 0 && shard_end_ == params.numel();
  double squares = SumOfSquares(grads, shard_begin_, shard_end_ - shard_begin_);
  if (shard_.sum_over_ranks) squares = shard_.sum_over_ranks(squares);
  metrics.grad_norm = std::sqrt(squares);
  metrics.lr = budget_fraction_ >= 0 ? options_.schedule.AtBudget(optimizer_.step() + 1, budget_fraction_)
                                     : options_.schedule.At(optimizer_.step() + 1);
  const bool finite = std::isfinite(metrics.grad_norm);
  const bool accepted = !accept || accept(metrics.grad_norm);  // asked about every step, a non-finite one too
  if (finite && accepted) {
    double clip = 1.0;
    if (options_.max_grad_norm > 0 && metrics.grad_norm > options_.max_grad_norm) {
      clip = options_.max_grad_norm / (metrics.grad_norm + 1e-6);  // torch's clip_grad_norm_
    }
    // The optimizer zeroes the gradients of its range as it reads them (no
    // separate pass); with a shard, the rest are zeroed here.
    optimizer_.Step(params.values(), grads, metrics.lr, clip, /*zero_grads=*/true);
    if (!whole) {
      torch::NoGradGuard no_grad;
      grads.narrow(0, 0, shard_begin_).zero_();
      grads.narrow(0, shard_end_, params.numel() - shard_end_).zero_();
    }
  } else {
    metrics.skipped = true;
    if (!finite && !accept) {  // a gate's caller reports its own refusals
      LOG(WARNING) << "[worker] step " << optimizer_.step() + 1 << ": gradient norm " << metrics.grad_norm
                   << ", update skipped";
    }
    params.ZeroGrad();
  }
  metrics.step = optimizer_.step();
  metrics.optimizer_seconds = SecondsSince(start);
  return metrics;
}

StepMetrics Trainer::TrainStep(const std::vector<PretrainBatch>& micro_batches) {
  CHECK(!micro_batches.empty());
  int64_t masked = 0, sequences = 0;
  for (const PretrainBatch& batch : micro_batches) {
    masked += batch.num_masked();
    sequences += batch.batch_size();
  }
  for (const PretrainBatch& batch : micro_batches) {
    ForwardBackward(batch, LossWeights::ShareOf(batch, masked, sequences));
  }
  return ApplyGradients();
}

Result<Pretraining> MakePretraining(const RunConfig& config, OptimizerShard shard, torch::Device device) {
  torch::set_num_threads(config.train.intra_op_threads);
  const unsigned cpus = std::thread::hardware_concurrency();
  if (cpus > 0 && static_cast<unsigned>(config.train.intra_op_threads) > cpus) {
    // Measured on 2 cores: 4 threads made a 2048^3 GEMM 25x slower than 1.
    LOG(WARNING) << "[worker] train.intra_op_threads " << config.train.intra_op_threads << " exceeds the " << cpus
                 << " CPUs of this machine: CPU kernels slow down many times over; use at most " << cpus
                 << " (divided among the ranks on the machine)";
  }
  Result<TrainerOptions> trainer_options = TrainerOptionsFromConfig(config.train);
  if (!trainer_options.ok()) return trainer_options.status();
  if (trainer_options->bf16_autocast && !device.is_cuda()) {
    return Status::InvalidArgument("train.precision: bf16 runs on CUDA, but this process trains on " + device.str() +
                                   " (train.device: " + config.train.device + "); use fp32");
  }
  trainer_options->nsp_loss = config.data.objective != "mlm";
  ModelOptions model_options;
  model_options.seed = config.train.init_seed;
  model_options.device = device;
  Result<BertConfig> model_config = LoadBertConfig(config.model);
  if (!model_config.ok()) return model_config.status();
  if (!config.train.dropout) {
    // Cramming (Geiping and Goldstein 2022): no dropout while pretraining on
    // a budget, where the model underfits. For this run only.
    model_config->hidden_dropout_prob = 0;
    model_config->attention_probs_dropout_prob = 0;
  }
  Pretraining result;
  result.model = std::make_unique<BertForPreTraining>(*model_config, model_options);
  result.model->set_activation_checkpointing(config.train.activation_checkpointing);
  result.trainer = std::make_unique<Trainer>(result.model.get(), *trainer_options, std::move(shard));
  return result;
}

}  // namespace bert
