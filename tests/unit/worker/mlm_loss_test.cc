// The fused MLM decoder + cross-entropy against LibTorch's linear +
// cross_entropy: loss, accuracy count and all three gradients, in float and
// double, with a vocabulary that spans several column blocks and odd tails.
#include "worker/model/mlm_loss.h"

#include <gtest/gtest.h>

#include "worker/model/flat_parameters.h"

namespace bert {
namespace {

// ||a - b|| / ||b||: gradients are sums of thousands of terms, so elementwise
// tolerances near zero would only measure summation order.
double RelativeError(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / b.norm().item<double>();
}

void CheckAgainstLibTorch(torch::Dtype dtype, double logit_scale, double rtol) {
  const int64_t rows = 37, hidden_size = 16, vocab = 5003;
  FlatParameters params({{"decoder.weight", {vocab, hidden_size}, ParamInit::kNormal, true},
                         {"decoder.bias", {vocab}, ParamInit::kNormal, false}},
                        dtype);
  params.Initialize(3, logit_scale);
  const torch::Tensor& weight = params.param(0);
  const torch::Tensor& bias = params.param(1);
  torch::manual_seed(5);
  torch::Tensor hidden = torch::randn({rows, hidden_size}, torch::TensorOptions().dtype(dtype)).requires_grad_(true);
  torch::Tensor labels = torch::randint(0, vocab, {rows}, torch::kLong);
  labels[0] = vocab - 1;  // the last column block's tail
  labels[1] = 0;

  MlmLossOutput fused = TiedDecoderCrossEntropy(hidden, weight, bias, labels);
  (fused.loss * 3.0).backward();  // a non-unit upstream gradient

  torch::Tensor ref_hidden = hidden.detach().clone().requires_grad_(true);
  torch::Tensor ref_weight = weight.detach().clone().requires_grad_(true);
  torch::Tensor ref_bias = bias.detach().clone().requires_grad_(true);
  torch::Tensor logits = torch::nn::functional::linear(ref_hidden, ref_weight, ref_bias);
  torch::Tensor ref_loss = torch::nn::functional::cross_entropy(logits, labels);
  (ref_loss * 3.0).backward();

  EXPECT_NEAR(fused.loss.item<double>(), ref_loss.item<double>(), rtol * ref_loss.item<double>());
  EXPECT_EQ(fused.correct, logits.argmax(1).eq(labels).sum().item<int64_t>());
  EXPECT_LT(RelativeError(hidden.grad(), ref_hidden.grad()), rtol) << "hidden";
  EXPECT_LT(RelativeError(weight.grad(), ref_weight.grad()), rtol) << "weight";
  EXPECT_LT(RelativeError(bias.grad(), ref_bias.grad()), rtol) << "bias";
  // Gradients went to the flat buffer, nowhere else.
  EXPECT_EQ(weight.grad().data_ptr(), params.grads().data_ptr());
}

TEST(MlmLossTest, FloatMatchesLibTorch) { CheckAgainstLibTorch(torch::kFloat32, 0.5, 2e-5); }
TEST(MlmLossTest, FloatMatchesLibTorchOnWideLogits) { CheckAgainstLibTorch(torch::kFloat32, 20.0, 2e-5); }
TEST(MlmLossTest, DoubleMatchesLibTorch) { CheckAgainstLibTorch(torch::kFloat64, 0.5, 1e-12); }

TEST(MlmLossTest, CountsCorrectRowsAndHandlesNoRows) {
  FlatParameters params({{"w.weight", {4, 2}, ParamInit::kZeros, true}, {"w.bias", {4}, ParamInit::kZeros, false}});
  {
    torch::NoGradGuard no_grad;
    params.param(0).copy_(torch::tensor({1.f, 0.f, 0.f, 1.f, -1.f, 0.f, 0.f, -1.f}).view({4, 2}));
  }
  torch::Tensor hidden = torch::tensor({5.f, 0.f, 0.f, 5.f, 0.f, -5.f}).view({3, 2});
  MlmLossOutput out = TiedDecoderCrossEntropy(hidden, params.param(0), params.param(1), torch::tensor({0, 1, 2}));
  EXPECT_EQ(out.correct, 2);  // rows 0 and 1 pick their label; row 2's maximum is column 3
  MlmLossOutput empty = TiedDecoderCrossEntropy(torch::zeros({0, 2}), params.param(0), params.param(1),
                                                torch::zeros({0}, torch::kLong));
  EXPECT_EQ(empty.loss.item<double>(), 0.0);
  EXPECT_EQ(empty.correct, 0);
}

}  // namespace
}  // namespace bert
