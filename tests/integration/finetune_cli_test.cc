// bertctl finetune / eval / predict without a trained model: every bad input
// fails fast with a one-line error naming the file, key or label, exits 2
// (bad flag, config, init, vocabulary, output) or 7 (bad data), and leaves no
// finetune.yaml behind. A stand-in bert-worker (a shell script, via
// $BERT_WORKER_BIN) checks the process contract: the resolved config handed
// to --finetune, metrics.json printed, --predict output scored by eval.
// The end-to-end fine-tuning tests with the real worker live in
// tests/integration/worker/.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "test_util.h"

namespace bert {
namespace {

using testing::ErrorLines;

using testing::CommandResult;
using testing::RunCommand;
using testing::TempDir;
using testing::WriteText;

namespace fs = std::filesystem;


// A minimal HuggingFace BERT directory (1 layer, hidden 4) whose vocabulary
// is `tokens`; the weights are zeros (only headers are read here).
void WriteHfInit(const std::string& dir, const std::vector<std::string>& tokens) {
  fs::create_directories(dir);
  const int64_t h = 4, inter = 8, vocab = static_cast<int64_t>(tokens.size()), positions = 16;
  std::map<std::string, std::vector<int64_t>> shapes = {
      {"bert.embeddings.word_embeddings.weight", {vocab, h}},
      {"bert.embeddings.position_embeddings.weight", {positions, h}},
      {"bert.embeddings.token_type_embeddings.weight", {2, h}},
      {"bert.embeddings.LayerNorm.weight", {h}},
      {"bert.embeddings.LayerNorm.bias", {h}},
  };
  const std::string layer = "bert.encoder.layer.0.";
  for (const char* part : {"query", "key", "value"}) {
    shapes[layer + "attention.self." + part + ".weight"] = {h, h};
    shapes[layer + "attention.self." + part + ".bias"] = {h};
  }
  shapes[layer + "attention.output.dense.weight"] = {h, h};
  shapes[layer + "attention.output.dense.bias"] = {h};
  shapes[layer + "attention.output.LayerNorm.weight"] = {h};
  shapes[layer + "attention.output.LayerNorm.bias"] = {h};
  shapes[layer + "intermediate.dense.weight"] = {inter, h};
  shapes[layer + "intermediate.dense.bias"] = {inter};
  shapes[layer + "output.dense.weight"] = {h, inter};
  shapes[layer + "output.dense.bias"] = {h};
  shapes[layer + "output.LayerNorm.weight"] = {h};
  shapes[layer + "output.LayerNorm.bias"] = {h};
  std::string header = "{";
  uint64_t offset = 0;
  for (const auto& [name, shape] : shapes) {
    uint64_t numel = 1;
    std::string dims;
    for (int64_t d : shape) {
      numel *= static_cast<uint64_t>(d);
      dims += (dims.empty() ? "" : ",") + std::to_string(d);
    }
    header += (offset == 0 ? "\"" : ",\"") + name + "\":{\"dtype\":\"F32\",\"shape\":[" + dims +
              "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + 4 * numel) + "]}";
    offset += 4 * numel;
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';
  std::ofstream out(dir + "/model.safetensors", std::ios::binary);
  const uint64_t header_bytes = header.size();
  out.write(reinterpret_cast<const char*>(&header_bytes), 8);
  out << header << std::string(offset, '\0');
  out.close();
  std::string vocab_text;
  for (const std::string& token : tokens) vocab_text += token + "\n";
  WriteText(dir + "/vocab.txt", vocab_text);
  WriteText(dir + "/config.json",
            "{\"architectures\": [\"BertModel\"], \"model_type\": \"bert\", \"hidden_size\": 4, "
            "\"num_hidden_layers\": 1, \"num_attention_heads\": 1, \"intermediate_size\": 8, "
            "\"max_position_embeddings\": 16, \"type_vocab_size\": 2, \"vocab_size\": " +
                std::to_string(vocab) + ", \"hidden_act\": \"gelu\", \"layer_norm_eps\": 1e-12}\n");
}

class FinetuneCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteText(dir_ / "train.jsonl",
              "{\"text\": \"the match ended in a draw\", \"label\": \"sports\"}\n"
              "{\"text\": \"parliament passed the bill\", \"label\": \"politics\"}\n"
              "{\"text\": \"a late goal won the cup\", \"label\": \"sports\"}\n");
    WriteText(dir_ / "dev.jsonl",
              "{\"text\": \"the senate votes today\", \"label\": \"politics\"}\n"
              "{\"text\": \"the team trains hard\", \"label\": \"sport\"}\n");
  }
  // bertctl finetune with the standard files, `extra` flags appended.
  CommandResult Finetune(const std::string& extra, const std::string& env = "") {
    return RunCommand(env + " " + testing::Bertctl() + " finetune --init none --vocab " + testing::UncasedVocab() +
                      " --train " + (dir_ / "train.jsonl") + " --dev " + (dir_ / "dev.jsonl") + " --output " +
                      (dir_ / "out") + " " + extra);
  }
  // Expects exit `code`, exactly one error line, containing `needle`, and no finetune.yaml.
  void ExpectFailure(const CommandResult& r, int code, const std::string& needle) {
    EXPECT_EQ(r.exit_code, code) << r.output;
    const std::vector<std::string> errors = ErrorLines(r.output);
    ASSERT_EQ(errors.size(), 1u) << r.output;
    EXPECT_NE(errors[0].find(needle), std::string::npos) << errors[0];
    EXPECT_FALSE(fs::exists(dir_ / "out/finetune.yaml"));
  }
  void FixDevLabel() {
    WriteText(dir_ / "dev.jsonl", "{\"text\": \"the senate votes today\", \"label\": \"politics\"}\n");
  }
  TempDir dir_;
};

