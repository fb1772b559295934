// Training steps: overfitting one batch, bit-identical determinism from a
// seed, gradient accumulation, clipping and skipped non-finite steps.
#include "worker/train/train_step.h"

#include <gtest/gtest.h>

#include <set>

#include "unit/worker/model_test_util.h"

namespace bert {
namespace {

TrainerOptions ConstantRate(OptimizerKind kind, double lr) {
  TrainerOptions options;
  options.optimizer.kind = kind;
  options.optimizer.weight_decay = 0.0;
  options.schedule.peak_lr = lr;
  options.schedule.warmup_steps = 0;
  options.schedule.total_steps = 1000;
  options.schedule.decay = LrDecay::kConstant;
  return options;
}

TEST(TrainStepTest, OverfitsOneBatchToNearZeroLoss) {
  for (OptimizerKind kind : {OptimizerKind::kAdamW, OptimizerKind::kLamb}) {
    BertForPreTraining model(testing::TinyConfig());
    Trainer trainer(&model, ConstantRate(kind, kind == OptimizerKind::kAdamW ? 3e-3 : 1e-2));
    PretrainBatch batch = testing::RandomBatch(21, 100, {24, 24, 18, 24}, 4);
    StepMetrics first = trainer.TrainStep({batch});
    StepMetrics last;
    for (int i = 0; i < 150; ++i) last = trainer.TrainStep({batch});
    EXPECT_GT(first.loss, 4.0) << OptimizerKindName(kind);  // ~ln(100) + ln(2) at init
    EXPECT_LT(last.loss, 0.05) << OptimizerKindName(kind);
    EXPECT_DOUBLE_EQ(last.mlm_accuracy, 1.0);
    EXPECT_DOUBLE_EQ(last.nsp_accuracy, 1.0);
    EXPECT_EQ(last.step, 151);
    EXPECT_EQ(last.num_masked, 16);
    EXPECT_EQ(last.num_sequences, 4);
    EXPECT_EQ(last.num_tokens, 24 + 24 + 18 + 24);
  }
}

// Same seed, same batches: bit-identical weights (dropout on, LAMB, clipping).
TEST(TrainStepTest, SameSeedGivesBitIdenticalWeights) {
  auto train = [](uint64_t seed) {
    ModelOptions model_options;
    model_options.seed = seed;
    auto model = std::make_unique<BertForPreTraining>(testing::TinyConfig(/*dropout=*/0.1), model_options);
    TrainerOptions options = ConstantRate(OptimizerKind::kLamb, 1e-3);
    options.optimizer.weight_decay = 0.01;
    options.max_grad_norm = 0.5;
    Trainer trainer(model.get(), options);
    for (int step = 0; step < 3; ++step) {
      trainer.TrainStep({testing::RandomBatch(100 + step, 100, {30, 22, 30}, 4),
                         testing::RandomBatch(200 + step, 100, {16, 30, 30}, 4)});
    }
    return model;
  };
  auto a = train(7), b = train(7), c = train(8);
  EXPECT_TRUE(torch::equal(a->parameters().values(), b->parameters().values()));
  EXPECT_EQ(a->dropout_rng().counter(), b->dropout_rng().counter());
  EXPECT_FALSE(torch::equal(a->parameters().values(), c->parameters().values()));
}

// K micro-batches accumulate the mean of their gradients, and the update
// equals a single step on that mean.
TEST(TrainStepTest, AccumulationAveragesMicroBatchGradients) {
  BertConfig config = testing::TinyConfig();
  PretrainBatch first = testing::RandomBatch(1, 100, {20, 20}, 3);
  PretrainBatch second = testing::RandomBatch(2, 100, {20, 12}, 3);
  auto gradient_of = [&](const PretrainBatch& batch) {
    BertForPreTraining model(config);
    Trainer trainer(&model, ConstantRate(OptimizerKind::kAdamW, 1e-3));
    trainer.ForwardBackward(batch, 1.0);
    return model.parameters().grads().clone();
  };
  const torch::Tensor mean = (gradient_of(first) + gradient_of(second)) / 2;

  BertForPreTraining model(config);
  Trainer trainer(&model, ConstantRate(OptimizerKind::kAdamW, 1e-3));
  trainer.ForwardBackward(first, 0.5);
  trainer.ForwardBackward(second, 0.5);
  EXPECT_TRUE(torch::allclose(model.parameters().grads(), mean, 1e-4, 1e-7));
  const torch::Tensor before = model.parameters().values().clone();
  StepMetrics metrics = trainer.ApplyGradients();
  EXPECT_EQ(metrics.num_sequences, 4);
  EXPECT_NEAR(metrics.grad_norm, mean.norm().item<double>(), 1e-4 * metrics.grad_norm);
  EXPECT_EQ(model.parameters().grads().abs().sum().item<double>(), 0.0);  // zeroed for the next step

  // The same update from the mean gradient, by hand through the optimizer.
  FlatParameters reference(BertForPreTrainingSpecs(config));
  reference.values().copy_(before);
  reference.grads().copy_(mean);
  FlatOptimizer optimizer(ConstantRate(OptimizerKind::kAdamW, 1e-3).optimizer, reference);
  const double clip = metrics.grad_norm > 1.0 ? 1.0 / (metrics.grad_norm + 1e-6) : 1.0;
  optimizer.Step(reference.values(), reference.grads(), 1e-3, clip);
  EXPECT_TRUE(torch::allclose(model.parameters().values(), reference.values(), 1e-4, 1e-6));
}

TEST(TrainStepTest, ClipsToMaxNormAndSkipsNonFiniteGradients) {
  BertForPreTraining model(testing::TinyConfig());
  TrainerOptions options = ConstantRate(OptimizerKind::kAdamW, 1e-3);
  options.max_grad_norm = 1e-3;  // always clips
  Trainer trainer(&model, options);
  PretrainBatch batch = testing::RandomBatch(3, 100, {16, 16}, 2);
  StepMetrics metrics = trainer.TrainStep({batch});
  EXPECT_GT(metrics.grad_norm, 1e-3);
  EXPECT_FALSE(metrics.skipped);
  // Clipping is folded into the optimizer: its first moment is (1 - beta1) g * clip.
  const double m_norm = trainer.optimizer().exp_avg().norm().item<double>();
  EXPECT_NEAR(m_norm, 0.1 * 1e-3, 1e-7);

  trainer.ForwardBackward(batch, 1.0);
  model.parameters().grads()[0] = std::numeric_limits<float>::infinity();
  const torch::Tensor before = model.parameters().values().clone();
  metrics = trainer.ApplyGradients();
  EXPECT_TRUE(metrics.skipped);
  EXPECT_EQ(metrics.step, 1);
  EXPECT_TRUE(torch::equal(before, model.parameters().values()));
}

TEST(TrainStepTest, RejectsBadOptions) {
  TrainerOptions options;
  options.schedule.total_steps = 0;
  EXPECT_NE(options.Validate().message().find("schedule.total_steps"), std::string::npos);
  options = TrainerOptions();
  options.bf16_autocast = true;
  EXPECT_EQ(options.Validate().ok(), BuiltWithCuda());
  if (!BuiltWithCuda()) {
    EXPECT_NE(options.Validate().message().find("bf16_autocast"), std::string::npos);
  }
}

// Activation checkpointing (train.activation_checkpointing) recomputes each
// layer in the backward pass with the same dropout masks: with dropout on and
// a padded batch, three steps give the same losses, gradient norms and
// parameters, bit for bit, and leave the dropout stream where it was.
TEST(TrainStepTest, ActivationCheckpointingGivesTheSameStepsBitForBit) {
  std::vector<std::vector<double>> losses(2), norms(2);
  std::vector<torch::Tensor> params(2);
  std::vector<uint64_t> counters(2);
  for (int checkpointed = 0; checkpointed < 2; ++checkpointed) {
    BertForPreTraining model(testing::TinyConfig(/*dropout=*/0.1));
    model.set_activation_checkpointing(checkpointed == 1);
    Trainer trainer(&model, ConstantRate(OptimizerKind::kAdamW, 1e-3));
    for (int step = 0; step < 3; ++step) {
      // Two micro-batches, one padded: accumulation goes through the recomputation too.
      StepMetrics m = trainer.TrainStep({testing::RandomBatch(30 + step, 100, {24, 17, 24}, 5),
                                         testing::RandomBatch(40 + step, 100, {12, 24}, 4)});
      losses[checkpointed].push_back(m.loss);
      norms[checkpointed].push_back(m.grad_norm);
    }
    params[checkpointed] = model.parameters().values().clone();
    counters[checkpointed] = model.dropout_rng().counter();
  }
  EXPECT_EQ(losses[0], losses[1]);
  EXPECT_EQ(norms[0], norms[1]);
  EXPECT_TRUE(torch::equal(params[0], params[1])) << "max |diff| " << (params[0] - params[1]).abs().max().item<double>();
  EXPECT_EQ(counters[0], counters[1]);
  EXPECT_GT(counters[0], 0u) << "dropout was drawn";
}

// Checkpointing keeps less for the backward: each layer is one node of the
// autograd graph (holding only its input) instead of the layer's own
// subgraph with every activation it saved.
TEST(TrainStepTest, ActivationCheckpointingLeavesOneGraphNodePerLayer) {
  auto graph_nodes = [](bool checkpointed) {
    BertForPreTraining model(testing::TinyConfig(0.1));
    model.set_activation_checkpointing(checkpointed);
    const PretrainBatch batch = testing::RandomBatch(5, 100, {64, 64, 64, 64}, 8);
    PreTrainingLoss loss = model.Loss(model.Forward(batch, true), batch);
    std::vector<torch::autograd::Node*> stack = {loss.loss.grad_fn().get()};
    std::set<torch::autograd::Node*> seen;
    while (!stack.empty()) {
      torch::autograd::Node* node = stack.back();
      stack.pop_back();
      if (node == nullptr || !seen.insert(node).second) continue;
      for (const torch::autograd::Edge& edge : node->next_edges()) stack.push_back(edge.function.get());
    }
    loss.loss.backward();
    return static_cast<int64_t>(seen.size());
  };
  const int64_t plain = graph_nodes(false), checkpointed = graph_nodes(true);
  const int64_t layers = testing::TinyConfig().num_hidden_layers;
  // A plain layer is more than 10 nodes (linears, attention, dropouts, norms, adds).
  EXPECT_LE(checkpointed, plain - layers * 9) << checkpointed << " nodes checkpointed vs " << plain;
}

// data.objective mlm: the loss is the MLM loss alone, and neither the NSP
// head nor the pooler (which only NSP reads) gets a gradient.
TEST(TrainStepTest, WithoutTheSentenceLossTheNspHeadGetsNoGradient) {
  BertForPreTraining with_nsp(testing::TinyConfig()), mlm_only(testing::TinyConfig());  // the same weights
  TrainerOptions options = ConstantRate(OptimizerKind::kAdamW, 1e-3);
  Trainer with_trainer(&with_nsp, options);
  options.nsp_loss = false;
  Trainer mlm_trainer(&mlm_only, options);
  const PretrainBatch batch = testing::RandomBatch(9, 100, {24, 20, 24}, 4);
  with_trainer.ForwardBackward(batch, 1.0);
  mlm_trainer.ForwardBackward(batch, 1.0);
  for (const char* name : {"cls.seq_relationship.weight", "cls.seq_relationship.bias", "bert.pooler.dense.weight"}) {
    const int64_t index = mlm_only.parameters().IndexOf(name);
    ASSERT_GE(index, 0) << name;
    EXPECT_EQ(mlm_only.parameters().grad(index).abs().max().item<float>(), 0.0f) << name;
    EXPECT_GT(with_nsp.parameters().grad(index).abs().max().item<float>(), 0.0f) << name;
  }
  const StepMetrics with = with_trainer.ApplyGradients(), without = mlm_trainer.ApplyGradients();
  EXPECT_DOUBLE_EQ(without.loss, without.mlm_loss);
  EXPECT_EQ(without.nsp_loss, 0.0);
  EXPECT_EQ(without.nsp_accuracy, 0.0);
  EXPECT_DOUBLE_EQ(with.mlm_loss, without.mlm_loss);  // the same forward pass
  EXPECT_GT(with.loss, with.mlm_loss);
}

// train.dropout false: the run's model has no dropout (a training pass is the
// eval pass), while the model config file, which checkpoints and exports
// record, keeps its rates.
TEST(TrainStepTest, MakePretrainingWithoutDropoutTrainsWithoutIt) {
  RunConfig config;
  config.model = std::string(BERT_SOURCE_DIR) + "/configs/models/bert-tiny.json";
  config.data.db = {"unused"};
  for (bool dropout : {true, false}) {
    config.train.dropout = dropout;
    Result<Pretraining> made = MakePretraining(config);
    ASSERT_TRUE(made.ok()) << made.status().message();
    BertForPreTraining& model = *made->model;
    EXPECT_EQ(model.config().hidden_dropout_prob, dropout ? 0.1 : 0.0);
    EXPECT_EQ(model.config().attention_probs_dropout_prob, dropout ? 0.1 : 0.0);
    const PretrainBatch batch = testing::RandomBatch(3, model.config().vocab_size, {30, 30}, 4);
    torch::NoGradGuard no_grad;
    const torch::Tensor trained = model.Forward(batch, /*training=*/true).mlm_hidden;
    const torch::Tensor evaluated = model.Forward(batch, /*training=*/false).mlm_hidden;
    EXPECT_EQ(torch::equal(trained, evaluated), !dropout);
  }
}

}  // namespace
}  // namespace bert
