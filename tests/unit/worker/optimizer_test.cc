// AdamW and LAMB single steps against hand-computed values, the fused CPU
// pass against the ATen-op path, ZeRO-1-style shards against the whole
// buffer, global norms, and learning-rate schedule values.
#include "worker/train/optimizer.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "worker/train/lr_schedule.h"

namespace bert {
namespace {

// Two tensors: a decayed weight [2] and a bias [1] (no decay), in double.
std::unique_ptr<FlatParameters> TwoParams(std::vector<double> values, std::vector<double> grads) {
  auto params = std::make_unique<FlatParameters>(
      std::vector<ParameterSpec>{{"w.weight", {2}, ParamInit::kZeros, true}, {"w.bias", {1}, ParamInit::kZeros, false}},
      torch::kFloat64);
  torch::NoGradGuard no_grad;
  params->values().copy_(torch::tensor(values, torch::kFloat64));
  params->grads().copy_(torch::tensor(grads, torch::kFloat64));
  return params;
}

OptimizerOptions Options(OptimizerKind kind, bool fused) {
  OptimizerOptions options;
  options.kind = kind;
  options.beta1 = 0.9;
  options.beta2 = 0.999;
  options.epsilon = 1e-6;
  options.weight_decay = 0.01;
  options.fused = fused;
  return options;
}

void ExpectValues(const FlatParameters& params, std::vector<double> expected) {
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(params.values()[static_cast<int64_t>(i)].item<double>(), expected[i], 1e-12) << "element " << i;
  }
}

TEST(OptimizerTest, AdamWStepsMatchHandComputedValues) {
  for (bool fused : {true, false}) {
    auto params = TwoParams({1.0, -2.0, 0.5}, {0.5, 0.25, -1.0});
    FlatOptimizer optimizer(Options(OptimizerKind::kAdamW, fused), *params);
    // Step 1: m = 0.1 g, v = 0.001 g^2, so after bias correction the step is
    // lr * g / (|g| + eps); decay multiplies the weight by 1 - lr * wd first:
    // 1 * 0.999 - 0.1 * 0.5 / 0.500001 = 0.8990001999996, and so on.
    optimizer.Step(params->values(), params->grads(), 0.1);
    ExpectValues(*params, {0.8990001999996, -2.0979996000016, 0.5999999000001});
    // Step 2, same gradient: m = 0.19 g, v = 0.001999 g^2, corrections 0.19
    // and 0.001999 give the same direction again.
    optimizer.Step(params->values(), params->grads(), 0.1);
    ExpectValues(*params, {0.7981013997992005, -2.1959012004031986, 0.6999998000002001});
    EXPECT_EQ(optimizer.step(), 2);
    EXPECT_NEAR(optimizer.exp_avg()[0].item<double>(), 0.19 * 0.5, 1e-15);
    EXPECT_NEAR(optimizer.exp_avg_sq()[2].item<double>(), 0.001999, 1e-15);
  }
}

TEST(OptimizerTest, LambStepMatchesHandComputedValues) {
  for (bool fused : {true, false}) {
    auto params = TwoParams({3.0, 4.0, 0.5}, {0.3, -0.4, -1.0});
    FlatOptimizer optimizer(Options(OptimizerKind::kLamb, fused), *params);
    optimizer.Step(params->values(), params->grads(), 0.1);
    // u = g / (|g| + eps) + wd p = (1.0299966666777778, -0.9599975000062501);
    // trust ratio ||p|| / ||u|| = 5 / 1.4080086410905237 = 3.5511145699556397;
    // p - lr * ratio * u. The bias takes no decay and no trust ratio (apex
    // FusedLAMB default): 0.5 + 0.1 / 1.000001.
    ExpectValues(*params, {2.6342363829954802, 4.3409061109393186, 0.5999999000001});
  }
}

TEST(OptimizerTest, LambTrustRatioForAllAndZeroNorms) {
  OptimizerOptions options = Options(OptimizerKind::kLamb, true);
  options.trust_ratio_for_all = true;
  auto params = TwoParams({0.0, 0.0, 2.0}, {1.0, 1.0, 0.5});
  FlatOptimizer optimizer(options, *params);
  optimizer.Step(params->values(), params->grads(), 0.01);
  // ||p|| = 0 for the weight: ratio 1, u = g/(g+eps) ~ 1. The bias: ||p|| = 2,
  // ||u|| = 0.5/0.500001, ratio = 2 / that.
  const double u = 1.0 / (1.0 + 1e-6);
  const double ub = 0.5 / 0.500001;
  ExpectValues(*params, {-0.01 * u, -0.01 * u, 2.0 - 0.01 * (2.0 / ub) * ub});
}

TEST(OptimizerTest, GradScaleEqualsScaledGradients) {
  for (OptimizerKind kind : {OptimizerKind::kAdamW, OptimizerKind::kLamb}) {
    auto a = TwoParams({1.0, -2.0, 0.5}, {0.5, 0.25, -1.0});
    auto b = TwoParams({1.0, -2.0, 0.5}, {0.25, 0.125, -0.5});
    FlatOptimizer oa(Options(kind, true), *a), ob(Options(kind, true), *b);
    oa.Step(a->values(), a->grads(), 0.1, 0.5);
    ob.Step(b->values(), b->grads(), 0.1);
    EXPECT_TRUE(torch::allclose(a->values(), b->values(), 1e-14, 1e-14));
  }
}

TEST(OptimizerTest, ZeroGradsInTheSamePass) {
  for (OptimizerKind kind : {OptimizerKind::kAdamW, OptimizerKind::kLamb}) {
    for (bool fused : {true, false}) {
      auto a = TwoParams({1.0, -2.0, 0.5}, {0.5, 0.25, -1.0});
      auto b = TwoParams({1.0, -2.0, 0.5}, {0.5, 0.25, -1.0});
      FlatOptimizer oa(Options(kind, fused), *a), ob(Options(kind, fused), *b);
      oa.Step(a->values(), a->grads(), 0.1, 1.0, /*zero_grads=*/true);
      ob.Step(b->values(), b->grads(), 0.1);
      EXPECT_TRUE(torch::equal(a->values(), b->values()));
      EXPECT_EQ(a->grads().abs().sum().item<double>(), 0.0);
      EXPECT_GT(b->grads().abs().sum().item<double>(), 0.0);
    }
  }
}

// The fused pass and the ATen-op path agree on a larger random buffer with
// ranges that straddle the 64K reduction blocks.
TEST(OptimizerTest, FusedPassMatchesAtenOps) {
  std::vector<ParameterSpec> specs = {{"a.weight", {70000}, ParamInit::kNormal, true},
                                      {"a.bias", {300}, ParamInit::kZeros, false},
                                      {"b.weight", {200, 700}, ParamInit::kNormal, true}};
  for (OptimizerKind kind : {OptimizerKind::kAdamW, OptimizerKind::kLamb}) {
    FlatParameters fused_params(specs), plain_params(specs);
    fused_params.Initialize(1, 0.02);
    plain_params.Initialize(1, 0.02);
    FlatOptimizer fused(Options(kind, true), fused_params), plain(Options(kind, false), plain_params);
    for (int step = 0; step < 3; ++step) {
      torch::Tensor grads = torch::randn({fused_params.numel()}) * 0.01;
      fused_params.grads().copy_(grads);
      plain_params.grads().copy_(grads);
      fused.Step(fused_params.values(), fused_params.grads(), 1e-3, 0.7);
      plain.Step(plain_params.values(), plain_params.grads(), 1e-3, 0.7);
    }
    EXPECT_TRUE(torch::allclose(fused_params.values(), plain_params.values(), 1e-5, 1e-7)) << OptimizerKindName(kind);
    EXPECT_TRUE(torch::allclose(fused.exp_avg_sq(), plain.exp_avg_sq(), 1e-5, 1e-12));
  }
}

// Two ranks each own half the buffer (the cut runs through a parameter);
// LAMB's per-tensor norms are summed across them by the NormReducer.
TEST(OptimizerTest, ShardedStepsEqualTheWholeBuffer) {
  std::vector<ParameterSpec> specs = {{"a.weight", {5000}, ParamInit::kNormal, true},
                                      {"a.bias", {30}, ParamInit::kZeros, false},
                                      {"b.weight", {40, 90}, ParamInit::kNormal, true}};
  for (OptimizerKind kind : {OptimizerKind::kAdamW, OptimizerKind::kLamb}) {
    FlatParameters whole(specs, torch::kFloat64), sharded(specs, torch::kFloat64);
    whole.Initialize(4, 0.02);
    sharded.Initialize(4, 0.02);
    torch::Tensor grads = torch::randn({whole.numel()}, torch::kFloat64);
    whole.grads().copy_(grads);
    sharded.grads().copy_(grads);
    FlatOptimizer reference(Options(kind, true), whole);
    reference.Step(whole.values(), whole.grads(), 1e-2);

    const int64_t cut = 2500;
    std::mutex mutex;
    std::condition_variable arrived;
    std::vector<torch::Tensor> partials;
    auto reducer = [&](torch::Tensor& squares) {  // an all-reduce of two ranks
      std::unique_lock<std::mutex> lock(mutex);
      partials.push_back(squares.clone());
      arrived.notify_all();
      arrived.wait(lock, [&] { return partials.size() == 2; });
      squares.copy_(partials[0] + partials[1]);
    };
    auto run_rank = [&](int64_t begin, int64_t end) {
      FlatOptimizer shard(Options(kind, true), ShardRanges(sharded, begin, end), static_cast<int64_t>(sharded.size()),
                          begin, end, sharded.values().options());
      shard.set_norm_reducer(reducer);
      shard.Step(sharded.values(), sharded.grads(), 1e-2);
    };
    std::thread rank0(run_rank, 0, cut), rank1(run_rank, cut, sharded.numel());
    rank0.join();
    rank1.join();
    EXPECT_TRUE(torch::allclose(whole.values(), sharded.values(), 1e-12, 1e-14)) << OptimizerKindName(kind);
  }
}

TEST(OptimizerTest, GlobalNormAndValidation) {
  torch::Tensor x = torch::full({200000}, 0.5);
  EXPECT_NEAR(GlobalNorm(x), std::sqrt(200000 * 0.25), 1e-9);
  EXPECT_DOUBLE_EQ(SumOfSquares(x, 10, 4), 1.0);
  EXPECT_FALSE(std::isfinite(GlobalNorm(torch::tensor({1.0f, std::nanf("")}))));
  OptimizerOptions bad;
  bad.beta2 = 1.0;
  EXPECT_NE(bad.Validate().message().find("optimizer.beta2"), std::string::npos);
  EXPECT_FALSE(ParseOptimizerKind("sgd").ok());
  EXPECT_EQ(ParseOptimizerKind("lamb").value(), OptimizerKind::kLamb);
}

TEST(LrScheduleTest, ValuesAtChosenSteps) {
  LrSchedule schedule;
  schedule.peak_lr = 1e-3;
  schedule.warmup_steps = 10;
  schedule.total_steps = 110;
  ASSERT_TRUE(schedule.Validate().ok());
  EXPECT_DOUBLE_EQ(schedule.At(1), 1e-4);  // warmup: t / 10
  EXPECT_DOUBLE_EQ(schedule.At(5), 5e-4);
  EXPECT_DOUBLE_EQ(schedule.At(10), 1e-3);
  EXPECT_DOUBLE_EQ(schedule.At(60), 5e-4);  // linear: half way through decay
  EXPECT_DOUBLE_EQ(schedule.At(110), 0.0);
  EXPECT_DOUBLE_EQ(schedule.At(500), 0.0);
  schedule.end_lr = 1e-5;
  EXPECT_DOUBLE_EQ(schedule.At(60), 1e-5 + (1e-3 - 1e-5) * 0.5);
  EXPECT_DOUBLE_EQ(schedule.At(110), 1e-5);
  schedule.end_lr = 0;
  schedule.decay = LrDecay::kPolynomial;
  schedule.power = 2.0;
  EXPECT_DOUBLE_EQ(schedule.At(60), 2.5e-4);  // (1 - 0.5)^2
  schedule.power = 0.5;
  EXPECT_DOUBLE_EQ(schedule.At(85), 1e-3 * std::sqrt(0.25));
  schedule.decay = LrDecay::kCosine;
  EXPECT_NEAR(schedule.At(35), 1e-3 * 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-15);  // 8.5355e-4
  EXPECT_NEAR(schedule.At(60), 5e-4, 1e-15);
  EXPECT_NEAR(schedule.At(110), 0.0, 1e-15);
  schedule.decay = LrDecay::kConstant;
  EXPECT_DOUBLE_EQ(schedule.At(100), 1e-3);
  schedule.warmup_steps = 0;
  EXPECT_DOUBLE_EQ(schedule.At(1), 1e-3);
}

// A time budget: warmup in steps, then the decay follows the fraction of
// the budget spent, whatever the step; it reaches end_lr when it is spent.
TEST(LrScheduleTest, ATimeBudgetDecaysOverTheBudgetsFraction) {
  LrSchedule schedule;
  schedule.peak_lr = 1e-3;
  schedule.warmup_steps = 10;
  schedule.total_steps = 1000000;  // the cap: no part of the budget's decay
  ASSERT_TRUE(schedule.Validate().ok());
  EXPECT_DOUBLE_EQ(schedule.AtBudget(5, 0.9), 5e-4) << "warmup stays in steps";
  EXPECT_DOUBLE_EQ(schedule.AtBudget(11, 0.0), 1e-3);
  EXPECT_DOUBLE_EQ(schedule.AtBudget(11, 0.5), 5e-4);
  EXPECT_DOUBLE_EQ(schedule.AtBudget(900000, 0.5), 5e-4) << "the step does not matter after warmup";
  EXPECT_DOUBLE_EQ(schedule.AtBudget(20, 1.0), 0.0);
  EXPECT_DOUBLE_EQ(schedule.AtBudget(20, 1.7), 0.0) << "clamped: an overrun stays at end_lr";
  EXPECT_DOUBLE_EQ(schedule.AtBudget(20, std::nan("")), 0.0);
  schedule.decay = LrDecay::kCosine;
  schedule.end_lr = 1e-5;
  EXPECT_NEAR(schedule.AtBudget(20, 0.25), 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-15);
  EXPECT_NEAR(schedule.AtBudget(20, 1.0), 1e-5, 1e-15);
}

TEST(LrScheduleTest, ValidationNamesTheField) {
  LrSchedule schedule;
  schedule.warmup_steps = 200;
  schedule.total_steps = 100;
  EXPECT_NE(schedule.Validate().message().find("schedule.warmup_steps"), std::string::npos);
  schedule.warmup_steps = 10;
  schedule.peak_lr = 0;
  EXPECT_NE(schedule.Validate().message().find("schedule.peak_lr"), std::string::npos);
  EXPECT_FALSE(ParseLrDecay("step").ok());
  EXPECT_EQ(ParseLrDecay("cosine").value(), LrDecay::kCosine);
}

}  // namespace
}  // namespace bert
