// Dynamic padding and init-weight copying (worker/finetune/finetune_model.h).
#include "worker/finetune/finetune_model.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "unit/worker/model_test_util.h"

namespace bert {
namespace {

TEST(CollateFeaturesTest, PadsToTheLongestOfTheBatchInTheGivenOrder) {
  std::vector<finetune::Feature> features(3);
  features[0] = {{2, 7, 3}, {0, 0, 0}, 1};
  features[1] = {{2, 8, 9, 3, 10, 3}, {0, 0, 0, 0, 1, 1}, 0};
  features[2] = {{2, 3}, {0, 0}, 2};
  const std::vector<int64_t> order = {2, 0, 1};
  ClassificationBatch batch = CollateFeatures(features, order, 0, 2, /*pad_id=*/0);  // features 2 and 0
  ASSERT_EQ(batch.size(), 2);
  EXPECT_EQ(batch.input_ids.size(1), 3);  // the longest of these two, not of the data set
  EXPECT_TRUE(torch::equal(batch.input_ids, torch::tensor({2, 3, 0, 2, 7, 3}, torch::kLong).view({2, 3})));
  EXPECT_TRUE(torch::equal(batch.lengths, torch::tensor({2, 3}, torch::kLong)));
  EXPECT_TRUE(torch::equal(batch.labels, torch::tensor({2, 1}, torch::kLong)));
  EXPECT_EQ(batch.num_tokens, 5);
  batch = CollateFeatures(features, order, 2, 3, 0);
  EXPECT_TRUE(torch::equal(batch.token_type_ids, torch::tensor({0, 0, 0, 0, 1, 1}, torch::kLong).view({1, 6})));
  EXPECT_EQ(CollateFeatures(features, order, 1, 1, 0).size(), 0);  // an empty slice (a rank with no share)
}

// The bert.* tensors of a pretraining model with the same config (plus cls.*).
std::vector<NamedTensor> PretrainingTensors(const BertConfig& config, uint64_t seed) {
  ModelOptions options;
  options.seed = seed;
  BertForPreTraining model(config, options);
  std::vector<NamedTensor> tensors;
  const float* values = model.parameters().values().data_ptr<float>();
  for (const ParameterSlot& slot : model.parameters().slots()) {
    tensors.push_back(
        {slot.spec.name, slot.spec.shape, std::vector<float>(values + slot.offset, values + slot.offset + slot.numel)});
  }
  return tensors;
}

template <typename Predicate>
void Drop(std::vector<NamedTensor>* tensors, Predicate predicate) {
  tensors->erase(std::remove_if(tensors->begin(), tensors->end(), predicate), tensors->end());
}

TEST(CopyPretrainedTensorsTest, CopiesTheEncoderAndKeepsTheSeededHead) {
  const BertConfig config = testing::MicroConfig();
  std::vector<NamedTensor> tensors = PretrainingTensors(config, 7);
  BertForSequenceClassification model(config);
  const torch::Tensor head = model.parameters().param("classifier.weight").clone();
  ASSERT_TRUE(CopyPretrainedTensors(tensors, "init", false, &model).ok());
  const torch::Tensor query = model.parameters().param("bert.encoder.layer.1.attention.self.query.weight");
  EXPECT_TRUE(torch::equal(
      query.flatten(),
      torch::tensor(tensors[model.parameters().IndexOf("bert.encoder.layer.1.attention.self.query.weight")].values)));
  EXPECT_TRUE(torch::equal(model.parameters().param("classifier.weight"), head));
}

TEST(CopyPretrainedTensorsTest, ShapeMismatchAndMissingTensorsAreErrorsNamingThem) {
  const BertConfig config = testing::MicroConfig();
  std::vector<NamedTensor> tensors = PretrainingTensors(config, 7);
  BertForSequenceClassification model(config);
  for (NamedTensor& tensor : tensors) {
    if (tensor.name == "bert.embeddings.token_type_embeddings.weight") tensor.shape = {config.hidden_size, 2};
  }
  Status status = CopyPretrainedTensors(tensors, "ckpt/model.safetensors", false, &model);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("ckpt/model.safetensors: tensor bert.embeddings.token_type_embeddings.weight has "
                                  "shape [8, 2], the model needs [2, 8]"),
            std::string::npos)
      << status.message();

  tensors = PretrainingTensors(config, 7);
  Drop(&tensors, [](const NamedTensor& t) { return t.name == "bert.encoder.layer.0.output.dense.bias"; });
  status = CopyPretrainedTensors(tensors, "init", false, &model);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("bert.encoder.layer.0.output.dense.bias is missing"), std::string::npos);

  // The pooler may be absent (BertModel exports without it): it keeps its init.
  tensors = PretrainingTensors(config, 7);
  Drop(&tensors, [](const NamedTensor& t) { return t.name.rfind("bert.pooler.", 0) == 0; });
  EXPECT_TRUE(CopyPretrainedTensors(tensors, "init", false, &model).ok());
  // A fine-tuned directory must carry its classifier.
  status = CopyPretrainedTensors(tensors, "dir", true, &model);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("classifier.weight is missing"), std::string::npos) << status.message();
}

}  // namespace
}  // namespace bert
