// Multi-head scaled dot-product self-attention (Vaswani et al. 2017) over a
// fused QKV projection, with a key padding mask built from sequence lengths.
//
// With LibTorch 2.x, at::scaled_dot_product_attention (fused kernels) runs
// on CUDA, and on the CPU whenever no attention dropout is drawn; otherwise
// (LibTorch 1.x, or CPU training with dropout, whose masks must come from
// our seeded DropoutRng for the CPU determinism contract) a manual
// implementation with the same result runs: softmax(Q K^T / sqrt(d) + mask) V.
//
// Pure functions; thread-safe given distinct DropoutRng objects.
#pragma once

#include <cstdint>

#include <torch/torch.h>

#include "worker/flat_ops.h"

namespace bert {

// The key padding mask of a padded batch: position t of row b takes part
// when t < lengths[b]. Built once per forward and shared by all layers.
struct AttentionMask {
  int64_t batch_size = 0;  // B
  int64_t seq_len = 0;     // T (padded)
  // [B*A, T, T]: 0 for real keys, the dtype's lowest value for padding
  // (HF uses torch.finfo(dtype).min; finite, so no NaN), expanded over heads
  // and queries once per forward: the scores GEMM adds it (baddbmm, beta 1).
  // All zeros when no row is padded.
  torch::Tensor additive;
  // [B, 1, 1, T] bool, true for real keys (the fused kernel's form); undefined when unpadded.
  torch::Tensor keep;
};

// `lengths` [B] int64, each in [1, seq_len].
AttentionMask MakeAttentionMask(const torch::Tensor& lengths, int64_t seq_len, int64_t num_heads, torch::Dtype dtype,
                                torch::Device device);

// qkv [B*T, 3H] (queries, keys, values side by side, as the fused projection
// produces them) -> context [B*T, H]. `dropout_p` applies to the attention
// probabilities when > 0.
torch::Tensor SelfAttention(const torch::Tensor& qkv, const AttentionMask& mask, int64_t num_heads,
                            double dropout_p, DropoutRng* rng);

}  // namespace bert
