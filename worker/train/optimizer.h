// Optimizers over flat parameter and gradient buffers (flat_parameters.h):
//
// - AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019,
//   "Decoupled Weight Decay Regularization"), with torch.optim.AdamW's exact
//   update: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
//   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps), bc_i = 1 - b_i^t.
// - LAMB: layer-wise adaptive moments (You et al. 2019, "Large Batch
//   Optimization for Deep Learning: Training BERT in 76 minutes",
//   Algorithm 2), as NVIDIA's BERT pretraining runs it (apex FusedLAMB):
//   u = (m/bc1) / (sqrt(v/bc2) + eps) + wd p; p -= lr * r * u with the trust
//   ratio r = ||p|| / ||u|| per parameter tensor (1 when either norm is 0),
//   applied to the parameters that take weight decay (all with nvlamb).
//
// Weight decay applies only to ranges marked weight_decay (BERT excludes
// biases and LayerNorm). All state is flat too: exp_avg and exp_avg_sq are
// tensors over the optimizer's shard [shard_begin, shard_end) of the flat
// index space, plus the step count. A shard that is the whole buffer is the
// single-process case; ZeRO-1 gives each rank a contiguous shard, and
// parameters cut by a shard boundary appear as partial ranges (LAMB's norms
// then need the NormReducer to sum partial squares across ranks).
//
// On the CPU the update is one fused, multi-threaded pass per range (reads
// g, m, v, p; writes m, v, p; optimizer_kernels.h), memory-bound; LAMB's
// norms are summed in double over fixed 64K-element blocks in order, so
// results do not depend on the thread count.
// Elsewhere (CUDA), or with fused = false, it runs as ATen ops per range.
// Not thread-safe; Step() is called by one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "worker/torch.h"

#include "common/status.h"
#include "worker/model/flat_parameters.h"

namespace bert {

enum class OptimizerKind { kAdamW, kLamb };
Result<OptimizerKind> ParseOptimizerKind(const std::string& name);  // "adamw" | "lamb"
const char* OptimizerKindName(OptimizerKind kind);

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::kAdamW;
  double beta1 = 0.9;          // first-moment decay
  double beta2 = 0.999;        // second-moment decay
  double epsilon = 1e-6;       // BERT's value (torch's default is 1e-8)
  double weight_decay = 0.01;  // decoupled decay for ranges marked weight_decay
  bool bias_correction = true; // divide moments by 1 - beta^t (NVIDIA LAMB: on)
  bool trust_ratio_for_all = false;  // LAMB: trust ratio also for no-decay tensors (NVLAMB)
  bool fused = true;           // CPU: one fused pass; false forces the ATen-op path (tests)
  // Names the bad field, e.g. "optimizer.beta2: must be in [0, 1), got 1".
  Status Validate() const;
};

// A contiguous part of one parameter in the flat index space.
struct ParamRange {
  int64_t begin = 0;        // first flat element
  int64_t numel = 0;
  int64_t param_index = 0;  // the FlatParameters slot it belongs to
  bool weight_decay = true;
  // Multiplies the step's lr for this range (layer-wise lr decay in
  // fine-tuning). 0 = frozen: the parameters do not change at all (no update,
  // no weight decay; AdamW also leaves the moments as they are). 1 (default)
  // is bit-identical to no scaling.
  double lr_scale = 1.0;
};

// The ranges of `params` that fall in [shard_begin, shard_end) (the whole
// buffer by default), one per parameter, clipped to the shard.
std::vector<ParamRange> ShardRanges(const FlatParameters& params, int64_t shard_begin = 0, int64_t shard_end = -1);

// Sums per-parameter partial squares across ranks in place ([num_params, 2]
// double: ||p||^2, ||u||^2). Single process: leave unset.
using NormReducer = std::function<void(torch::Tensor& partial_squares)>;

class FlatOptimizer {
 public:
  // State covers [shard_begin, shard_end); `ranges` must lie inside it.
  FlatOptimizer(const OptimizerOptions& options, std::vector<ParamRange> ranges, int64_t num_params,
                int64_t shard_begin, int64_t shard_end, torch::TensorOptions state_options);
  // The whole model in one shard.
  FlatOptimizer(const OptimizerOptions& options, const FlatParameters& params);

  // One update with learning rate `lr` of params (full flat buffer) from
  // grads (same index space) multiplied by grad_scale (clipping, averaging).
  // With zero_grads, the gradients of the shard's ranges are zeroed in the
  // same pass (the caller zeroes any other part).
  void Step(const torch::Tensor& params, const torch::Tensor& grads, double lr, double grad_scale = 1.0,
            bool zero_grads = false);

  const OptimizerOptions& options() const { return options_; }
  int64_t step() const { return step_; }
  void set_step(int64_t step) { step_ = step; }
  // First and second moments over the shard (index i = flat shard_begin + i).
  const torch::Tensor& exp_avg() const { return exp_avg_; }
  const torch::Tensor& exp_avg_sq() const { return exp_avg_sq_; }
  int64_t shard_begin() const { return shard_begin_; }
  int64_t shard_end() const { return shard_end_; }
  void set_norm_reducer(NormReducer reducer) { norm_reducer_ = std::move(reducer); }

 private:
  // A fixed piece (<= 64K elements) of one range: the unit of parallel work
  // and of LAMB's partial sums, so results do not depend on thread count.
  struct Block {
    int64_t range = 0;  // index into ranges_
    int64_t begin = 0;  // flat element
    int64_t numel = 0;
  };
  static std::vector<Block> MakeBlocks(const std::vector<ParamRange>& ranges);

  void StepAdamW(const torch::Tensor& params, const torch::Tensor& grads, double lr, double grad_scale,
                 bool zero_grads);
  void StepLamb(const torch::Tensor& params, const torch::Tensor& grads, double lr, double grad_scale,
                bool zero_grads);
  bool UseFused(const torch::Tensor& params) const;
  double DecayOf(const ParamRange& range) const { return range.weight_decay ? options_.weight_decay : 0.0; }

  OptimizerOptions options_;
  std::vector<ParamRange> ranges_;
  std::vector<Block> blocks_;
  int64_t num_params_ = 0;
  int64_t shard_begin_ = 0;
  int64_t shard_end_ = 0;
  torch::Tensor exp_avg_;
  torch::Tensor exp_avg_sq_;
  int64_t step_ = 0;
  NormReducer norm_reducer_;
};

// Sum of squares of flat[begin, begin + numel), in double over fixed blocks
// added in order: the same bits for any thread count.
double SumOfSquares(const torch::Tensor& flat, int64_t begin, int64_t numel);

// sqrt(SumOfSquares) of the whole buffer: the global gradient norm.
double GlobalNorm(const torch::Tensor& flat);

}  // namespace bert