TEST_F(FinetuneCliTest, UnknownDevLabelIsNamedWithFileAndLine) {
  ExpectFailure(Finetune(""), 7,
                dir_ / "dev.jsonl:2: unknown label \"sport\" (the training data has: politics, sports)");
}

TEST_F(FinetuneCliTest, BadConfigKeyNamesFileAndKey) {
  FixDevLabel();
  WriteText(dir_ / "ft.yaml", "train:\n  learning_rate: 0.1\n");
  ExpectFailure(Finetune("--config " + (dir_ / "ft.yaml")), 2,
                dir_ / "ft.yaml: train.learning_rate: is not a known key");
  WriteText(dir_ / "ft.yaml", "loss:\n  type: hinge\n");
  ExpectFailure(Finetune("--config " + (dir_ / "ft.yaml")), 2,
                dir_ / "ft.yaml: loss.type: must be cross_entropy or focal, got hinge");
  ExpectFailure(Finetune("--lr -1"), 2, "train.lr: must be in (0, 1), got -1");
}

TEST_F(FinetuneCliTest, MissingTrainFileIsNamed) {
  FixDevLabel();
  fs::remove(dir_ / "train.jsonl");
  ExpectFailure(Finetune(""), 2, "data.train: no such file " + (dir_ / "train.jsonl"));
}

TEST_F(FinetuneCliTest, BadTrainingDataIsNamed) {
  FixDevLabel();
  WriteText(dir_ / "train.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"\", \"label\": \"y\"}\n");
  ExpectFailure(Finetune(""), 7, dir_ / "train.jsonl:2: field \"text\" is empty");
  WriteText(dir_ / "train.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \"x\"}\n");
  ExpectFailure(Finetune(""), 7, "needs at least 2 distinct labels, found only \"x\"");
}

