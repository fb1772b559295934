#include "worker/model/attention.h"

#include <glog/logging.h>
#include <torch/version.h>

#include <cmath>
#include <limits>

#include "worker/model/attention_cpu.h"

namespace bert {

AttentionMask MakeAttentionMask(const torch::Tensor& lengths, int64_t seq_len, torch::Dtype dtype,
                                torch::Device device) {
  AttentionMask mask;
  const int64_t batch = lengths.size(0);
  mask.batch_size = batch;
  mask.seq_len = seq_len;
  torch::Tensor positions = torch::arange(seq_len, torch::TensorOptions().dtype(torch::kLong).device(device));
  torch::Tensor keep = positions.unsqueeze(0) < lengths.to(device).unsqueeze(1);  // [B, T]
  if (keep.all().item<bool>()) return mask;
  mask.keep = keep.view({batch, 1, 1, seq_len});
  const double lowest =
      dtype == torch::kFloat64 ? std::numeric_limits<double>::lowest() : std::numeric_limits<float>::lowest();
  mask.key_bias = torch::zeros({batch, seq_len}, torch::TensorOptions().dtype(dtype).device(device))
                      .masked_fill_(keep.logical_not(), lowest);
  return mask;
}

torch::Tensor SelfAttentionReference(const torch::Tensor& qkv, const AttentionMask& mask, int64_t num_heads,
                                     double dropout_p, DropoutRng* rng) {
  const int64_t batch = mask.batch_size;
  const int64_t seq = mask.seq_len;
  const int64_t hidden = qkv.size(1) / 3;
  const int64_t head_size = hidden / num_heads;
  const int64_t groups = batch * num_heads;
  CHECK_EQ(qkv.size(0), batch * seq);
  CHECK_EQ(head_size * num_heads * 3, qkv.size(1));
  // [B, T, 3, A, d] -> [3, B, A, T, d]: one copy makes q, k and v each
  // contiguous [B, A, T, d]; unbind's backward is a single stack.
  std::vector<torch::Tensor> parts =
      qkv.view({batch, seq, 3, num_heads, head_size}).permute({2, 0, 3, 1, 4}).contiguous().unbind(0);
  torch::Tensor q = parts[0].view({groups, seq, head_size}) * (1.0 / std::sqrt(static_cast<double>(head_size)));
  torch::Tensor scores = at::bmm(q, parts[1].view({groups, seq, head_size}).transpose(1, 2));
  if (mask.key_bias.defined()) {
    scores = (scores.view({batch, num_heads, seq, seq}) + mask.key_bias.view({batch, 1, 1, seq}))
                 .view({groups, seq, seq});
  }
  torch::Tensor probs = at::_softmax(scores, -1, false);
  if (dropout_p > 0.0) probs = Dropout(probs, dropout_p, rng);
  torch::Tensor context = at::bmm(probs, parts[2].view({groups, seq, head_size}));
  return context.view({batch, num_heads, seq, head_size}).permute({0, 2, 1, 3}).reshape({batch * seq, hidden});
}

torch::Tensor SelfAttention(const torch::Tensor& qkv, const AttentionMask& mask, int64_t num_heads,
                            double dropout_p, DropoutRng* rng) {
#if TORCH_VERSION_MAJOR >= 2
  if (!qkv.is_cpu() || dropout_p <= 0.0) {
    const int64_t batch = mask.batch_size, seq = mask.seq_len;
    const int64_t hidden = qkv.size(1) / 3, head_size = hidden / num_heads;
    std::vector<torch::Tensor> parts =
        qkv.view({batch, seq, 3, num_heads, head_size}).permute({2, 0, 3, 1, 4}).unbind(0);
    std::optional<torch::Tensor> attn_mask;
    if (mask.keep.defined()) attn_mask = mask.keep;
    torch::Tensor context =
        at::scaled_dot_product_attention(parts[0], parts[1], parts[2], attn_mask, dropout_p, false);
    return context.permute({0, 2, 1, 3}).reshape({batch * seq, hidden});
  }
#endif
  const bool fused = qkv.is_cpu() && (qkv.scalar_type() == torch::kFloat || qkv.scalar_type() == torch::kDouble) &&
                     FusedAttentionAvailable();
  if (!fused) return SelfAttentionReference(qkv, mask, num_heads, dropout_p, rng);
  torch::Tensor key_bias = mask.key_bias.defined() ? mask.key_bias.to(qkv.scalar_type()).contiguous() : mask.key_bias;
  return FusedSelfAttentionCpu(qkv, key_bias, mask.batch_size, num_heads, dropout_p, rng);
}

}  // namespace bert
