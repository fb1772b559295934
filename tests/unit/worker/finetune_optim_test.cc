// Layer-wise lr decay, freezing (FlatOptimizer's ParamRange::lr_scale) and
// FGM (worker/finetune/finetune_optim.h) on a micro classifier.
#include "worker/finetune/finetune_optim.h"

#include <gtest/gtest.h>

#include <cmath>

#include "unit/worker/model_test_util.h"
#include "worker/model/bert_heads.h"
#include "worker/finetune/finetune_loss.h"

namespace bert {
namespace {

LayerwiseLrOptions Decay(double decay) {
  LayerwiseLrOptions options;
  options.num_layers = 2;
  options.layer_lr_decay = decay;
  return options;
}

TEST(LayerwiseLrTest, ScalesFollowDepth) {
  // L = 2, d = 0.5: embeddings d^3, layer 0 d^2, layer 1 d^1, pooler and classifier 1.
  const LayerwiseLrOptions options = Decay(0.5);
  EXPECT_DOUBLE_EQ(LayerwiseLrScale("bert.embeddings.word_embeddings.weight", options), 0.125);
  EXPECT_DOUBLE_EQ(LayerwiseLrScale("bert.embeddings.LayerNorm.bias", options), 0.125);
  EXPECT_DOUBLE_EQ(LayerwiseLrScale("bert.encoder.layer.0.attention.self.query.weight", options), 0.25);
  EXPECT_DOUBLE_EQ(LayerwiseLrScale("bert.encoder.layer.1.output.dense.bias", options), 0.5);
  EXPECT_DOUBLE_EQ(LayerwiseLrScale("bert.pooler.dense.weight", options), 1.0);
  EXPECT_DOUBLE_EQ(LayerwiseLrScale("classifier.weight", options), 1.0);
  LayerwiseLrOptions frozen = Decay(1.0);
  frozen.freeze_embeddings = true;
  frozen.freeze_layers = 1;
  EXPECT_EQ(LayerwiseLrScale("bert.embeddings.position_embeddings.weight", frozen), 0.0);
  EXPECT_EQ(LayerwiseLrScale("bert.encoder.layer.0.output.dense.weight", frozen), 0.0);
  EXPECT_EQ(LayerwiseLrScale("bert.encoder.layer.1.output.dense.weight", frozen), 1.0);
}

// One or more AdamW (or LAMB) steps with gradient 1 everywhere; returns the values after.
torch::Tensor StepWithUnitGradients(const FlatParameters& params, std::vector<ParamRange> ranges, OptimizerKind kind,
                                    bool fused, int steps, double weight_decay) {
  OptimizerOptions options;
  options.kind = kind;
  options.fused = fused;
  options.weight_decay = weight_decay;
  FlatOptimizer optimizer(options, std::move(ranges), static_cast<int64_t>(params.size()), 0, params.numel(),
                          params.values().options());
  torch::Tensor values = params.values().clone();
  torch::Tensor grads = torch::ones_like(values);
  for (int i = 0; i < steps; ++i) optimizer.Step(values, grads, 1e-2);
  return values;
}

TEST(LayerwiseLrTest, FrozenRangesDoNotChangeAtAllIncludingWeightDecay) {
  BertForSequenceClassification model(testing::MicroConfig());
  const FlatParameters& params = model.parameters();
  LayerwiseLrOptions options = Decay(0.8);
  options.freeze_embeddings = true;
  options.freeze_layers = 1;
  for (OptimizerKind kind : {OptimizerKind::kAdamW, OptimizerKind::kLamb}) {
    for (bool fused : {true, false}) {
      const torch::Tensor after = StepWithUnitGradients(params, LayerwiseRanges(params, options), kind, fused, 3, 0.1);
      for (const ParameterSlot& slot : params.slots()) {
        const bool frozen = LayerwiseLrScale(slot.spec.name, options) == 0.0;
        const bool same =
            torch::equal(after.narrow(0, slot.offset, slot.numel), params.values().narrow(0, slot.offset, slot.numel));
        EXPECT_EQ(same, frozen) << slot.spec.name << " kind " << OptimizerKindName(kind) << " fused " << fused;
      }
    }
  }
}

TEST(LayerwiseLrTest, UpdateSizesScaleWithTheLayer) {
  // AdamW's first step with g = 1 and no decay moves every element by lr
  // (m^/(sqrt(v^)+eps) = 1/(1+eps)), so the step is lr * lr_scale.
  BertForSequenceClassification model(testing::MicroConfig());
  const FlatParameters& params = model.parameters();
  const LayerwiseLrOptions options = Decay(0.5);
  const torch::Tensor after =
      StepWithUnitGradients(params, LayerwiseRanges(params, options), OptimizerKind::kAdamW, true, 1, 0.0);
  for (const ParameterSlot& slot : params.slots()) {
    const double moved = (params.values().narrow(0, slot.offset, slot.numel) - after.narrow(0, slot.offset, slot.numel))
                             .abs()
                             .max()
                             .item<double>();
    EXPECT_NEAR(moved, 1e-2 * LayerwiseLrScale(slot.spec.name, options), 1e-6) << slot.spec.name;
  }
}

TEST(LayerwiseLrTest, ScaleOneIsBitIdenticalToTheDefaultRanges) {
  BertForSequenceClassification model(testing::MicroConfig());
  const FlatParameters& params = model.parameters();
  for (OptimizerKind kind : {OptimizerKind::kAdamW, OptimizerKind::kLamb}) {
    const torch::Tensor plain = StepWithUnitGradients(params, ShardRanges(params), kind, true, 2, 0.01);
    const torch::Tensor layerwise =
        StepWithUnitGradients(params, LayerwiseRanges(params, Decay(1.0)), kind, true, 2, 0.01);
    EXPECT_TRUE(torch::equal(plain, layerwise)) << OptimizerKindName(kind);
  }
}

// The micro classifier's loss on a fixed batch (double, no dropout).
torch::Tensor BatchLoss(BertForSequenceClassification* model) {
  const torch::Tensor ids = torch::tensor({2, 7, 9, 3, 0, 2, 11, 5, 13, 3}, torch::kLong).view({2, 5});
  const torch::Tensor types = torch::zeros({2, 5}, torch::kLong);
  const torch::Tensor lengths = torch::tensor({4, 5}, torch::kLong);
  const torch::Tensor logits = model->Forward(ids, types, lengths, true);
  return CrossEntropyLoss(logits, torch::tensor({0, 1}, torch::kLong), 0.0, {}, 2.0);
}

TEST(FgmTest, PerturbsAlongTheGradientAndRestoresExactly) {
  ModelOptions options;
  options.dtype = torch::kFloat64;
  BertForSequenceClassification model(testing::MicroConfig(), options);
  FlatParameters& params = model.parameters();
  const std::string name = "bert.embeddings.word_embeddings.weight";
  const torch::Tensor original = params.param(name).detach().clone();
  BatchLoss(&model).backward();
  const torch::Tensor clean_grads = params.grads().clone();
  const torch::Tensor g = params.grad(static_cast<size_t>(params.IndexOf(name))).clone();

  Fgm fgm(&params, 0.5);
  ASSERT_TRUE(fgm.Attack());
  const torch::Tensor r = params.param(name).detach() - original;
  EXPECT_NEAR(r.norm().item<double>(), 0.5, 1e-12);                                // ||r|| = epsilon
  EXPECT_TRUE(torch::allclose(r, g * (0.5 / g.norm().item<double>()), 0, 1e-12));  // along g
  BatchLoss(&model).backward();  // the adversarial gradient adds into the same buffer
  EXPECT_FALSE(torch::allclose(params.grads(), 2 * clean_grads, 1e-6, 1e-9));
  fgm.Restore();
  EXPECT_TRUE(torch::equal(params.param(name).detach(), original));
}

TEST(FgmTest, ZeroGradientIsNoAttack) {
  BertForSequenceClassification model(testing::MicroConfig());
  const torch::Tensor before = model.parameters().values().clone();
  Fgm fgm(&model.parameters(), 1.0);
  EXPECT_FALSE(fgm.Attack());
  fgm.Restore();
  EXPECT_TRUE(torch::equal(model.parameters().values(), before));
}

}  // namespace
}  // namespace bert
