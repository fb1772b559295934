#include "worker/attention.h"

#include <glog/logging.h>
#include <torch/version.h>

#include <cmath>

namespace bert {

AttentionMask MakeAttentionMask(const torch::Tensor& lengths, int64_t seq_len, int64_t num_heads, torch::Dtype dtype,
                                torch::Device device) {
  AttentionMask mask;
  const int64_t batch = lengths.size(0);
  mask.batch_size = batch;
  mask.seq_len = seq_len;
  const auto options = torch::TensorOptions().dtype(dtype).device(device);
  torch::Tensor lengths_on_device = lengths.to(device);
  torch::Tensor positions = torch::arange(seq_len, torch::TensorOptions().dtype(torch::kLong).device(device));
  torch::Tensor keep = positions.unsqueeze(0) < lengths_on_device.unsqueeze(1);  // [B, T]
  if (keep.all().item<bool>()) {
    mask.additive = torch::zeros({batch * num_heads, seq_len, seq_len}, options);
    return mask;
  }
  mask.keep = keep.view({batch, 1, 1, seq_len});
  const double lowest =
      dtype == torch::kFloat64 ? std::numeric_limits<double>::lowest() : std::numeric_limits<float>::lowest();
  mask.additive = torch::zeros({batch, 1, 1, seq_len}, options)
                      .masked_fill_(mask.keep.logical_not(), lowest)
                      .expand({batch, num_heads, seq_len, seq_len})
                      .reshape({batch * num_heads, seq_len, seq_len});
  return mask;
}

torch::Tensor SelfAttention(const torch::Tensor& qkv, const AttentionMask& mask, int64_t num_heads,
                            double dropout_p, DropoutRng* rng) {
  const int64_t batch = mask.batch_size;
  const int64_t seq = mask.seq_len;
  const int64_t hidden = qkv.size(1) / 3;
  const int64_t head_size = hidden / num_heads;
  CHECK_EQ(qkv.size(0), batch * seq);
  CHECK_EQ(head_size * num_heads * 3, qkv.size(1));
  // [B, T, 3, A, d] -> [3, B, A, T, d]: one copy makes q, k and v each
  // contiguous [B, A, T, d]; unbind's backward is a single stack.
  std::vector<torch::Tensor> parts =
      qkv.view({batch, seq, 3, num_heads, head_size}).permute({2, 0, 3, 1, 4}).contiguous().unbind(0);

  torch::Tensor context;  // [B, A, T, d]
#if TORCH_VERSION_MAJOR >= 2
  if (!qkv.is_cpu() || dropout_p <= 0.0) {
    std::optional<torch::Tensor> attn_mask;
    if (mask.keep.defined()) attn_mask = mask.keep;
    context = at::scaled_dot_product_attention(parts[0], parts[1], parts[2], attn_mask, dropout_p, false);
  }
#endif
  if (!context.defined()) {
    const int64_t groups = batch * num_heads;
    torch::Tensor q = parts[0].view({groups, seq, head_size});
    torch::Tensor k = parts[1].view({groups, seq, head_size});
    torch::Tensor v = parts[2].view({groups, seq, head_size});
    // mask + Q K^T / sqrt(d) in one GEMM (beta = 1). Not beta = 0 with a
    // dummy input: LibTorch 1.13's small-matrix bmm kernel computes
    // r * beta + ..., so uninitialised NaNs would survive a zero beta.
    CHECK_EQ(mask.additive.size(0), groups);
    torch::Tensor scores = at::baddbmm(mask.additive.to(qkv.scalar_type()), q, k.transpose(1, 2), 1.0,
                                       1.0 / std::sqrt(static_cast<double>(head_size)));
    torch::Tensor probs = at::_softmax(scores, -1, false);
    if (dropout_p > 0.0) probs = Dropout(probs, dropout_p, rng);
    context = at::bmm(probs, v).view({batch, num_heads, seq, head_size});
  }
  return context.permute({0, 2, 1, 3}).reshape({batch * seq, hidden});
}

}  // namespace bert
