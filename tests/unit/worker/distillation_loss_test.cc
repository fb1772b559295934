// The distillation loss (worker/finetune/distillation.h) against values
// computed by hand: T^2 * KL(softmax(t / T) || softmax(s / T)) per row, over
// the normaliser; zero when the student equals the teacher; invariant to a
// shift of the teacher's logits (log-probabilities serve as logits); and its
// gradient, T (p_s - p_t) / normaliser per logit, checked against autograd
// and finite differences.
#include "worker/finetune/distillation.h"

#include <gtest/gtest.h>

#include <cmath>

namespace bert {
namespace {

// Row 0: student p = [1/8, 2/8, 5/8] at T = 1; row 1: [1/2, 1/4, 1/4].
torch::Tensor Student() {
  return torch::tensor({0.0, std::log(2.0), std::log(5.0), std::log(2.0), 0.0, 0.0}, torch::kDouble).view({2, 3});
}
// Row 0: teacher p = [1/4, 1/4, 1/2]; row 1: [1/3, 1/3, 1/3].
torch::Tensor Teacher() {
  return torch::tensor({0.0, 0.0, std::log(2.0), 1.0, 1.0, 1.0}, torch::kDouble).view({2, 3});
}

double Kl(const std::vector<double>& p, const std::vector<double>& q) {
  double sum = 0;
  for (size_t i = 0; i < p.size(); ++i) sum += p[i] * std::log(p[i] / q[i]);
  return sum;
}

TEST(DistillationLossTest, IsTheTemperatureScaledKlOfTheTeacherFromTheStudent) {
  const double expected =
      (Kl({0.25, 0.25, 0.5}, {0.125, 0.25, 0.625}) + Kl({1.0 / 3, 1.0 / 3, 1.0 / 3}, {0.5, 0.25, 0.25})) / 2;
  EXPECT_NEAR(DistillationLoss(Student(), Teacher(), 1.0, 2.0).item<double>(), expected, 1e-12);
  // At T = 2 both distributions soften (logits / 2) and the KL is scaled by T^2 = 4.
  const auto soft = [](std::vector<double> logits) {
    double sum = 0;
    for (double& z : logits) sum += (z = std::exp(z / 2));
    for (double& z : logits) z /= sum;
    return logits;
  };
  const double at_two = 4 *
                        (Kl(soft({0, 0, std::log(2.0)}), soft({0, std::log(2.0), std::log(5.0)})) +
                         Kl(soft({1, 1, 1}), soft({std::log(2.0), 0, 0}))) /
                        2;
  EXPECT_NEAR(DistillationLoss(Student(), Teacher(), 2.0, 2.0).item<double>(), at_two, 1e-12);
}

TEST(DistillationLossTest, IsZeroForTheTeacherItselfAndIgnoresAShiftOfItsLogits) {
  EXPECT_NEAR(DistillationLoss(Teacher(), Teacher(), 3.0, 2.0).item<double>(), 0.0, 1e-12);
  // Log-probabilities differ from logits by a per-row constant: the same loss.
  const torch::Tensor log_probs = torch::log_softmax(Teacher(), 1);
  EXPECT_NEAR(DistillationLoss(Student(), log_probs, 2.0, 2.0).item<double>(),
              DistillationLoss(Student(), Teacher() + 7.5, 2.0, 2.0).item<double>(), 1e-12);
}

TEST(DistillationLossTest, GradientIsTemperatureTimesTheProbabilityGap) {
  const double temperature = 2.0, normalizer = 4.0;
  torch::Tensor student = Student().clone().requires_grad_(true);
  DistillationLoss(student, Teacher(), temperature, normalizer).backward();
  const torch::Tensor p_s = torch::softmax(Student() / temperature, 1);
  const torch::Tensor p_t = torch::softmax(Teacher() / temperature, 1);
  const torch::Tensor expected = temperature * (p_s - p_t) / normalizer;
  EXPECT_LT((student.grad() - expected).abs().max().item<double>(), 1e-12);
  // And by central differences on one logit.
  const double h = 1e-6;
  torch::Tensor plus = Student().clone(), minus = Student().clone();
  plus[1][2] += h;
  minus[1][2] -= h;
  const double numeric = (DistillationLoss(plus, Teacher(), temperature, normalizer).item<double>() -
                          DistillationLoss(minus, Teacher(), temperature, normalizer).item<double>()) /
                         (2 * h);
  EXPECT_NEAR(student.grad()[1][2].item<double>(), numeric, 1e-8);
}

}  // namespace
}  // namespace bert
