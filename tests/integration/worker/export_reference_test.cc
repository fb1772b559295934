// A pretraining checkpoint, exported with `bertctl export`, read by a second
// implementation: tests/reference/hf_bert_ref.py builds HuggingFace's
// BertForPreTraining in PyTorch (float64) from the exported directory's
// names and config alone, and must give the MLM and NSP logits that our
// model computes with the checkpoint's weights on the same batch (padding,
// both token types and masked positions in both rows included).
#include <gtest/gtest.h>

#include <algorithm>

#include "checkpoint/checkpoint.h"
#include "integration/worker/pretrain_run.h"
#include "worker/model/bert_heads.h"

namespace bert::testing {
namespace {

TEST_F(PretrainRunTest, AnExportedCheckpointGivesTheSameLogitsInAnIndependentHfBertForPreTraining) {
  constexpr uint64_t kSteps = 6;
  Train("ref", 1, kGlobalBatch, kSteps, /*checkpoint_every=*/kSteps);
  const std::string hf = work_ / "hf";
  CommandResult exported = RunCommand(Bertctl() + " export --checkpoint " + (work_ / "ref") + " --output " + hf);
  ASSERT_EQ(exported.exit_code, 0) << exported.output;

  // Our model with the checkpoint's parameters.
  CheckpointStore store(work_ / "ref");
  Result<LoadedCheckpoint> checkpoint = store.LoadLatest();
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
  Result<std::unique_ptr<BertForPreTraining>> model = BertForPreTraining::FromConfigFile(work_ / "tiny-no-dropout.json");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  FlatParameters& params = (*model)->parameters();
  ASSERT_TRUE(ReadRange(*checkpoint, "params", 0, static_cast<uint64_t>(params.numel()),
                        params.values().data_ptr<float>())
                  .ok());

  // Two rows of 16; the second has 11 real tokens and 5 of padding.
  constexpr int64_t kRows = 2, kLen = 16;
  const int64_t vocab = (*model)->config().vocab_size;
  std::vector<int64_t> ids(kRows * kLen, 0), types(kRows * kLen, 0);
  const std::vector<int64_t> lengths = {kLen, 11};
  for (int64_t b = 0; b < kRows; ++b) {
    for (int64_t t = 0; t < lengths[b]; ++t) {
      ids[b * kLen + t] = t == 0 ? 101 : 1000 + (b * 7919 + t * 104729) % (vocab - 1000);  // [CLS], then words
      types[b * kLen + t] = t >= lengths[b] / 2 ? 1 : 0;
    }
  }
  const std::vector<int64_t> masked = {1, 6, 12, kLen + 2, kLen + 9};
  PretrainBatch batch;
  batch.input_ids = torch::tensor(ids).view({kRows, kLen});
  batch.token_type_ids = torch::tensor(types).view({kRows, kLen});
  batch.lengths = torch::tensor(lengths);
  batch.masked_positions = torch::tensor(masked);
  batch.masked_labels = torch::zeros({static_cast<int64_t>(masked.size())}, torch::kInt64);
  batch.nsp_labels = torch::zeros({kRows}, torch::kInt64);
  torch::NoGradGuard no_grad;
  BertForPreTraining::Output output = (*model)->Forward(batch, /*training=*/false);
  const torch::Tensor mlm = (*model)->MlmLogits(output).contiguous();
  const torch::Tensor nsp = output.nsp_logits.contiguous();
  ASSERT_EQ(mlm.size(0), static_cast<int64_t>(masked.size()));
  ASSERT_EQ(mlm.size(1), vocab);

  auto rows = [](const torch::Tensor& t) {
    Json out = Json::array();
    for (int64_t i = 0; i < t.size(0); ++i) {
      const float* row = t[i].data_ptr<float>();
      out.push_back(std::vector<float>(row, row + t.size(1)));
    }
    return out;
  };
  Json case_json = {{"input_ids", Json::array()}, {"token_type_ids", Json::array()}, {"lengths", lengths},
                    {"masked_positions", masked}, {"mlm_logits", rows(mlm)},     {"nsp_logits", rows(nsp)}};
  for (int64_t b = 0; b < kRows; ++b) {
    case_json["input_ids"].push_back(std::vector<int64_t>(ids.begin() + b * kLen, ids.begin() + (b + 1) * kLen));
    case_json["token_type_ids"].push_back(
        std::vector<int64_t>(types.begin() + b * kLen, types.begin() + (b + 1) * kLen));
  }
  WriteText(work_ / "case.json", case_json.dump());
  // transformers' own BertForPreTraining.from_pretrained (no missing or
  // unexpected weights), then the independent float64 reading of modeling_bert.
  for (const char* oracle : {"transformers_oracle", "hf_bert_ref"}) {
    CommandResult reference = RunCommand(std::string(BERT_PYTHON) + " " + std::string(BERT_SOURCE_DIR) +
                                         "/tests/reference/" + oracle + ".py " + hf + " --pretraining " +
                                         (work_ / "case.json"));
    ASSERT_EQ(reference.exit_code, 0) << oracle << ": " << reference.output;
    const Json result = Json::parse(reference.output.substr(reference.output.rfind('{')));
    std::printf("%s (BertForPreTraining): MLM logits max |diff| %.2e (largest |logit| %.1f), NSP %.2e\n", oracle,
                result["mlm_max_diff"].get<double>(), result["mlm_max_abs"].get<double>(),
                result["nsp_max_diff"].get<double>());
    EXPECT_GT(result["mlm_max_abs"].get<double>(), 1.0) << "the logits are not trivially small";
    EXPECT_LT(result["mlm_max_diff"].get<double>(), 1e-4) << oracle;
    EXPECT_LT(result["nsp_max_diff"].get<double>(), 1e-4) << oracle;
  }
}

}  // namespace
}  // namespace bert::testing
