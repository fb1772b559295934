// The BERT model: finite-difference gradient check in double precision,
// masked-only MLM logits against the full computation, padding invariance
// (the attention mask), dropout, classification head and batch collation.
#include "worker/model/bert_heads.h"

#include <gtest/gtest.h>

#include "unit/worker/model_test_util.h"
#include "worker/model/flat_ops.h"

namespace bert {
namespace {

ModelOptions DoubleOptions(uint64_t seed) {
  ModelOptions options;
  options.seed = seed;
  options.dtype = torch::kFloat64;
  return options;
}

// Central differences on every parameter of a 2-layer model in double: the
// custom ops (fused QKV linear, flat embedding with the tied decoder,
// cross-entropy) and the attention mask must give the exact gradient.
TEST(BertModelTest, GradientMatchesFiniteDifferences) {
  BertConfig config = testing::MicroConfig();
  BertForPreTraining model(config, DoubleOptions(3));
  FlatParameters& params = model.parameters();
  {
    // Non-trivial LayerNorm and bias values, so their gradients are exercised.
    torch::NoGradGuard no_grad;
    params.values().add_(torch::randn({params.numel()}, torch::kFloat64) * 0.05);
  }
  PretrainBatch batch = testing::RandomBatch(11, config.vocab_size, {9, 6, 7}, 3);  // padded rows
  auto loss = [&] { return model.Loss(model.Forward(batch, false), batch).loss; };
  params.ZeroGrad();
  loss().backward();
  const torch::Tensor analytic = params.grads().clone();
  torch::Tensor values = params.values();
  double* v = values.data_ptr<double>();
  const double step = 1e-6;
  int64_t checked = 0;
  double worst = 0;
  std::string worst_name;
  torch::NoGradGuard no_grad;
  for (size_t s = 0; s < params.size(); ++s) {
    const ParameterSlot& slot = params.slot(s);
    for (int64_t i = slot.offset; i < slot.offset + slot.numel; ++i) {
      const double saved = v[i];
      v[i] = saved + step;
      const double up = loss().item<double>();
      v[i] = saved - step;
      const double down = loss().item<double>();
      v[i] = saved;
      const double numeric = (up - down) / (2 * step);
      const double exact = analytic[i].item<double>();
      const double error = std::abs(numeric - exact) / std::max(1e-3, std::abs(numeric) + std::abs(exact));
      if (error > worst) {
        worst = error;
        worst_name = slot.spec.name + "[" + std::to_string(i - slot.offset) + "]";
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, params.numel());
  EXPECT_LT(worst, 1e-5) << "worst relative error at " << worst_name;
}

// Pre-LN (BertConfig::pre_layer_norm) against the layer written out in
// plain LibTorch ops, in double: x + Attn(LN1(x)), then + FFN(LN2(.)), a
// final LayerNorm, then the pooler and the NSP head; and its gradient
// checked as the post-LN one is.
torch::Tensor PreLnReference(const BertConfig& c, const FlatParameters& p, const PretrainBatch& batch) {
  auto w = [&](const std::string& name) { return p.param("bert." + name); };
  const int64_t B = batch.input_ids.size(0), T = batch.input_ids.size(1), H = c.hidden_size;
  const int64_t A = c.num_attention_heads, D = H / A;
  const double eps = c.layer_norm_eps;
  auto ln = [&](const torch::Tensor& x, const std::string& name) {
    return at::layer_norm(x, {H}, w(name + ".weight"), w(name + ".bias"), eps);
  };
  auto linear = [&](const torch::Tensor& x, const std::string& name) {
    return torch::matmul(x, w(name + ".weight").t()) + w(name + ".bias");
  };
  torch::Tensor x = w("embeddings.word_embeddings.weight").index_select(0, batch.input_ids.flatten()).view({B, T, H}) +
                    w("embeddings.token_type_embeddings.weight").index_select(0, batch.token_type_ids.flatten()).view({B, T, H}) +
                    w("embeddings.position_embeddings.weight").narrow(0, 0, T);
  x = ln(x, "embeddings.LayerNorm");
  // Keys beyond a row's length are masked out.
  torch::Tensor keep = torch::arange(T).unsqueeze(0) < batch.lengths.unsqueeze(1);  // [B, T]
  torch::Tensor bias = torch::zeros({B, 1, 1, T}, torch::kFloat64).masked_fill(~keep.view({B, 1, 1, T}), -1e30);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string l = "encoder.layer." + std::to_string(i) + ".";
    torch::Tensor n = ln(x, l + "attention.output.LayerNorm");
    auto heads = [&](const std::string& part) {
      return linear(n, l + "attention.self." + part).view({B, T, A, D}).transpose(1, 2);
    };
    torch::Tensor scores = torch::matmul(heads("query"), heads("key").transpose(-1, -2)) / std::sqrt(double(D)) + bias;
    torch::Tensor context = torch::matmul(torch::softmax(scores, -1), heads("value")).transpose(1, 2).reshape({B, T, H});
    x = x + linear(context, l + "attention.output.dense");
    torch::Tensor inner = at::gelu(linear(ln(x, l + "output.LayerNorm"), l + "intermediate.dense"), "none");
    x = x + linear(inner, l + "output.dense");
  }
  x = ln(x, "encoder.final_layer_norm");
  torch::Tensor pooled = torch::tanh(linear(x.select(1, 0), "pooler.dense"));
  return torch::matmul(pooled, p.param("cls.seq_relationship.weight").t()) + p.param("cls.seq_relationship.bias");
}

TEST(BertModelTest, PreLayerNormMatchesTheLayerWrittenOutAndItsGradientIsExact) {
  BertConfig config = testing::MicroConfig();
  config.pre_layer_norm = true;
  BertForPreTraining model(config, DoubleOptions(4));
  FlatParameters& params = model.parameters();
  ASSERT_GE(params.IndexOf("bert.encoder.final_layer_norm.weight"), 0);
  {
    torch::NoGradGuard no_grad;
    params.values().add_(torch::randn({params.numel()}, torch::kFloat64) * 0.05);
  }
  PretrainBatch batch = testing::RandomBatch(12, config.vocab_size, {9, 6, 7}, 3);
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor ours = model.Forward(batch, false).nsp_logits;
    const torch::Tensor reference = PreLnReference(config, params, batch);
    EXPECT_LT((ours - reference).abs().max().item<double>(), 1e-12);
  }
  // The gradient of one parameter of each kind, by central differences.
  auto loss = [&] { return model.Loss(model.Forward(batch, false), batch).loss; };
  params.ZeroGrad();
  loss().backward();
  const torch::Tensor analytic = params.grads().clone();
  double* v = params.values().data_ptr<double>();
  torch::NoGradGuard no_grad;
  for (const char* name : {"bert.encoder.final_layer_norm.weight", "bert.encoder.layer.0.attention.output.LayerNorm.bias",
                           "bert.encoder.layer.1.output.LayerNorm.weight", "bert.encoder.layer.0.attention.self.query.weight",
                           "bert.encoder.layer.1.output.dense.weight", "bert.embeddings.LayerNorm.weight"}) {
    const int64_t offset = params.slot(static_cast<size_t>(params.IndexOf(name))).offset;
    for (int64_t i = offset; i < offset + 3; ++i) {
      const double saved = v[i];
      v[i] = saved + 1e-6;
      const double up = loss().item<double>();
      v[i] = saved - 1e-6;
      const double down = loss().item<double>();
      v[i] = saved;
      const double numeric = (up - down) / 2e-6, exact = analytic[i].item<double>();
      EXPECT_LT(std::abs(numeric - exact) / std::max(1e-3, std::abs(numeric) + std::abs(exact)), 1e-5)
          << name << "[" << i - offset << "]";
    }
  }
}

TEST(BertModelTest, MaskedOnlyMlmLogitsEqualTheFullComputation) {
  BertConfig config = testing::TinyConfig();
  BertForPreTraining model(config);
  PretrainBatch batch = testing::RandomBatch(5, config.vocab_size, {40, 33, 40, 12}, 6);
  torch::NoGradGuard no_grad;
  torch::Tensor masked = model.MlmLogits(model.Forward(batch, false));
  torch::Tensor full = model.FullMlmLogits(batch, false);
  ASSERT_EQ(full.size(0), batch.batch_size() * batch.seq_len());
  ASSERT_EQ(masked.size(0), batch.num_masked());
  EXPECT_TRUE(torch::allclose(masked, full.index_select(0, batch.masked_positions), 1e-5, 1e-5));
}

// A row's outputs must not depend on the padding added for longer rows.
TEST(BertModelTest, PaddingDoesNotChangeRealPositions) {
  BertConfig config = testing::TinyConfig();
  BertForPreTraining model(config);
  std::mt19937_64 rng(9);
  TrainingSample short_sample = testing::RandomSample(&rng, config.vocab_size, 10, 3);
  TrainingSample long_sample = testing::RandomSample(&rng, config.vocab_size, 30, 3);
  PretrainBatch alone = CollateSamples({short_sample}).value();
  PretrainBatch padded = CollateSamples({short_sample, long_sample}).value();
  ASSERT_EQ(padded.seq_len(), 30);
  torch::NoGradGuard no_grad;
  auto a = model.Forward(alone, false);
  auto b = model.Forward(padded, false);
  EXPECT_TRUE(torch::allclose(model.MlmLogits(a), model.MlmLogits(b).narrow(0, 0, 3), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(a.nsp_logits, b.nsp_logits.narrow(0, 0, 1), 1e-4, 1e-5));
  // Without the mask the padded keys would leak in: changing pad ids must not matter.
  PretrainBatch other_pad = CollateSamples({short_sample, long_sample}, CollateOptions{7, 0}).value();
  auto c = model.Forward(other_pad, false);
  EXPECT_TRUE(torch::allclose(model.MlmLogits(b), model.MlmLogits(c), 1e-5, 1e-6));
}

TEST(BertModelTest, DropoutIsSeededScaledAndDifferentiable) {
  DropoutRng rng(17);
  torch::Tensor x = torch::ones({100000}, torch::requires_grad());
  torch::Tensor y = Dropout(x, 0.1, &rng);
  const double kept = y.ne(0).sum().item<double>() / 100000.0;
  EXPECT_NEAR(kept, 0.9, 0.005);
  EXPECT_TRUE(y.masked_select(y.ne(0)).eq(static_cast<float>(1.0 / 0.9)).all().item<bool>());
  y.sum().backward();
  EXPECT_TRUE(torch::equal(x.grad(), y.detach()));  // d/dx = mask / (1 - p)
  DropoutRng same(17);
  EXPECT_TRUE(torch::equal(Dropout(x.detach(), 0.1, &same), y.detach()));
  EXPECT_FALSE(torch::equal(Dropout(x.detach(), 0.1, &same), y.detach()));  // the stream moved on
}

TEST(BertModelTest, TrainingModeDrawsDropoutEvalModeDoesNot) {
  BertForPreTraining model(testing::TinyConfig(/*dropout=*/0.1));
  PretrainBatch batch = testing::RandomBatch(2, 100, {20, 20}, 3);
  torch::NoGradGuard no_grad;
  torch::Tensor eval1 = model.Forward(batch, false).mlm_hidden;
  torch::Tensor eval2 = model.Forward(batch, false).mlm_hidden;
  torch::Tensor train = model.Forward(batch, true).mlm_hidden;
  EXPECT_TRUE(torch::equal(eval1, eval2));
  EXPECT_FALSE(torch::allclose(eval1, train));
}

TEST(BertModelTest, SequenceClassificationHead) {
  BertConfig config = testing::TinyConfig();
  config.num_labels = 3;
  BertForSequenceClassification model(config);
  EXPECT_GE(model.parameters().IndexOf("classifier.weight"), 0);
  EXPECT_EQ(model.parameters().param("classifier.weight").sizes().vec(), (std::vector<int64_t>{3, 32}));
  PretrainBatch batch = testing::RandomBatch(4, 100, {12, 9}, 1);
  torch::Tensor logits = model.Forward(batch.input_ids, batch.token_type_ids, batch.lengths, true);
  EXPECT_EQ(logits.sizes().vec(), (std::vector<int64_t>{2, 3}));
  torch::Tensor labels = torch::tensor({2, 0}, torch::kLong);
  CrossEntropyMean(logits, labels).backward();
  EXPECT_GT(model.parameters().param("classifier.weight").grad().abs().sum().item<double>(), 0);
  EXPECT_TRUE(torch::allclose(CrossEntropyMean(logits.detach(), labels),
                              torch::nn::functional::cross_entropy(logits.detach(), labels)));
}

TEST(PretrainBatchTest, CollatesSamplesIntoPaddedTensors) {
  TrainingSample a;
  a.input_ids = {2, 10, 11, 3, 12, 3};
  a.segment_b_start = 4;
  a.masked_positions = {1, 4};
  a.masked_labels = {20, 21};
  a.is_random_next = true;
  TrainingSample b;
  b.input_ids = {2, 13, 3, 14, 15, 16, 3};
  b.segment_b_start = 3;
  b.masked_positions = {5};
  b.masked_labels = {22};
  Result<PretrainBatch> batch = CollateSamples({a, b});
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  EXPECT_EQ(batch->seq_len(), 7);
  EXPECT_TRUE(torch::equal(batch->input_ids,
                           torch::tensor({2, 10, 11, 3, 12, 3, 0, 2, 13, 3, 14, 15, 16, 3}, torch::kLong).view({2, 7})));
  EXPECT_TRUE(torch::equal(batch->token_type_ids,
                           torch::tensor({0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1}, torch::kLong).view({2, 7})));
  EXPECT_TRUE(torch::equal(batch->lengths, torch::tensor({6, 7}, torch::kLong)));
  EXPECT_TRUE(torch::equal(batch->masked_positions, torch::tensor({1, 4, 7 + 5}, torch::kLong)));
  EXPECT_TRUE(torch::equal(batch->masked_labels, torch::tensor({20, 21, 22}, torch::kLong)));
  EXPECT_TRUE(torch::equal(batch->nsp_labels, torch::tensor({1, 0}, torch::kLong)));
  EXPECT_EQ(batch->num_tokens(), 13);

  BertConfig config = testing::TinyConfig();
  EXPECT_TRUE(CheckBatchFitsModel(*batch, config).ok());
  config.vocab_size = 20;
  EXPECT_NE(CheckBatchFitsModel(*batch, config).message().find("vocab_size"), std::string::npos);

  Result<PretrainBatch> wider = CollateSamples({a, b}, CollateOptions{0, 16});
  ASSERT_TRUE(wider.ok());
  EXPECT_EQ(wider->seq_len(), 16);
  EXPECT_TRUE(torch::equal(wider->masked_positions, torch::tensor({1, 4, 16 + 5}, torch::kLong)));
}

TEST(PretrainBatchTest, RejectsInconsistentSamples) {
  TrainingSample a;
  a.input_ids = {2, 10, 3, 11, 3};
  a.segment_b_start = 3;
  a.masked_positions = {1, 3};
  a.masked_labels = {5};
  Result<PretrainBatch> batch = CollateSamples({a});
  ASSERT_FALSE(batch.ok());
  EXPECT_NE(batch.status().message().find("sample 0"), std::string::npos);
  a.masked_labels = {5, 6};
  a.masked_positions = {1, 9};
  EXPECT_NE(CollateSamples({a}).status().message().find("masked position 9"), std::string::npos);
  a.masked_positions = {1, 3};
  EXPECT_TRUE(CollateSamples({a}).ok());
  EXPECT_FALSE(CollateSamples({a}, CollateOptions{0, 3}).ok());
  EXPECT_FALSE(CollateSamples({}).ok());
}

}  // namespace
}  // namespace bert
