// Autograd ops for parameters that live in FlatParameters (flat_parameters.h),
// and the few other ops whose LibTorch form costs a full extra pass per step.
//
// Why custom ops: LibTorch's own linear/embedding backward allocate a fresh
// gradient per use, which AccumulateGrad then adds into the flat buffer (one
// more read and write of every gradient). These ops instead accumulate
// straight into the parameter's grad() view with a beta = 1 GEMM (the
// "gradient accumulation fusion" of Megatron-LM, Shoeybi et al. 2019), so the
// flat gradient buffer is written once per use and never copied. They return
// no gradient for the parameter inputs; the parameters are passed in only so
// that outputs require grad when a parameter does.
//
// Contract common to all ops:
// - `weight`/`bias` are leaves whose grad() is defined (FlatParameters::param
//   or Span); gradients are added to it, never assigned. A parameter that
//   does not require grad gets nothing.
// - Inputs are 2-D [rows, features] (the model keeps activations flat).
// - Each graph may be backpropagated once (backward releases saved state).
// - Under autocast (CUDA bf16) the GEMMs run in the activations' dtype and
//   the products are added to the fp32 gradient buffers (master weights).
// - Deterministic on CPU for a fixed thread count.
#pragma once

#include <cstdint>

#include "worker/torch.h"

namespace bert {

// y = x W^T + b with x [N, in], W [out, in], b [out] (may be undefined).
torch::Tensor FlatLinear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);

// gelu(x W^T + b), HF's exact erf GELU, with bias and activation fused
// into the passes around the GEMMs (linear_gelu.cc). b must be defined.
torch::Tensor FlatLinearGelu(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);

// Rows of `weight` [V, H] at `ids` [N] (int64): [N, H]. The backward adds the
// output gradient rows into weight.grad() in input order (deterministic).
torch::Tensor FlatEmbedding(const torch::Tensor& ids, const torch::Tensor& weight);

// Counter-based dropout randomness: element k of the stream is a pure
// function of (seed, k), so a step's masks do not depend on the thread
// count, and the whole state (seed, counter) fits in a checkpoint.
class DropoutRng {
 public:
  explicit DropoutRng(uint64_t seed = 0) : seed_(seed) {}
  // Reserves `count` stream elements; returns the first (always even).
  uint64_t Take(uint64_t count) {
    uint64_t first = counter_;
    counter_ += count + (count & 1);
    return first;
  }
  uint64_t seed() const { return seed_; }
  uint64_t counter() const { return counter_; }
  void Restore(uint64_t seed, uint64_t counter) {
    seed_ = seed;
    counter_ = counter;
  }

 private:
  uint64_t seed_ = 0;
  uint64_t counter_ = 0;
};

// Inverted dropout (Srivastava et al. 2014): zeroes each element with
// probability p and scales the rest by 1/(1-p). Identity when p == 0. On a
// non-CPU device it falls back to at::dropout (its own generator).
torch::Tensor Dropout(const torch::Tensor& x, double p, DropoutRng* rng);

// Dropout's two passes without autograd, for ops that fuse it (attention):
// DropoutForwardKernel returns x * mask / (1 - p) and sets *mask (uint8,
// shaped like x, 1 = kept), drawing from `rng` exactly as Dropout does;
// DropoutApplyMask returns x * mask / (1 - p) for a given mask (the backward,
// or re-applying a saved mask). CPU, float or double.
torch::Tensor DropoutForwardKernel(const torch::Tensor& x, double p, DropoutRng* rng, torch::Tensor* mask);
torch::Tensor DropoutApplyMask(const torch::Tensor& x, const torch::Tensor& mask, double p);

// Mean cross-entropy of `logits` [M, V] against `labels` [M] (int64), as
// torch's cross_entropy, with one [M, V] buffer in all: the backward turns
// the saved log-probabilities into softmax - onehot in place. Returns a
// scalar; 0 when M == 0.
torch::Tensor CrossEntropyMean(const torch::Tensor& logits, const torch::Tensor& labels);

}  // namespace bert
