// Multi-head scaled dot-product self-attention (Vaswani et al. 2017) over a
// fused QKV projection, with a key padding mask built from sequence lengths:
//   context = softmax(Q K^T / sqrt(d) + key_bias) V, per head,
// with dropout on the attention probabilities when training.
//
// Which implementation runs:
// - LibTorch 2.x: at::scaled_dot_product_attention (fused kernels) on CUDA,
//   and on the CPU whenever no attention dropout is drawn.
// - CPU otherwise (LibTorch 1.x, or 2.x training with dropout, whose masks
//   must come from our seeded DropoutRng for the CPU determinism contract):
//   attention_cpu.h's fused op (strided per-head GEMMs, no copies), or, when
//   the BLAS does not export sgemm_/dgemm_, SelfAttentionReference below.
// All give the same result up to rounding, and the CPU paths draw the same
// dropout masks from the same DropoutRng stream.
//
// Pure functions; thread-safe given distinct DropoutRng objects.
#pragma once

#include <cstdint>

#include "worker/torch.h"

#include "worker/model/flat_ops.h"

namespace bert {

// The key padding mask of a padded batch: position t of row b takes part
// when t < lengths[b]. Built once per forward and shared by all layers.
struct AttentionMask {
  int64_t batch_size = 0;  // B
  int64_t seq_len = 0;     // T (padded)
  // [B, T]: 0 for real keys, the dtype's lowest value for padding (HF uses
  // torch.finfo(dtype).min; finite, so no NaN). Undefined when no row is
  // padded: then no mask is applied at all.
  torch::Tensor key_bias;
  // [B, 1, 1, T] bool, true for real keys (the fused kernel's form); undefined when unpadded.
  torch::Tensor keep;
};

// `lengths` [B] int64, each in [1, seq_len].
AttentionMask MakeAttentionMask(const torch::Tensor& lengths, int64_t seq_len, torch::Dtype dtype,
                                torch::Device device);

// qkv [B*T, 3H] (queries, keys, values side by side, as the fused projection
// produces them) -> context [B*T, H]. `dropout_p` applies to the attention
// probabilities when > 0.
torch::Tensor SelfAttention(const torch::Tensor& qkv, const AttentionMask& mask, int64_t num_heads,
                            double dropout_p, DropoutRng* rng);

// The same in plain LibTorch ops (permute copies, bmm, softmax): the
// fallback, and the reference the fused CPU op is tested against.
torch::Tensor SelfAttentionReference(const torch::Tensor& qkv, const AttentionMask& mask, int64_t num_heads,
                                     double dropout_p, DropoutRng* rng);

}  // namespace bert
