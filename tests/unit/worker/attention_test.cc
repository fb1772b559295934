// Self-attention: the fused CPU op (strided per-head GEMMs) against the
// reference in LibTorch ops, forward and backward, with padded rows and with
// dropout (both must draw the same masks from the same DropoutRng stream).
#include "worker/model/attention.h"

#include <gtest/gtest.h>

#include "worker/model/attention_cpu.h"

namespace bert {
namespace {

double RelativeError(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / b.norm().item<double>();
}

void Compare(torch::Dtype dtype, const std::vector<int64_t>& lengths, int64_t seq, double dropout, double tolerance) {
  ASSERT_TRUE(FusedAttentionAvailable());
  const int64_t batch = static_cast<int64_t>(lengths.size()), heads = 3, head_size = 8, hidden = heads * head_size;
  torch::manual_seed(3);
  auto options = torch::TensorOptions().dtype(dtype);
  torch::Tensor qkv = torch::randn({batch * seq, 3 * hidden}, options).requires_grad_(true);
  torch::Tensor upstream = torch::randn({batch * seq, hidden}, options);
  AttentionMask mask = MakeAttentionMask(torch::tensor(lengths, torch::kLong), seq, dtype, torch::kCPU);

  DropoutRng fused_rng(11), reference_rng(11);
  torch::Tensor fused = FusedSelfAttentionCpu(qkv, mask.key_bias, batch, heads, dropout, &fused_rng);
  (fused * upstream).sum().backward();
  torch::Tensor fused_grad = qkv.grad().clone();
  qkv.mutable_grad() = torch::Tensor();
  torch::Tensor reference = SelfAttentionReference(qkv, mask, heads, dropout, &reference_rng);
  (reference * upstream).sum().backward();

  EXPECT_EQ(fused_rng.counter(), reference_rng.counter());
  EXPECT_LT(RelativeError(fused, reference), tolerance);
  EXPECT_LT(RelativeError(fused_grad, qkv.grad()), tolerance);
  // Padded keys get no attention: the queries of a short row do not see them.
  if (mask.key_bias.defined()) {
    torch::Tensor changed = qkv.detach().clone();
    changed.narrow(0, lengths[0], seq - lengths[0]).normal_();  // row 0's padding
    DropoutRng again(11);
    torch::Tensor out = FusedSelfAttentionCpu(changed, mask.key_bias, batch, heads, dropout, &again);
    EXPECT_LT(RelativeError(out.narrow(0, 0, lengths[0]), fused.detach().narrow(0, 0, lengths[0])), tolerance);
  }
}

TEST(AttentionTest, FusedMatchesReferenceUnpadded) {
  Compare(torch::kFloat32, {16, 16}, 16, 0.0, 1e-5);
  Compare(torch::kFloat64, {16, 16}, 16, 0.0, 1e-12);
}

TEST(AttentionTest, FusedMatchesReferenceWithPadding) {
  Compare(torch::kFloat32, {5, 19, 12}, 19, 0.0, 1e-5);
  Compare(torch::kFloat64, {5, 19, 12}, 19, 0.0, 1e-12);
}

TEST(AttentionTest, FusedMatchesReferenceWithDropout) {
  Compare(torch::kFloat32, {7, 20}, 20, 0.1, 1e-5);
  Compare(torch::kFloat64, {7, 20}, 20, 0.3, 1e-12);
}

TEST(AttentionTest, MaskIsUndefinedWithoutPadding) {
  AttentionMask full = MakeAttentionMask(torch::tensor({4, 4}, torch::kLong), 4, torch::kFloat32, torch::kCPU);
  EXPECT_FALSE(full.key_bias.defined());
  AttentionMask padded = MakeAttentionMask(torch::tensor({4, 2}, torch::kLong), 4, torch::kFloat32, torch::kCPU);
  ASSERT_TRUE(padded.key_bias.defined());
  EXPECT_EQ(padded.key_bias[1][3].item<float>(), std::numeric_limits<float>::lowest());
  EXPECT_EQ(padded.key_bias[1][1].item<float>(), 0.0f);
}

}  // namespace
}  // namespace bert
