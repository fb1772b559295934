// Trainer: one optimizer step of BertForPreTraining: forward and backward
// over K micro-batches (gradient accumulation into the flat gradient
// buffer), global-norm clipping, the learning-rate schedule and an AdamW or
// LAMB update over the flat buffers.
//
// The loss of a step is the mean MLM cross-entropy over all masked
// positions of the step plus the mean NSP cross-entropy over all its
// sequences, however the step is cut into micro-batches and ranks: each
// micro-batch's two mean losses are weighted by its share of the step's
// masked positions and sequences (LossWeights::ShareOf), and the gradients
// are summed. So K micro-batches, or W ranks whose gradients are summed by
// an all-reduce, give the gradient of one batch of all the samples (up to
// float summation order). Clipping scales the gradient by
// max_grad_norm / norm when the global L2 norm exceeds it; the scale is
// folded into the optimizer pass. A step whose gradient norm is not finite
// is skipped: no update, step count unchanged, `skipped` set.
//
// A distributed loop uses the two halves: ForwardBackward() for each of its
// micro-batches, weighted by the step's global counts, an all-reduce (sum)
// of model.parameters().grads(), then ApplyGradients(). TrainStep() is both
// halves for one process.
//
// On CUDA builds of LibTorch, bf16_autocast (train.precision: bf16) runs the
// forward under autocast (bf16 activations and GEMMs) while parameters,
// gradients, optimizer state and the loss stay fp32 (master weights).
// CPU-only builds compile that path out and reject the option.
// On a device other than the CPU, each micro-batch first reseeds the
// device's generator from the model's DropoutRng (SeedDeviceGenerator), so
// dropout masks differ per rank and continue exactly after a resume.
//
// Not thread-safe: one Trainer per model, driven by one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "common/run_config.h"
#include "common/status.h"
#include "common/worker_activity.h"
#include "worker/model/bert_heads.h"
#include "worker/train/lr_schedule.h"
#include "worker/train/optimizer.h"
#include "worker/train/pretrain_batch.h"

namespace bert {

// Whether this LibTorch build has CUDA (bf16 autocast is available).
bool BuiltWithCuda();

// Multipliers of a micro-batch's mean MLM and NSP losses.
struct LossWeights {
  double mlm = 1.0, nsp = 1.0;
  // The micro-batch's share of a step with step_masked masked positions and
  // step_sequences sequences in all (over micro-batches and ranks).
  static LossWeights ShareOf(const PretrainBatch& batch, int64_t step_masked, int64_t step_sequences);
};

struct TrainerOptions {
  OptimizerOptions optimizer;
  LrSchedule schedule;
  double max_grad_norm = 1.0;  // clip the global gradient norm to this; <= 0: no clipping
  bool bf16_autocast = false;  // CUDA builds only
  // The sentence-pair loss (NSP or SOP: the batch's nsp_labels) is part of
  // the loss; false for data.objective mlm, whose loss is MLM alone (the
  // NSP head then gets no gradient, and its accuracy reads 0).
  bool nsp_loss = true;
  Status Validate() const;
};

// The run config's train section as trainer options (errors name the key);
// nsp_loss stays true (MakePretraining sets it from data.objective).
Result<TrainerOptions> TrainerOptionsFromConfig(const TrainConfig& train);

// Sums over the micro-batches of one step.
struct MicroBatchStats {
  double loss = 0, mlm_loss = 0, nsp_loss = 0;  // weighted sums of per-micro-batch means
  int64_t micro_batches = 0;
  int64_t mlm_correct = 0, num_masked = 0;
  int64_t nsp_correct = 0, num_sequences = 0;
  int64_t num_tokens = 0;         // real (unpadded) tokens
  int64_t num_padded_tokens = 0;  // B * T: what the model computed on
  double forward_seconds = 0, backward_seconds = 0;
};

struct StepMetrics {
  int64_t step = 0;          // optimizer updates done, including this one
  double loss = 0;           // mlm_loss + nsp_loss
  double mlm_loss = 0, nsp_loss = 0;  // this process's weighted sums (the step's means when it holds the whole step)
  double mlm_accuracy = 0;   // over all masked positions of the step
  double nsp_accuracy = 0;   // over all sequences of the step
  double lr = 0;             // rate used by this update
  double grad_norm = 0;      // global L2 norm before clipping
  bool skipped = false;      // no update was made: a non-finite gradient, or the caller's gate refused it
  int64_t num_sequences = 0, num_tokens = 0, num_padded_tokens = 0, num_masked = 0;
  double forward_seconds = 0, backward_seconds = 0, optimizer_seconds = 0;
};

// ZeRO-1 (Rajbhandari et al. 2020, stage 1): the trainer's optimizer keeps
// state for, and updates, only this rank's part of the flat parameters,
// ShardRanges(N, world_size)[rank] (checkpoint/checkpoint.h: the range its
// checkpoint shard holds). The caller reduce-scatters
// the gradients so that this range holds their sum before ApplyGradients()
// and all-gathers the parameters after it. The rest of the gradient buffer
// is ignored and zeroed. The clipping norm's square is this range's share,
// added over ranks by sum_over_ranks; LAMB's per-tensor norms, whose tensors
// a range boundary may cut, by norm_reducer. The default is the whole buffer
// (one process).
struct OptimizerShard {
  uint32_t rank = 0, world_size = 1;
  std::function<double(double)> sum_over_ranks;  // null: this process holds every part
  NormReducer norm_reducer;
};

class Trainer {
 public:
  // `model` must outlive the trainer. CHECKs options (validate user input first).
  Trainer(BertForPreTraining* model, const TrainerOptions& options, OptimizerShard shard = OptimizerShard());

