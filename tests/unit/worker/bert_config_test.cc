// Model configs: every shipped size loads with the right shape; bad files
// fail with a message that names the file and the key.
#include "worker/model/bert_config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "test_util.h"

namespace bert {
namespace {

std::string ModelConfig(const std::string& name) {
  return std::string(BERT_SOURCE_DIR) + "/configs/models/" + name + ".json";
}

TEST(BertConfigTest, ShippedSizesLoad) {
  struct Size {
    const char* name;
    int64_t layers, hidden, heads;
  };
  for (const Size& size : {Size{"bert-tiny", 2, 128, 2}, Size{"bert-mini", 4, 256, 4}, Size{"bert-small", 4, 512, 8},
                           Size{"bert-medium", 8, 512, 8}, Size{"bert-base", 12, 768, 12},
                           Size{"bert-large", 24, 1024, 16}}) {
    Result<BertConfig> config = LoadBertConfig(ModelConfig(size.name));
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    EXPECT_EQ(config->num_hidden_layers, size.layers) << size.name;
    EXPECT_EQ(config->hidden_size, size.hidden) << size.name;
    EXPECT_EQ(config->num_attention_heads, size.heads) << size.name;
    EXPECT_EQ(config->intermediate_size, 4 * size.hidden) << size.name;
    EXPECT_EQ(config->vocab_size, 30522) << size.name;
    EXPECT_EQ(config->hidden_act, "gelu");
    EXPECT_DOUBLE_EQ(config->layer_norm_eps, 1e-12);
  }
}

TEST(BertConfigTest, RoundTripsThroughJson) {
  Result<BertConfig> config = LoadBertConfig(ModelConfig("bert-small"));
  ASSERT_TRUE(config.ok());
  Result<BertConfig> again = BertConfigFromJson(config->ToJson(), "again");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->ToJson(), config->ToJson());
}

// Writes `json` to a temporary file and loads it; returns the error message.
std::string LoadError(const std::string& json) {
  testing::TempDir dir;
  const std::string path = dir / "config.json";
  std::ofstream(path) << json;
  Result<BertConfig> config = LoadBertConfig(path);
  EXPECT_FALSE(config.ok()) << json;
  if (config.ok()) return "";
  EXPECT_NE(config.status().message().find(path), std::string::npos) << config.status().message();
  return config.status().message();
}

const char* kShape =
    R"("vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128)";

TEST(BertConfigTest, BadValuesNameTheKey) {
  EXPECT_NE(LoadError("{" + std::string(kShape) + R"(, "hidden_dropout_prob": 1.5})").find("hidden_dropout_prob"),
            std::string::npos);
  EXPECT_NE(LoadError("{" + std::string(kShape) + R"(, "hidden_act": "swish"})").find("hidden_act"),
            std::string::npos);
  EXPECT_NE(LoadError("{" + std::string(kShape) + R"(, "layer_norm_eps": "small"})").find("layer_norm_eps"),
            std::string::npos);
  EXPECT_NE(LoadError("{" + std::string(kShape) + R"(, "type_vocab_size": 0})").find("type_vocab_size"),
            std::string::npos);
  EXPECT_NE(LoadError("{" + std::string(kShape) + R"(, "position_embedding_type": "relative_key"})")
                .find("position_embedding_type"),
            std::string::npos);
  EXPECT_NE(LoadError(R"({"vocab_size": 100, "hidden_size": 65, "num_hidden_layers": 2,
                          "num_attention_heads": 4, "intermediate_size": 128})")
                .find("hidden_size: must be divisible by num_attention_heads"),
            std::string::npos);
  EXPECT_NE(LoadError(R"({"vocab_size": 100.5, "hidden_size": 64, "num_hidden_layers": 2,
                          "num_attention_heads": 4, "intermediate_size": 128})")
                .find("vocab_size: must be an integer"),
            std::string::npos);
  EXPECT_NE(LoadError(R"({"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                          "intermediate_size": 128})")
                .find("missing required key vocab_size"),
            std::string::npos);
  EXPECT_NE(LoadError("{not json").find("not valid JSON"), std::string::npos);
}

TEST(BertConfigTest, MissingFileNamesThePath) {
  Result<BertConfig> config = LoadBertConfig("/nonexistent/config.json");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("/nonexistent/config.json"), std::string::npos);
}

TEST(BertConfigTest, AcceptsHuggingFaceExtrasAndDerivesNumLabels) {
  nlohmann::json json = nlohmann::json::parse("{" + std::string(kShape) + "}");
  json["transformers_version"] = "4.36.0";
  json["architectures"] = {"BertForSequenceClassification"};
  json["id2label"] = {{"0", "neg"}, {"1", "neu"}, {"2", "pos"}};
  json["classifier_dropout"] = nullptr;
  Result<BertConfig> config = BertConfigFromJson(json, "hf");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->num_labels, 3);
  EXPECT_DOUBLE_EQ(config->effective_classifier_dropout(), config->hidden_dropout_prob);
}

}  // namespace
}  // namespace bert
