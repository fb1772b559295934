// train.init_from (worker/train/init_from.h): a pretraining model starts from
// the weights of an HF directory, heads included when it has them, and a
// model of another shape is refused naming the tensor.
#include "worker/train/init_from.h"

#include <gtest/gtest.h>

#include "interop/pretrained.h"
#include "test_util.h"
#include "unit/worker/model_test_util.h"

namespace bert {
namespace {

// `model` as an HF directory (BertForPreTraining's tensors, minus those whose
// name starts with `drop`).
void WriteHf(const BertForPreTraining& model, const std::string& dir, const std::string& drop = "") {
  PretrainedModel hf;
  hf.config = model.config().ToJson();
  hf.config["architectures"] = {"BertForPreTraining"};
  for (int64_t id = 0; id < model.config().vocab_size; ++id) {
    hf.vocab.push_back(id == 0 ? "[PAD]" : id == 1 ? "[UNK]" : id == 2 ? "[CLS]" : id == 3 ? "[SEP]" : id == 4 ? "[MASK]"
                                                                                                              : "w" + std::to_string(id));
  }
  const torch::Tensor values = model.parameters().values().contiguous();
  const float* data = values.data_ptr<float>();
  for (const ParameterSlot& slot : model.parameters().slots()) {
    if (!drop.empty() && slot.spec.name.rfind(drop, 0) == 0) continue;
    hf.tensors.push_back(
        NamedTensor{slot.spec.name, slot.spec.shape, std::vector<float>(data + slot.offset, data + slot.offset + slot.numel)});
  }
  Status written = WriteHfDirectory(dir, hf);
  ASSERT_TRUE(written.ok()) << written.message();
}

torch::Tensor Param(const BertForPreTraining& model, const std::string& name) {
  return model.parameters().param(static_cast<size_t>(model.parameters().IndexOf(name)));
}

TEST(InitFromTest, StartsFromTheDirectorysWeightsHeadsIncluded) {
  testing::TempDir tmp;
  ModelOptions seed1, seed2;
  seed1.seed = 1;
  seed2.seed = 2;
  BertForPreTraining source(testing::TinyConfig(), seed1);
  WriteHf(source, tmp.path() + "/full");
  BertForPreTraining model(testing::TinyConfig(), seed2);
  ASSERT_FALSE(torch::equal(model.parameters().values(), source.parameters().values()));
  Status loaded = InitializeFromPretrained(tmp.path() + "/full", &model);
  ASSERT_TRUE(loaded.ok()) << loaded.message();
  EXPECT_TRUE(torch::equal(model.parameters().values(), source.parameters().values()));

  // Without the pretraining heads (a BertModel directory): the encoder is
  // copied, the heads keep the model's own initial weights.
  WriteHf(source, tmp.path() + "/encoder", "cls.");
  BertForPreTraining fresh(testing::TinyConfig(), seed2), reference(testing::TinyConfig(), seed2);
  loaded = InitializeFromPretrained(tmp.path() + "/encoder", &fresh);
  ASSERT_TRUE(loaded.ok()) << loaded.message();
  EXPECT_TRUE(torch::equal(Param(fresh, "bert.encoder.layer.1.output.dense.weight"),
                           Param(source, "bert.encoder.layer.1.output.dense.weight")));
  EXPECT_TRUE(torch::equal(Param(fresh, "cls.predictions.transform.dense.weight"),
                           Param(reference, "cls.predictions.transform.dense.weight")));
}

TEST(InitFromTest, AnotherShapeOrAMissingDirectoryIsRefusedByName) {
  testing::TempDir tmp;
  BertConfig wide = testing::TinyConfig();
  wide.intermediate_size = 128;
  BertForPreTraining source(wide);
  WriteHf(source, tmp.path() + "/wide");
  BertForPreTraining model(testing::TinyConfig());
  Status refused = InitializeFromPretrained(tmp.path() + "/wide", &model);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("train.init_from: "), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("intermediate.dense.weight has shape [128, 32], the model needs [64, 32]"),
            std::string::npos)
      << refused.message();
  refused = InitializeFromPretrained(tmp.path() + "/none", &model);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.message().rfind("train.init_from: ", 0), 0u) << refused.message();
}

}  // namespace
}  // namespace bert