  StepMetrics TrainStep(const std::vector<PretrainBatch>& micro_batches);

  // Adds the gradient of this micro-batch's weighted loss into grads().
  // The batch is moved to the model's device when it is elsewhere.
  void ForwardBackward(const PretrainBatch& batch, const LossWeights& weights);
  // Both terms scaled alike.
  void ForwardBackward(const PretrainBatch& batch, double loss_scale) {
    ForwardBackward(batch, LossWeights{loss_scale, loss_scale});
  }
  // Clips, updates with the scheduled rate, zeroes the gradients and returns
  // the metrics of the micro-batches since the last call. `accept`, when
  // given, sees the global gradient norm (finite or not) before the update
  // and may refuse it (train.anomaly): the update is then skipped as for a non-finite one.
  using UpdateGate = std::function<bool(double grad_norm)>;
  StepMetrics ApplyGradients(const UpdateGate& accept = nullptr);
  // This process's share of the pending step's loss (a weighted sum; summed
  // over the ranks it is the step's loss).
  double pending_loss() const { return pending_.loss; }

  int64_t step() const { return optimizer_.step(); }
  // Time-budget runs: the fraction of the budget spent, which the next
  // ApplyGradients() decays the rate by (LrSchedule::AtBudget); negative
  // (the default): the schedule runs over steps.
  void SetBudgetFraction(double fraction) { budget_fraction_ = fraction; }
  // Where the trainer records its phase (forward, backward, optimizer) for
  // the hang diagnosis; null (the default): nowhere. Must outlive it.
  void set_activity(WorkerActivity* activity) { activity_ = activity; }
  FlatOptimizer& optimizer() { return optimizer_; }
  const TrainerOptions& options() const { return options_; }
  BertForPreTraining& model() { return *model_; }

 private:
  BertForPreTraining* model_;
  TrainerOptions options_;
  double budget_fraction_ = -1;
  OptimizerShard shard_;
  int64_t shard_begin_, shard_end_;  // this rank's flat range
  FlatOptimizer optimizer_;
  MicroBatchStats pending_;
  WorkerActivity* activity_ = nullptr;
};

// A run's model and trainer as its config describes them: LibTorch's
// intra-op threads set, the model from `model` with weights drawn from
// train.init_seed, the trainer from the train section. Errors name the file
// or key. (The trainer points into the model; moving the pointers keeps it.)
// train.dropout false zeroes the model's dropout rates for this run only
// (checkpoints and exports keep the model config's); data.objective mlm
// drops the sentence-pair loss. train.init_from is not applied here: the
// caller does that when it does not resume (init_from.h).
struct Pretraining {
  std::unique_ptr<BertForPreTraining> model;
  std::unique_ptr<Trainer> trainer;
};
// `shard`: this rank's part of the optimizer state (ZeRO-1; see above).
// `device`: where the model, its gradients and the optimizer state live
// (worker/train/device.h chooses it); the weights are drawn on the CPU
// either way, so every device starts from the same ones. train.precision
// bf16 needs a CUDA device (an error naming the key otherwise).
Result<Pretraining> MakePretraining(const RunConfig& config, OptimizerShard shard = OptimizerShard(),
                                    torch::Device device = torch::kCPU);

}  // namespace bert
