// Pretraining recipes end to end (bert-coordinator and 2 real bert-workers):
// MLM-only packed runs train on full-length windows without the NSP loss and
// their ledger refuses another objective; SOP trains; train.init_from starts
// a run from another run's weights, and refuses a model trained with another
// vocabulary before any worker starts.
#include <gtest/gtest.h>

#include <cmath>

#include "integration/worker/pretrain_run.h"

namespace bert {
namespace {

using testing::Json;
using testing::ReadJsonLines;
using testing::WriteText;

class PretrainRecipeTest : public testing::PretrainRunTest {};

TEST_F(PretrainRecipeTest, PackedMlmTrainsOnFullWindowsWithoutTheNspLossAndKeepsItsObjective) {
  const std::string config =
      WriteRun("packed", testing::kMicroBatch, 6, 0, "  dropout: false\n", "  objective: mlm\n  packing: true\n");
  Finish(Start("packed", config, 2, Flags("packed")), "packed");
  const std::vector<Json> metrics = ReadJsonLines(work_ / "packed/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 6u);
  for (const Json& m : metrics) EXPECT_EQ(m["nsp_accuracy"].get<double>(), 0.0) << m.dump();
  // The samples it trained on: full 64-token windows of one segment (a
  // window one short is rare; the epoch's last is shorter).
  testing::CommandResult samples =
      testing::RunCommand(testing::Bertctl() + " samples --db " + Db() + " --seed " + std::to_string(testing::kSeed) +
                          " --count 192 --max-seq-len 64 --max-predictions 10 --objective mlm --packing --output " +
                          (work_ / "samples.jsonl"));
  ASSERT_EQ(samples.exit_code, 0) << samples.output;
  int full = 0, lines = 0;
  for (const Json& sample : ReadJsonLines(work_ / "samples.jsonl")) {
    const size_t length = sample["input_ids"].size();
    for (const Json& type : sample["token_type_ids"]) ASSERT_EQ(type.get<int>(), 0) << "one segment";
    full += length == 64;
    ++lines;
  }
  EXPECT_EQ(lines, 192);
  EXPECT_GE(full, 188);
  EXPECT_LT(metrics.back()["loss"].get<double>(), metrics.front()["loss"].get<double>());
  // The objective is part of the sample plan: a coordinator with another
  // one refuses the run's ledger, naming the key.
  const std::string other = WriteRun("packed-nsp", testing::kMicroBatch, 6, 0, "  dropout: false\n");
  Result<std::string> text = ReadFile(other);
  ASSERT_TRUE(text.ok());
  std::string yaml = *text;
  yaml.replace(yaml.find("name: packed-nsp"), 16, "name: packed");
  yaml.replace(yaml.find(work_ / "packed-nsp"), (work_ / "packed-nsp").size(), work_ / "packed");
  WriteText(other, yaml);
  testing::Subprocess coordinator({testing::Coordinator(), "--config", other, "--world-size", "2", "--bind", "tcp://127.0.0.1:*"},
                         work_ / "packed-nsp-coordinator.log");
  const std::optional<int> code = coordinator.Wait(30000);
  ASSERT_TRUE(code.has_value());
  EXPECT_NE(*code, 0);
  EXPECT_NE(ReadLog(coordinator).find("data.objective: \"mlm\" in the ledger, \"mlm_nsp\" now"), std::string::npos)
      << ReadLog(coordinator);
}

TEST_F(PretrainRecipeTest, SentenceOrderPredictionTrains) {
  Finish(Start("sop", WriteRun("sop", testing::kMicroBatch, 8, 0, "", "  objective: mlm_sop\n"), 2, Flags("sop")),
         "sop");
  const std::vector<Json> metrics = ReadJsonLines(work_ / "sop/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 8u);
  double sop = 0;
  for (const Json& m : metrics) sop += m["nsp_accuracy"].get<double>();
  // The label is scored (about half right at the start, not 0 as with mlm).
  EXPECT_GT(sop / 8, 0.3);
  EXPECT_LT(metrics.back()["loss"].get<double>(), metrics.front()["loss"].get<double>());
}

TEST_F(PretrainRecipeTest, InitFromStartsFromAnotherRunsWeightsAndRefusesAnotherVocabulary) {
  // Another init_seed than the runs below: what they start from is then
  // visibly init_from's or their own.
  const std::vector<float> base = Finish(
      Start("base", WriteRun("base", testing::kMicroBatch, 4, /*checkpoint_every=*/4, "  init_seed: 5\n"), 2,
            Flags("base")),
      "base");
  ASSERT_FALSE(base.empty());
  // 3 steps of AdamW at lr <= 0.002 move each weight by at most about 0.004.
  const std::string continued_config =
      WriteRun("continued", testing::kMicroBatch, 3, 0, "  init_from: " + (work_ / "base") + "\n");
  const std::vector<float> continued =
      Finish(Start("continued", continued_config, 2, Flags("continued")), "continued");
  const std::vector<float> fresh = Train("fresh", 2, testing::kMicroBatch, 3);
  ASSERT_EQ(continued.size(), base.size());
  ASSERT_EQ(fresh.size(), base.size());
  double from_base = 0, fresh_from_base = 0;
  for (size_t i = 0; i < base.size(); ++i) {
    from_base = std::max(from_base, static_cast<double>(std::fabs(continued[i] - base[i])));
    fresh_from_base = std::max(fresh_from_base, static_cast<double>(std::fabs(fresh[i] - base[i])));
  }
  EXPECT_LT(from_base, 0.005);
  EXPECT_GT(fresh_from_base, 0.05);
  Result<std::string> log = ReadFile(work_ / "continued-workers.log");
  ASSERT_TRUE(log.ok());
  EXPECT_NE(log->find("tensors from " + (work_ / "base/checkpoints/step-000004")), std::string::npos) << *log;

  // The same weights with another vocabulary (one token changed): refused
  // by the coordinator, naming the key, before any worker starts.
  const std::string hf = work_ / "base-hf";
  testing::CommandResult exported =
      testing::RunCommand(testing::Bertctl() + " export --checkpoint " + (work_ / "base") + " --output " + hf + " 2>&1");
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  Result<std::string> vocab = ReadFile(hf + "/vocab.txt");
  ASSERT_TRUE(vocab.ok());
  std::string changed = *vocab;
  const size_t last = changed.rfind('\n', changed.size() - 2);
  changed = changed.substr(0, last + 1) + "zzznotatoken\n";
  WriteText(hf + "/vocab.txt", changed);
  const std::string refused_config = WriteRun("refused", testing::kMicroBatch, 3, 0, "  init_from: " + hf + "\n");
  testing::Subprocess coordinator({testing::Coordinator(), "--config", refused_config, "--world-size", "2", "--bind",
                          "tcp://127.0.0.1:*"},
                         work_ / "refused-coordinator.log");
  const std::optional<int> code = coordinator.Wait(30000);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, kExitUsage);
  EXPECT_NE(ReadLog(coordinator).find("train.init_from: " + hf + " was trained with another vocabulary"),
            std::string::npos)
      << ReadLog(coordinator);
}

// A pre-LayerNorm model (configs/models/bert-tiny-pre-ln.json) pretrains,
// its checkpoint keeps the final LayerNorm, fill-mask
// runs it, and the HF export is refused in one line saying why.
TEST_F(PretrainRecipeTest, PreLayerNormTrainsRunsFillMaskAndIsRefusedForExport) {
  const std::string config = WriteRun("preln", testing::kMicroBatch, 12, 0, "  dropout: false\n");
  std::string yaml = *ReadFile(config);
  const size_t at = yaml.find("model: ");
  ASSERT_NE(at, std::string::npos);
  const size_t end = yaml.find('\n', at);
  Json model = Json::parse(*ReadFile(std::string(BERT_SOURCE_DIR) + "/configs/models/bert-tiny-pre-ln.json"));
  const std::string model_path = work_ / "tiny-pre-ln.json";
  WriteText(model_path, model.dump(2));
  yaml = yaml.substr(0, at) + "model: " + model_path + yaml.substr(end);
  WriteText(config, yaml);
  Finish(Start("preln", config, 2, Flags("preln")), "preln");
  const std::vector<Json> metrics = ReadJsonLines(work_ / "preln/metrics.jsonl");
  ASSERT_EQ(metrics.size(), 12u);
  EXPECT_LT(metrics.back()["loss"].get<double>(), metrics.front()["loss"].get<double>() - 0.3)
      << metrics.front().dump() << "\n" << metrics.back().dump();
  const Json manifest = Json::parse(*ReadFile(work_ / "preln/checkpoints/step-000012/manifest.json"));
  bool final_norm = false;
  for (const Json& tensor : manifest["layout"]) final_norm |= tensor["name"] == "bert.encoder.final_layer_norm.weight";
  EXPECT_TRUE(final_norm);

  testing::CommandResult filled = testing::RunCommand(testing::Bertctl() + " fill-mask --model " + (work_ / "preln") +
                                                      " --top-k 3 --json \"the [MASK] of the file\" 2>&1");
  ASSERT_EQ(filled.exit_code, 0) << filled.output;
  EXPECT_NE(filled.output.find("\"probability\""), std::string::npos) << filled.output;

  const std::string hf = work_ / "preln-hf";
  testing::CommandResult exported =
      testing::RunCommand(testing::Bertctl() + " export --checkpoint " + (work_ / "preln") + " --output " + hf + " 2>&1");
  EXPECT_EQ(exported.exit_code, 2) << exported.output;
  EXPECT_NE(exported.output.find("a pre-LayerNorm model (\"pre_layer_norm\": true) has no transformers equivalent"),
            std::string::npos)
      << exported.output;
  EXPECT_FALSE(testing::fs::exists(hf + "/config.json"));
}

}  // namespace
}  // namespace bert
