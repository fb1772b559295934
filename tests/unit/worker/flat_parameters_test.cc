// Flat parameter layout: HF names and shapes for bert-base, views that alias
// the buffers, gradients that land (and accumulate) in the flat gradient
// buffer, deterministic initialisation.
#include "worker/model/flat_parameters.h"

#include <gtest/gtest.h>

#include <set>

#include "unit/worker/model_test_util.h"
#include "worker/model/bert_heads.h"
#include "worker/model/flat_ops.h"
#include "worker/train/optimizer.h"

namespace bert {
namespace {

std::string ModelConfig(const std::string& name) {
  return std::string(BERT_SOURCE_DIR) + "/configs/models/" + name + ".json";
}

// HuggingFace's BertForPreTraining(bert-base-uncased).named_parameters(),
// as a set (our order differs only inside the query/key/value group).
std::set<std::string> HfPreTrainingNames(int layers) {
  std::set<std::string> names = {"bert.embeddings.word_embeddings.weight",
                                 "bert.embeddings.position_embeddings.weight",
                                 "bert.embeddings.token_type_embeddings.weight",
                                 "bert.embeddings.LayerNorm.weight",
                                 "bert.embeddings.LayerNorm.bias",
                                 "bert.pooler.dense.weight",
                                 "bert.pooler.dense.bias",
                                 "cls.predictions.bias",
                                 "cls.predictions.transform.dense.weight",
                                 "cls.predictions.transform.dense.bias",
                                 "cls.predictions.transform.LayerNorm.weight",
                                 "cls.predictions.transform.LayerNorm.bias",
                                 "cls.seq_relationship.weight",
                                 "cls.seq_relationship.bias"};
  for (int i = 0; i < layers; ++i) {
    const std::string p = "bert.encoder.layer." + std::to_string(i) + ".";
    for (const char* suffix :
         {"attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight",
          "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias",
          "attention.output.dense.weight", "attention.output.dense.bias", "attention.output.LayerNorm.weight",
          "attention.output.LayerNorm.bias", "intermediate.dense.weight", "intermediate.dense.bias",
          "output.dense.weight", "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"}) {
      names.insert(p + suffix);
    }
  }
  return names;
}

TEST(FlatParametersTest, BertBaseMatchesHuggingFaceNamesShapesAndCount) {
  Result<BertConfig> config = LoadBertConfig(ModelConfig("bert-base"));
  ASSERT_TRUE(config.ok());
  BertForPreTraining model(*config);
  const FlatParameters& params = model.parameters();
  std::set<std::string> names;
  for (const ParameterSlot& slot : params.slots()) names.insert(slot.spec.name);
  EXPECT_EQ(names, HfPreTrainingNames(12));
  EXPECT_EQ(params.size(), names.size());
  // HF: sum(p.numel() for p in BertForPreTraining(bert-base-uncased).parameters()).
  EXPECT_EQ(params.numel(), 110106428);
  EXPECT_EQ(params.values().numel(), 110106428);
  auto shape = [&](const std::string& name) { return params.param(name).sizes().vec(); };
  EXPECT_EQ(shape("bert.embeddings.word_embeddings.weight"), (std::vector<int64_t>{30522, 768}));
  EXPECT_EQ(shape("bert.embeddings.position_embeddings.weight"), (std::vector<int64_t>{512, 768}));
  EXPECT_EQ(shape("bert.embeddings.token_type_embeddings.weight"), (std::vector<int64_t>{2, 768}));
  EXPECT_EQ(shape("bert.encoder.layer.11.attention.self.query.weight"), (std::vector<int64_t>{768, 768}));
  EXPECT_EQ(shape("bert.encoder.layer.0.intermediate.dense.weight"), (std::vector<int64_t>{3072, 768}));
  EXPECT_EQ(shape("bert.encoder.layer.0.output.dense.weight"), (std::vector<int64_t>{768, 3072}));
  EXPECT_EQ(shape("cls.predictions.bias"), (std::vector<int64_t>{30522}));
  EXPECT_EQ(shape("cls.seq_relationship.weight"), (std::vector<int64_t>{2, 768}));
  // Layout: back to back, in order, weight decay by BERT's rule.
  int64_t offset = 0;
  for (const ParameterSlot& slot : params.slots()) {
    EXPECT_EQ(slot.offset, offset) << slot.spec.name;
    offset += slot.numel;
    const bool no_decay = slot.spec.name.find("LayerNorm") != std::string::npos ||
                          slot.spec.name.substr(slot.spec.name.size() - 4) == "bias";
    EXPECT_EQ(slot.spec.weight_decay, !no_decay) << slot.spec.name;
  }
  // BERT initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm.
  const torch::Tensor query = params.param("bert.encoder.layer.3.attention.self.query.weight");
  EXPECT_NEAR(query.std().item<double>(), 0.02, 0.0005);
  EXPECT_NEAR(query.mean().item<double>(), 0.0, 0.0005);
  EXPECT_EQ(params.param("bert.encoder.layer.3.attention.self.query.bias").abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(params.param("bert.embeddings.LayerNorm.weight").eq(1.0).all().item<bool>());
  EXPECT_EQ(params.Layout()["parameters"].size(), params.size());
}

TEST(FlatParametersTest, ViewsAliasTheFlatBuffers) {
  BertForPreTraining model(testing::MicroConfig());
  FlatParameters& params = model.parameters();
  const int64_t index = params.IndexOf("bert.encoder.layer.1.output.dense.weight");
  ASSERT_GE(index, 0);
  const ParameterSlot& slot = params.slot(static_cast<size_t>(index));
  const torch::Tensor& param = params.param(static_cast<size_t>(index));
  EXPECT_TRUE(param.is_leaf());
  EXPECT_TRUE(param.requires_grad());
  {
    torch::NoGradGuard no_grad;
    params.values().narrow(0, slot.offset, slot.numel).fill_(0.25);
  }
  EXPECT_TRUE(param.eq(0.25).all().item<bool>());
  {
    torch::NoGradGuard no_grad;
    param[0][1].fill_(-7.0);  // and the other way round
  }
  EXPECT_EQ(params.values()[slot.offset + 1].item<float>(), -7.0f);
  EXPECT_EQ(param.grad().data_ptr<float>(), params.grads().data_ptr<float>() + slot.offset);
  // The fused query/key/value span covers three consecutive slots.
  const int64_t query = params.IndexOf("bert.encoder.layer.0.attention.self.query.weight");
  torch::Tensor span = params.Span(static_cast<size_t>(query), 3, {24, 8});
  EXPECT_EQ(span.data_ptr<float>(), params.param(static_cast<size_t>(query)).data_ptr<float>());
  EXPECT_TRUE(torch::equal(span.narrow(0, 8, 8), params.param(static_cast<size_t>(query + 1))));
}

TEST(FlatParametersTest, GradientsLandAndAccumulateInTheFlatBuffer) {
  BertForPreTraining model(testing::MicroConfig());
  FlatParameters& params = model.parameters();
  PretrainBatch batch = testing::RandomBatch(1, 23, {8, 6}, 2);
  auto loss = [&] { return model.Loss(model.Forward(batch, false), batch).loss; };
  loss().backward();
  const torch::Tensor once = params.grads().clone();
  EXPECT_GT(once.abs().sum().item<double>(), 0.0);
  // Every parameter's grad() is still its view of the flat buffer.
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(params.param(i).grad().data_ptr<float>(), params.grads().data_ptr<float>() + params.slot(i).offset)
        << params.slot(i).spec.name;
  }
  // Every slot that the loss reaches gets a gradient (only padding rows of
  // the tables may stay zero).
  for (const char* name : {"bert.encoder.layer.0.attention.self.key.weight", "bert.pooler.dense.weight",
                           "cls.predictions.bias", "bert.embeddings.LayerNorm.weight", "cls.seq_relationship.bias"}) {
    EXPECT_GT(params.param(name).grad().abs().sum().item<double>(), 0.0) << name;
  }
  // A second backward adds to the first instead of replacing it.
  loss().backward();
  EXPECT_TRUE(torch::allclose(params.grads(), 2 * once, 1e-5, 1e-7));
  // Also through plain LibTorch ops (AccumulateGrad adds into the view).
  params.ZeroGrad();
  const torch::Tensor& pooler = params.param("bert.pooler.dense.weight");
  (pooler * 3.0).sum().backward();
  (pooler * 2.0).sum().backward();
  EXPECT_TRUE(pooler.grad().eq(5.0).all().item<bool>());
  EXPECT_EQ(pooler.grad().data_ptr<float>(),
            params.grads().data_ptr<float>() + params.slot(params.IndexOf("bert.pooler.dense.weight")).offset);
}

TEST(FlatParametersTest, InitialisationIsDeterministicPerSeed) {
  ModelOptions options;
  options.seed = 5;
  BertForPreTraining a(testing::TinyConfig(), options);
  BertForPreTraining b(testing::TinyConfig(), options);
  options.seed = 6;
  BertForPreTraining c(testing::TinyConfig(), options);
  EXPECT_TRUE(torch::equal(a.parameters().values(), b.parameters().values()));
  EXPECT_FALSE(torch::equal(a.parameters().values(), c.parameters().values()));
}

TEST(FlatParametersTest, ShardRangesAreRangeArithmetic) {
  BertForPreTraining model(testing::MicroConfig());
  const FlatParameters& params = model.parameters();
  for (int world = 1; world <= 7; ++world) {
    int64_t covered = 0;
    for (int rank = 0; rank < world; ++rank) {
      const int64_t begin = params.numel() * rank / world, end = params.numel() * (rank + 1) / world;
      for (const ParamRange& range : ShardRanges(params, begin, end)) {
        EXPECT_GE(range.begin, begin);
        EXPECT_LE(range.begin + range.numel, end);
        covered += range.numel;
      }
    }
    EXPECT_EQ(covered, params.numel()) << world;
  }
}

}  // namespace
}  // namespace bert
