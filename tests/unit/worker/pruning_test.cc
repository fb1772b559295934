// Pruning's pure parts (worker/compress/pruning.h, interop/pretrained.h):
// which heads and neurons a plan removes, the shapes and values a plan
// leaves, pruned_heads in original indices across two prunings, the config
// key's checks, and the importance of a head that contributes nothing.
#include "worker/compress/pruning.h"

#include <gtest/gtest.h>

#include "interop/pretrained.h"
#include "worker/model/bert_config.h"

namespace bert {
namespace {

TEST(PruningTest, ThePlanRemovesTheLeastImportantHeadsButNeverALayersLast) {
  PruneImportance importance;
  importance.heads = {{0.9, 0.1, 0.2}, {0.05, 0.99, 0.3}, {0.5}};
  importance.neurons = {{1, 5, 3, 4}, {2, 2, 9, 1}, {0, 1, 2, 3}};
  Result<PrunePlan> plan = ChoosePrune(importance, 3, 0.5);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_EQ(plan->remove_heads, (std::vector<std::vector<int64_t>>{{1, 2}, {0}, {}}));
  // The two best neurons of each layer, in index order; ties keep the lower index.
  EXPECT_EQ(plan->keep_neurons, (std::vector<std::vector<int64_t>>{{1, 3}, {0, 2}, {2, 3}}));
  // 7 heads in 3 layers, one of each layer staying: at most 4 go.
  plan = ChoosePrune(importance, 4, 1.0);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->remove_heads, (std::vector<std::vector<int64_t>>{{1, 2}, {0, 2}, {}}));
  Result<PrunePlan> too_many = ChoosePrune(importance, 5, 1.0);
  ASSERT_FALSE(too_many.ok());
  EXPECT_NE(too_many.status().message().find("--heads: 5 is not in [0, 4]"), std::string::npos)
      << too_many.status().message();
  EXPECT_FALSE(ChoosePrune(importance, 0, 0.0).ok());
  EXPECT_FALSE(ChoosePrune(importance, 0, 1.5).ok());
}

TEST(PruningTest, ApplyKeepsTheRowsAndColumnsOfWhatStaysAndNamesOriginalHeads) {
  // One layer, hidden 4, 2 heads of 2, FFN 3; tensors hold their flat index.
  BertConfig config;
  config.vocab_size = 5;
  config.hidden_size = 4;
  config.num_hidden_layers = 1;
  config.num_attention_heads = 2;
  config.intermediate_size = 3;
  auto iota = [](std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    NamedTensor t{"", shape, {}};
    for (int64_t i = 0; i < n; ++i) t.values.push_back(static_cast<float>(i));
    return t;
  };
  const std::string p = "bert.encoder.layer.0.";
  std::vector<NamedTensor> tensors;
  for (auto [name, shape] : std::vector<std::pair<std::string, std::vector<int64_t>>>{
           {p + "attention.self.query.weight", {4, 4}}, {p + "attention.self.query.bias", {4}},
           {p + "attention.output.dense.weight", {4, 4}}, {p + "intermediate.dense.weight", {3, 4}},
           {p + "intermediate.dense.bias", {3}}, {p + "output.dense.weight", {4, 3}}, {"classifier.bias", {2}}}) {
    NamedTensor t = iota(shape);
    t.name = name;
    tensors.push_back(t);
  }
  PrunePlan plan{{{0}}, {{0, 2}}};  // head 0 goes; neurons 0 and 2 stay
  Result<std::vector<NamedTensor>> out = ApplyPrune(tensors, plan, &config);
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ((*out)[0].shape, (std::vector<int64_t>{2, 4}));  // query rows 2, 3 (head 1)
  EXPECT_EQ((*out)[0].values, (std::vector<float>{8, 9, 10, 11, 12, 13, 14, 15}));
  EXPECT_EQ((*out)[1].values, (std::vector<float>{2, 3}));
  EXPECT_EQ((*out)[2].shape, (std::vector<int64_t>{4, 2}));  // attention output columns 2, 3
  EXPECT_EQ((*out)[2].values, (std::vector<float>{2, 3, 6, 7, 10, 11, 14, 15}));
  EXPECT_EQ((*out)[3].values, (std::vector<float>{0, 1, 2, 3, 8, 9, 10, 11}));  // FFN rows 0, 2
  EXPECT_EQ((*out)[4].values, (std::vector<float>{0, 2}));
  EXPECT_EQ((*out)[5].values, (std::vector<float>{0, 2, 3, 5, 6, 8, 9, 11}));  // FFN output columns 0, 2
  EXPECT_EQ((*out)[6].values, tensors[6].values);
  EXPECT_EQ(config.pruned_heads, (std::map<int64_t, std::vector<int64_t>>{{0, {0}}}));
  EXPECT_EQ(config.intermediate_size, 2);
  EXPECT_EQ(config.attention_size(0), 2);

  // A second pruning names heads by their original index.
  BertConfig four = config;
  four.num_attention_heads = 4;
  four.hidden_size = 8;
  four.pruned_heads = {{0, {1}}};  // heads 0, 2, 3 remain: positions 0, 1, 2
  PrunePlan again{{{1}}, {{0, 1}}};
  Result<std::vector<NamedTensor>> none = ApplyPrune({}, again, &four);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(four.pruned_heads, (std::map<int64_t, std::vector<int64_t>>{{0, {1, 2}}}));
}

TEST(PruningTest, PrunedHeadsRoundTripThroughConfigJsonAndBadOnesAreNamed) {
  nlohmann::json json = {{"vocab_size", 10}, {"hidden_size", 8}, {"num_hidden_layers", 2},
                         {"num_attention_heads", 4}, {"intermediate_size", 6}, {"pruned_heads", {{"1", {3, 0}}}}};
  Result<BertConfig> config = BertConfigFromJson(json, "c.json");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->heads_in_layer(0), 4);
  EXPECT_EQ(config->heads_in_layer(1), 2);
  EXPECT_EQ(config->ToJson()["pruned_heads"], nlohmann::json({{"1", {0, 3}}}));
  Result<BertShapes> shapes = BertShapesFromConfig(json, "c.json");
  ASSERT_TRUE(shapes.ok());
  EXPECT_EQ(ExpectedTensorShapes(*shapes)["bert.encoder.layer.1.attention.self.key.weight"],
            (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(ExpectedTensorShapes(*shapes)["bert.encoder.layer.1.attention.output.dense.weight"],
            (std::vector<int64_t>{8, 4}));
  const std::pair<nlohmann::json, std::string> bad[] = {
      {{{"2", {0}}}, "c.json: pruned_heads: \"2\" is not a layer (0..1)"},
      {{{"x", {0}}}, "c.json: pruned_heads: \"x\" is not a layer"},
      {{{"0", {4}}}, "c.json: pruned_heads.0: 4 is not a head (0..3)"},
      {{{"0", {1, 1}}}, "c.json: pruned_heads.0: a head is listed twice"},
      {{{"0", {0, 1, 2, 3}}}, "c.json: pruned_heads.0: removes all 4 heads"},
      {nlohmann::json::array(), "c.json: pruned_heads: expected an object"},
  };
  for (const auto& [value, message] : bad) {
    json["pruned_heads"] = value;
    Result<BertConfig> parsed = BertConfigFromJson(json, "c.json");
    ASSERT_FALSE(parsed.ok()) << value.dump();
    EXPECT_EQ(parsed.status().message().rfind(message, 0), 0u) << parsed.status().message();
  }
}

TEST(PruningTest, AHeadThatContributesNothingHasNoImportanceAndGoesFirst) {
  BertConfig config;
  config.vocab_size = 30;
  config.hidden_size = 8;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 2;
  config.intermediate_size = 6;
  config.num_labels = 2;
  config.hidden_dropout_prob = 0;
  config.attention_probs_dropout_prob = 0;
  torch::manual_seed(3);
  BertForSequenceClassification model(config);
  {
    torch::NoGradGuard no_grad;
    // Layer 1, head 0 (columns 0..3 of the attention output) reads nothing.
    model.parameters().param("bert.encoder.layer.1.attention.output.dense.weight").narrow(1, 0, 4).zero_();
  }
  std::vector<finetune::Feature> features;
  for (int i = 0; i < 6; ++i) {
    features.push_back({{2, 5 + i, 7 + (i % 3), 3}, {0, 0, 0, 0}, i % 2});
  }
  Result<PruneImportance> importance = ComputePruneImportance(&model, features, 4, 0);
  ASSERT_TRUE(importance.ok()) << importance.status().message();
  EXPECT_EQ(importance->heads[1][0], 0.0);
  EXPECT_GT(importance->heads[1][1], 0.0);
  EXPECT_GT(importance->heads[0][0], 0.0);
  Result<PrunePlan> plan = ChoosePrune(*importance, 1, 1.0);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->remove_heads, (std::vector<std::vector<int64_t>>{{}, {0}}));
}

}  // namespace
}  // namespace bert
