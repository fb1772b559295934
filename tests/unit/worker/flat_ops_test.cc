// The flat-buffer ops against the LibTorch ops they replace: values and the
// gradients of inputs and of the parameters (which must land in the flat
// gradient buffer), in float and double.
#include "worker/model/flat_ops.h"

#include <gtest/gtest.h>

#include "worker/model/flat_parameters.h"

namespace bert {
namespace {

double RelativeError(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / std::max(1e-30, b.norm().item<double>());
}

enum class Op { kLinear, kLinearGelu };

void CheckLinear(Op op, torch::Dtype dtype, double tolerance) {
  const int64_t rows = 70, in = 24, out = 1100;  // several backward column blocks and a tail
  FlatParameters params({{"dense.weight", {out, in}, ParamInit::kNormal, true},
                         {"dense.bias", {out}, ParamInit::kNormal, false}},
                        dtype);
  params.Initialize(9, 0.3);
  torch::manual_seed(2);
  torch::Tensor x = (torch::randn({rows, in}, torch::TensorOptions().dtype(dtype)) * 2).requires_grad_(true);
  torch::Tensor upstream = torch::randn({rows, out}, torch::TensorOptions().dtype(dtype));
  torch::Tensor y = op == Op::kLinear ? FlatLinear(x, params.param(0), params.param(1))
                                      : FlatLinearGelu(x, params.param(0), params.param(1));
  (y * upstream).sum().backward();

  torch::Tensor rx = x.detach().clone().requires_grad_(true);
  torch::Tensor rw = params.param(0).detach().clone().requires_grad_(true);
  torch::Tensor rb = params.param(1).detach().clone().requires_grad_(true);
  torch::Tensor ry = torch::nn::functional::linear(rx, rw, rb);
  if (op == Op::kLinearGelu) ry = torch::gelu(ry);  // exact erf form
  (ry * upstream).sum().backward();

  EXPECT_LT(RelativeError(y, ry), tolerance);
  EXPECT_LT(RelativeError(x.grad(), rx.grad()), tolerance);
  EXPECT_LT(RelativeError(params.grads().narrow(0, 0, out * in).view({out, in}), rw.grad()), tolerance);
  EXPECT_LT(RelativeError(params.grads().narrow(0, out * in, out), rb.grad()), tolerance);
}

TEST(FlatOpsTest, LinearMatchesLibTorch) {
  CheckLinear(Op::kLinear, torch::kFloat32, 1e-6);
  CheckLinear(Op::kLinear, torch::kFloat64, 1e-14);
}

TEST(FlatOpsTest, LinearGeluMatchesLibTorch) {
  CheckLinear(Op::kLinearGelu, torch::kFloat32, 2e-6);
  CheckLinear(Op::kLinearGelu, torch::kFloat64, 1e-14);
}

TEST(FlatOpsTest, LinearWithoutBias) {
  FlatParameters params({{"dense.weight", {3, 2}, ParamInit::kNormal, true}});
  params.Initialize(2, 1.0);
  torch::Tensor x = torch::randn({4, 2});
  torch::Tensor y = FlatLinear(x, params.param(0), torch::Tensor());
  EXPECT_TRUE(torch::allclose(y, torch::mm(x, params.param(0).detach().t())));
  y.sum().backward();
  EXPECT_TRUE(torch::allclose(params.grads().view({3, 2}), x.sum(0).unsqueeze(0).expand({3, 2})));
}

TEST(FlatOpsTest, EmbeddingAddsRepeatedRowsIntoTheFlatBuffer) {
  FlatParameters params({{"table.weight", {5, 3}, ParamInit::kNormal, true}});
  params.Initialize(1, 1.0);
  torch::Tensor ids = torch::tensor({4, 1, 4, 0}, torch::kLong);
  torch::Tensor rows = FlatEmbedding(ids, params.param(0));
  EXPECT_TRUE(torch::equal(rows, params.param(0).index_select(0, ids)));
  torch::Tensor upstream = torch::arange(12, torch::kFloat).view({4, 3});
  (rows * upstream).sum().backward();
  torch::Tensor expected = torch::zeros({5, 3});
  expected[4] = upstream[0] + upstream[2];
  expected[1] = upstream[1];
  expected[0] = upstream[3];
  EXPECT_TRUE(torch::equal(params.grads().view({5, 3}), expected));
}

TEST(FlatOpsTest, CrossEntropyMeanMatchesLibTorch) {
  torch::manual_seed(4);
  torch::Tensor logits = torch::randn({9, 7}).requires_grad_(true);
  torch::Tensor labels = torch::randint(0, 7, {9}, torch::kLong);
  torch::Tensor loss = CrossEntropyMean(logits, labels);
  (loss * 2).backward();
  torch::Tensor reference_logits = logits.detach().clone().requires_grad_(true);
  torch::Tensor reference = torch::nn::functional::cross_entropy(reference_logits, labels);
  (reference * 2).backward();
  EXPECT_NEAR(loss.item<double>(), reference.item<double>(), 1e-6);
  EXPECT_LT(RelativeError(logits.grad(), reference_logits.grad()), 1e-6);
}

}  // namespace
}  // namespace bert
