// Fine-tuning losses (worker/finetune/finetune_loss.h) against values computed by
// hand on a 2 x 3 batch whose softmax is exact in fractions:
//   logits row 0 = [ln 1, ln 2, ln 5] -> p = [1/8, 2/8, 5/8], label 2
//   logits row 1 = [ln 2, ln 1, ln 1] -> p = [1/2, 1/4, 1/4], label 0
// plus finite-difference gradient checks in double.
#include "worker/finetune/finetune_loss.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

namespace bert {
namespace {

torch::Tensor Logits() {
  return torch::tensor({0.0, std::log(2.0), std::log(5.0), std::log(2.0), 0.0, 0.0}, torch::kDouble).view({2, 3});
}
torch::Tensor Labels() { return torch::tensor({2, 0}, torch::kLong); }

double Value(const torch::Tensor& scalar) { return scalar.item<double>(); }

TEST(FinetuneLossTest, CrossEntropyIsTheMeanNegativeLogLikelihood) {
  // -ln(5/8) - ln(1/2) = ln(16/5), mean over 2 examples.
  EXPECT_NEAR(Value(CrossEntropyLoss(Logits(), Labels(), 0.0, {}, 2.0)), std::log(16.0 / 5.0) / 2, 1e-12);
}

TEST(FinetuneLossTest, LabelSmoothingFollowsTorchSemantics) {
  // (1 - eps) * NLL + eps / C * sum_c -ln p_c per row, eps = 0.1, C = 3:
  // row 0: sum_c -ln p_c = ln 8 + ln 4 + ln(8/5) = ln(256/5); row 1: ln 2 + ln 4 + ln 4 = ln 32.
  const double expected = (0.9 * std::log(16.0 / 5.0) + 0.1 / 3 * (std::log(256.0 / 5.0) + std::log(32.0))) / 2;
  EXPECT_NEAR(Value(CrossEntropyLoss(Logits(), Labels(), 0.1, {}, 2.0)), expected, 1e-12);
  namespace F = torch::nn::functional;
  const double torch_value =
      Value(F::cross_entropy(Logits(), Labels(), F::CrossEntropyFuncOptions().label_smoothing(0.1)));
  EXPECT_NEAR(torch_value, expected, 1e-12);
}

TEST(FinetuneLossTest, ClassWeightsDivideByTheTargetsWeightsAsTorchDoes) {
  // w = [1, 2, 3]: row 0 (label 2) 3 ln(8/5), row 1 (label 0) 1 ln 2; torch
  // divides by w_2 + w_0 = 4. Smoothing terms: row 0: 1 ln 8 + 2 ln 4 + 3 ln(8/5),
  // row 1: 1 ln 2 + 2 ln 4 + 3 ln 4.
  const std::vector<double> w = {1, 2, 3};
  ClassificationLossOptions options;
  options.class_weights = w;
  EXPECT_DOUBLE_EQ(LossNormalizer({2, 0}, options), 4.0);
  const double nll = 3 * std::log(8.0 / 5.0) + std::log(2.0);
  EXPECT_NEAR(Value(CrossEntropyLoss(Logits(), Labels(), 0.0, w, 4.0)), nll / 4, 1e-12);
  const double smooth = std::log(8.0) + 2 * std::log(4.0) + 3 * std::log(8.0 / 5.0) + std::log(2.0) +
                        2 * std::log(4.0) + 3 * std::log(4.0);
  const double expected = (0.8 * nll + 0.2 / 3 * smooth) / 4;
  EXPECT_NEAR(Value(CrossEntropyLoss(Logits(), Labels(), 0.2, w, 4.0)), expected, 1e-12);
  namespace F = torch::nn::functional;
  const double torch_value = Value(F::cross_entropy(
      Logits(), Labels(), F::CrossEntropyFuncOptions().label_smoothing(0.2).weight(torch::tensor(w, torch::kDouble))));
  EXPECT_NEAR(torch_value, expected, 1e-12);
}

TEST(FinetuneLossTest, FocalLossDownWeightsEasyExamples) {
  // gamma 2: row 0 p_t = 5/8: (3/8)^2 ln(8/5); row 1 p_t = 1/2: (1/2)^2 ln 2.
  const double plain = (9.0 / 64 * std::log(8.0 / 5.0) + 0.25 * std::log(2.0)) / 2;
  EXPECT_NEAR(Value(FocalLoss(Logits(), Labels(), 2.0, {}, 2.0)), plain, 1e-12);
  // alpha = class weights [1, 2, 3]: alpha_2 = 3 for row 0, alpha_0 = 1 for row 1.
  const double weighted = (3 * 9.0 / 64 * std::log(8.0 / 5.0) + 0.25 * std::log(2.0)) / 2;
  EXPECT_NEAR(Value(FocalLoss(Logits(), Labels(), 2.0, {1, 2, 3}, 2.0)), weighted, 1e-12);
  // gamma 0 is cross-entropy.
  EXPECT_NEAR(Value(FocalLoss(Logits(), Labels(), 0.0, {}, 2.0)), std::log(16.0 / 5.0) / 2, 1e-12);
  ClassificationLossOptions options;
  options.kind = ClassificationLossKind::kFocal;
  options.class_weights = {1, 2, 3};
  EXPECT_DOUBLE_EQ(LossNormalizer({2, 0}, options), 2.0);  // focal: the example count
}

TEST(FinetuneLossTest, RDropIsTheSymmetricKlBetweenTwoPasses) {
  // Second pass: row 0 [0, 0, 0] -> q = [1/3, 1/3, 1/3]; row 1 [0, ln 3, 0] -> q = [1/5, 3/5, 1/5].
  // KL(p||q) + KL(q||p) = sum_c (p_c - q_c)(ln p_c - ln q_c).
  const torch::Tensor logits2 = torch::tensor({0.0, 0.0, 0.0, 0.0, std::log(3.0), 0.0}, torch::kDouble).view({2, 3});
  const double row0 = (1.0 / 8 - 1.0 / 3) * std::log(3.0 / 8) + (1.0 / 4 - 1.0 / 3) * std::log(3.0 / 4) +
                      (5.0 / 8 - 1.0 / 3) * std::log(15.0 / 8);
  const double row1 = (1.0 / 2 - 1.0 / 5) * std::log(5.0 / 2) + (1.0 / 4 - 3.0 / 5) * std::log(5.0 / 12) +
                      (1.0 / 4 - 1.0 / 5) * std::log(5.0 / 4);
  // alpha 4: 4/2 * (row0 + row1), mean over 2.
  EXPECT_NEAR(Value(RDropLoss(Logits(), logits2, 4.0, 2.0)), 2 * (row0 + row1) / 2, 1e-12);
  EXPECT_NEAR(Value(RDropLoss(Logits(), Logits(), 4.0, 2.0)), 0.0, 1e-15);  // identical passes
}

TEST(FinetuneLossTest, ShardedSumsOverTheGlobalCountEqualTheWholeBatch) {
  // Data parallelism: each rank's rows with the global normaliser, summed.
  ClassificationLossOptions options;
  options.label_smoothing = 0.1;
  options.class_weights = {1, 2, 3};
  const double normalizer = LossNormalizer({2, 0}, options);
  const torch::Tensor whole = ClassificationLoss(Logits(), Labels(), options, normalizer);
  const torch::Tensor part0 =
      ClassificationLoss(Logits().narrow(0, 0, 1), Labels().narrow(0, 0, 1), options, normalizer);
  const torch::Tensor part1 =
      ClassificationLoss(Logits().narrow(0, 1, 1), Labels().narrow(0, 1, 1), options, normalizer);
  EXPECT_NEAR(Value(part0) + Value(part1), Value(whole), 1e-14);
}

// Central differences of f at x against autograd's gradient.
void ExpectGradientMatches(const std::function<torch::Tensor(const torch::Tensor&)>& f, torch::Tensor x) {
  x = x.detach().clone().set_requires_grad(true);
  f(x).backward();
  const torch::Tensor analytic = x.grad().clone();
  const double h = 1e-6;
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < x.numel(); ++i) {
    torch::Tensor plus = x.detach().clone(), minus = x.detach().clone();
    plus.view({-1})[i] += h;
    minus.view({-1})[i] -= h;
    const double numeric = (Value(f(plus)) - Value(f(minus))) / (2 * h);
    EXPECT_NEAR(analytic.view({-1})[i].item<double>(), numeric, 1e-8) << "element " << i;
  }
}

TEST(FinetuneLossTest, GradientsMatchFiniteDifferences) {
  const torch::Tensor x = torch::randn({4, 3}, torch::TensorOptions().dtype(torch::kDouble)) * 2;
  const torch::Tensor labels = torch::tensor({0, 2, 1, 2}, torch::kLong);
  ExpectGradientMatches([&](const torch::Tensor& l) { return CrossEntropyLoss(l, labels, 0.1, {1, 2, 0.5}, 3.0); }, x);
  ExpectGradientMatches([&](const torch::Tensor& l) { return FocalLoss(l, labels, 2.0, {1, 2, 0.5}, 4.0); }, x);
  ExpectGradientMatches([&](const torch::Tensor& l) { return FocalLoss(l, labels, 0.5, {}, 4.0); }, x);
  const torch::Tensor other = torch::randn({4, 3}, torch::TensorOptions().dtype(torch::kDouble));
  ExpectGradientMatches([&](const torch::Tensor& l) { return RDropLoss(l, other, 1.5, 4.0); }, x);
}

TEST(FinetuneLossTest, ParsesLossNames) {
  EXPECT_EQ(*ParseClassificationLossKind("focal"), ClassificationLossKind::kFocal);
  EXPECT_EQ(*ParseClassificationLossKind("cross_entropy"), ClassificationLossKind::kCrossEntropy);
  const Result<ClassificationLossKind> bad = ParseClassificationLossKind("hinge");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("loss.type"), std::string::npos);
}

}  // namespace
}  // namespace bert