TEST_F(FinetuneCliTest, WrongVocabularyForTheInitIsRefused) {
  FixDevLabel();
  WriteHfInit(dir_ / "init", {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a"});
  const std::string init = dir_ / "init";
  CommandResult r = RunCommand(testing::Bertctl() + " finetune --init " + init + " --vocab " +
                               testing::UncasedVocab() + " --train " + (dir_ / "train.jsonl") + " --dev " +
                               (dir_ / "dev.jsonl") + " --output " + (dir_ / "out"));
  ExpectFailure(r, 2, "is not the vocabulary of init " + init);
  // Without --vocab the init's own vocabulary is used: validation passes
  // and bertctl goes on to start the worker (a stand-in that exits 2 here).
  WriteText(dir_ / "fake-worker", "#!/bin/sh\nexit 2\n");
  ::chmod((dir_ / "fake-worker").c_str(), 0755);
  r = RunCommand("BERT_WORKER_BIN=" + (dir_ / "fake-worker") + " " + testing::Bertctl() + " finetune --init " + init +
                 " --train " + (dir_ / "train.jsonl") + " --dev " + (dir_ / "dev.jsonl") + " --output " +
                 (dir_ / "out") + " --max-seq-len 16");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(fs::exists(dir_ / "out/finetune.yaml")) << r.output;
  // The model's position table bounds max_seq_len.
  r = RunCommand(testing::Bertctl() + " finetune --init " + init + " --train " + (dir_ / "train.jsonl") + " --dev " +
                 (dir_ / "dev.jsonl") + " --output " + (dir_ / "out2") + " --max-seq-len 64");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("exceeds the model's max_position_embeddings 16"), std::string::npos) << r.output;
}

TEST_F(FinetuneCliTest, OutputHoldingAFinishedModelNeedsOverwrite) {
  FixDevLabel();
  fs::create_directories(dir_ / "out");
  WriteText(dir_ / "out/config.json", "{}");
  WriteText(dir_ / "out/metrics.json", "{}");
  ExpectFailure(Finetune(""), 2, "already holds a fine-tuned model");
  EXPECT_TRUE(fs::exists(dir_ / "out/metrics.json"));  // untouched
}

// The stand-in worker checks the resolved config it is given and writes
// metrics.json; bertctl prints the tables from it.
TEST_F(FinetuneCliTest, WorkerGetsTheResolvedConfigAndMetricsArePrinted) {
  FixDevLabel();
  fs::create_directories(dir_ / "out");
  WriteText(dir_ / "out/config.json", "{}");  // an old finished model, replaced with --overwrite
  WriteText(dir_ / "out/metrics.json", "{}");
  const std::string metrics =
      "{\"count\": 2, \"accuracy\": 0.5, \"macro_f1\": 0.3333, \"loss\": 0.7, \"labels\": [\"politics\", \"sports\"],"
      " \"per_class\": [{\"label\": \"politics\", \"precision\": 0.5, \"recall\": 1.0, \"f1\": 0.6667, \"support\": 1},"
      " {\"label\": \"sports\", \"precision\": 0.0, \"recall\": 0.0, \"f1\": 0.0, \"support\": 1}],"
      " \"confusion_matrix\": [[1, 0], [1, 0]]}";
  WriteText(dir_ / "metrics-fixture.json", "{\"dev\": " + metrics + ", \"best_step\": 3, \"best_epoch\": 1}\n");
  WriteText(dir_ / "fake-worker",
            "#!/bin/sh\n"
            "[ \"$1\" = --finetune ] || exit 9\n"
            "out=$(dirname \"$2\")\n"
            "grep -q 'labels: \\[\"politics\", \"sports\"\\]' \"$2\" || exit 8\n"
            "[ -e \"$out/metrics.json\" ] && exit 10\n"
            "echo 'worker: step 3 examples/s 100 ETA 0s'\n"
            "cp " + (dir_ / "metrics-fixture.json") + " \"$out/metrics.json\"\n");
  ::chmod((dir_ / "fake-worker").c_str(), 0755);
  CommandResult r = Finetune("--overwrite --epochs 1", "BERT_WORKER_BIN=" + (dir_ / "fake-worker"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("worker: step 3 examples/s 100"), std::string::npos) << r.output;  // streamed
  EXPECT_NE(r.output.find("dev (best model: step 3, epoch 1)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("politics        0.5000    1.0000    0.6667         1"), std::string::npos) << r.output;
  std::ifstream yaml(dir_ / "out/finetune.yaml");
  std::stringstream text;
  text << yaml.rdbuf();
  EXPECT_NE(text.str().find("epochs: 1"), std::string::npos);
  EXPECT_NE(text.str().find("train: \"" + (dir_ / "train.jsonl") + "\""), std::string::npos) << text.str();
}

// eval: labels checked against the model's id2label before any work, then
// the worker's --predict output is scored.
TEST_F(FinetuneCliTest, EvalChecksLabelsAndScoresPredictions) {
  fs::create_directories(dir_ / "model");
  WriteText(dir_ / "model/config.json", "{\"id2label\": {\"0\": \"politics\", \"1\": \"sports\"}}\n");
  CommandResult r = RunCommand(testing::Bertctl() + " eval --model " + (dir_ / "model") + " --data " +
                               (dir_ / "dev.jsonl"));
  EXPECT_EQ(r.exit_code, 7) << r.output;
  ASSERT_EQ(ErrorLines(r.output).size(), 1u) << r.output;
  EXPECT_NE(r.output.find("dev.jsonl:2: unknown label \"sport\""), std::string::npos) << r.output;

  FixDevLabel();
  WriteText(dir_ / "dev.jsonl", "{\"text\": \"senate\", \"label\": \"politics\"}\n"
                                "{\"text\": \"goal\", \"label\": \"sports\"}\n");
  WriteText(dir_ / "fake-worker",
            "#!/bin/sh\n"
            "[ \"$1\" = --predict ] || exit 9\n"
            "while [ $# -gt 0 ]; do [ \"$1\" = --output ] && out=$2; shift; done\n"
            "printf '{\"label\": \"politics\", \"probabilities\": {\"politics\": 0.9, \"sports\": 0.1}}\\n"
            "{\"label\": \"politics\", \"probabilities\": {\"politics\": 0.6, \"sports\": 0.4}}\\n' > \"$out\"\n");
  ::chmod((dir_ / "fake-worker").c_str(), 0755);
  r = RunCommand("BERT_WORKER_BIN=" + (dir_ / "fake-worker") + " " + testing::Bertctl() + " eval --model " +
                 (dir_ / "model") + " --data " + (dir_ / "dev.jsonl") + " --output " + (dir_ / "m.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("accuracy                            0.5000         2"), std::string::npos) << r.output;
  std::ifstream in(dir_ / "m.json");
  std::stringstream json;
  json << in.rdbuf();
  EXPECT_NE(json.str().find("\"accuracy\": 0.5"), std::string::npos) << json.str();
  EXPECT_NE(json.str().find("\"confusion_matrix\""), std::string::npos);
}

}  // namespace
}  // namespace bert
