// bertctl quantize, then bertctl predict and eval on the int8 model, with the
// real bert-worker: a bert-tiny fine-tuned for a few epochs on the fortunes
// fixture (tests/fixtures/classification/, 3 topics, 240 train / 60 test),
// quantized dynamically and statically (calibrated on the training texts).
// The int8 models must label the test texts as the fp32 model does on at
// least 90% of them (measured 60 of 60 here) with every probability within
// 0.10 of fp32's (measured 0.010 dynamic, 0.014 static), and eval's macro-F1
// within 0.05 of fp32's (measured equal: 0.644). Bad input exits 2 or 7 with one line naming it, and
// no output directory appears unless quantize finished.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>

#include "common/file_util.h"
#include "finetune/finetune_config.h"
#include "test_util.h"

namespace bert {
namespace {

using testing::ErrorLines;

namespace fs = std::filesystem;

std::string Fixture(const std::string& split) {
  return std::string(BERT_FIXTURE_DIR) + "/classification/fortunes_" + split + ".jsonl";
}
std::string Worker() { return std::string(BERT_BIN_DIR) + "/bert-worker"; }

std::vector<nlohmann::json> ReadJsonLines(const std::string& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}


class QuantizeCliTest : public ::testing::Test {
 protected:
  // One fine-tuned fp32 model and its two int8 copies, shared by the tests.
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    nlohmann::json tiny =
        nlohmann::json::parse(*ReadFile(std::string(BERT_SOURCE_DIR) + "/configs/models/bert-tiny.json"));
    testing::WriteText(*dir_ / "tiny.json", tiny.dump());
    finetune::FinetuneConfig config;
    config.init = "none";
    config.model = *dir_ / "tiny.json";
    config.vocab = testing::UncasedVocab();
    config.output = Fp32();
    config.train_file = Fixture("train");
    config.dev_file = Fixture("dev");
    config.labels = {"computers", "food", "love"};
    config.max_seq_len = 48;
    config.batch_size = 16;
    config.lr = 1e-3;
    config.epochs = 8;
    config.warmup_ratio = 0.1;
    config.intra_op_threads = 1;
    testing::WriteText(*dir_ / "finetune.yaml", finetune::FinetuneConfigToYaml(config));
    finetune_ = new testing::CommandResult(testing::RunCommand(Worker() + " --finetune " + (*dir_ / "finetune.yaml")));
    dynamic_ = new testing::CommandResult(Quantize(Fp32(), Dynamic(), ""));
    static_ = new testing::CommandResult(Quantize(Fp32(), Static(), "--calibration " + Fixture("train")));
  }
  static void TearDownTestSuite() {
    delete finetune_;
    delete dynamic_;
    delete static_;
    delete dir_;
  }
  static testing::CommandResult Quantize(const std::string& model, const std::string& output,
                                         const std::string& extra) {
    return testing::RunCommand(testing::Bertctl() + " quantize --model " + model + " --output " + output + " " + extra);
  }
  static std::string Fp32() { return *dir_ / "fp32"; }
  static std::string Dynamic() { return *dir_ / "int8-dynamic"; }
  static std::string Static() { return *dir_ / "int8-static"; }

  void ExpectFailure(const testing::CommandResult& r, int code, const std::vector<std::string>& needles) {
    EXPECT_EQ(r.exit_code, code) << r.output;
    const std::vector<std::string> errors = ErrorLines(r.output);
    ASSERT_EQ(errors.size(), 1u) << r.output;
    for (const std::string& needle : needles) EXPECT_NE(errors[0].find(needle), std::string::npos) << errors[0];
  }
  void ExpectQuantized() {
    ASSERT_EQ(finetune_->exit_code, 0) << finetune_->output;
    ASSERT_EQ(dynamic_->exit_code, 0) << dynamic_->output;
    ASSERT_EQ(static_->exit_code, 0) << static_->output;
  }
  // bertctl predict on the test file; returns the predictions.
  std::vector<nlohmann::json> Predict(const std::string& model, const std::string& name) {
    const testing::CommandResult r = testing::RunCommand(testing::Bertctl() + " predict --model " + model +
                                                         " --input " + Fixture("test") + " --output " + (*dir_ / name));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return ReadJsonLines(*dir_ / name);
  }
  double MacroF1(const std::string& model, const std::string& name) {
    const testing::CommandResult r = testing::RunCommand(testing::Bertctl() + " eval --model " + model + " --data " +
                                                         Fixture("test") + " --output " + (*dir_ / name));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    Result<std::string> text = ReadFile(*dir_ / name);
    if (!text.ok()) return -1;
    return nlohmann::json::parse(*text)["macro_f1"].get<double>();
  }

  static testing::TempDir* dir_;
  static testing::CommandResult *finetune_, *dynamic_, *static_;
};
testing::TempDir* QuantizeCliTest::dir_ = nullptr;
testing::CommandResult* QuantizeCliTest::finetune_ = nullptr;
testing::CommandResult* QuantizeCliTest::dynamic_ = nullptr;
testing::CommandResult* QuantizeCliTest::static_ = nullptr;

TEST_F(QuantizeCliTest, Int8PredictionsFollowFp32AndEvalScoresThem) {
  ExpectQuantized();
  EXPECT_NE(static_->output.find("labels agree"), std::string::npos) << static_->output;
  const std::vector<nlohmann::json> fp32 = Predict(Fp32(), "fp32.jsonl");
  ASSERT_EQ(fp32.size(), 60u);
  for (const auto& [model, name] : {std::pair{Dynamic(), "dynamic"}, std::pair{Static(), "static"}}) {
    const std::vector<nlohmann::json> int8 = Predict(model, std::string(name) + ".jsonl");
    ASSERT_EQ(int8.size(), fp32.size()) << name;
    int agree = 0;
    double max_diff = 0;
    for (size_t i = 0; i < fp32.size(); ++i) {
      agree += int8[i]["label"] == fp32[i]["label"];
      for (const auto& [label, p] : fp32[i]["probabilities"].items()) {
        max_diff = std::max(max_diff, std::abs(p.get<double>() - int8[i]["probabilities"][label].get<double>()));
      }
    }
    std::printf("%s int8: labels agree with fp32 on %d of 60, largest probability difference %.2e\n", name, agree,
                max_diff);
    EXPECT_GE(agree, 54) << name;  // 90%
    EXPECT_LT(max_diff, 0.10) << name;
    EXPECT_GT(max_diff, 0.0) << name;  // it really is another model
  }
  const double f1_fp32 = MacroF1(Fp32(), "fp32-metrics.json");
  const double f1_dynamic = MacroF1(Dynamic(), "dynamic-metrics.json");
  const double f1_static = MacroF1(Static(), "static-metrics.json");
  std::printf("test macro-F1: fp32 %.4f, int8 dynamic %.4f, int8 static %.4f\n", f1_fp32, f1_dynamic, f1_static);
  EXPECT_GT(f1_fp32, 0.4);  // learned something (chance is 1/3)
  EXPECT_NEAR(f1_dynamic, f1_fp32, 0.05);
  EXPECT_NEAR(f1_static, f1_fp32, 0.05);
}

// An independent reader of the format (tests/reference/int8_oracle.py:
// safetensors + transformers, weights dequantized, each Linear's input
// fake-quantized as docs/compression.md says) scores the test file as
// predict does. The arithmetic is the format's, so the two agree far closer
// than int8 and fp32 do: measured 5e-8 (static and dynamic, the same batches
// of 64) against int8's 0.010-0.014 from fp32 here. The bound, 0.005, leaves
// room for an activation that lands on a rounding boundary in one of them
// (seen on a 6-topic model: 0.004 static, 0.015 dynamic) and still fails an
// oracle or a predict that skipped the quantization.
TEST_F(QuantizeCliTest, AnIndependentReaderOfTheFormatScoresLikePredict) {
  ExpectQuantized();
  for (const auto& [model, name, tolerance] :
       {std::tuple{Static(), "static", 0.005}, std::tuple{Dynamic(), "dynamic", 0.005}}) {
    const std::vector<nlohmann::json> ours = Predict(model, std::string(name) + "-ours.jsonl");
    const std::string oracle_path = *dir_ / (std::string(name) + "-oracle.jsonl");
    const testing::CommandResult oracle = testing::RunCommand(
        std::string(BERT_PYTHON) + " " + BERT_SOURCE_DIR + "/tests/reference/int8_oracle.py " + model + " " +
        Fixture("test") + " --batch-size 64 > " + oracle_path);
    ASSERT_EQ(oracle.exit_code, 0) << oracle.output;
    const std::vector<nlohmann::json> theirs = ReadJsonLines(oracle_path);
    ASSERT_EQ(theirs.size(), ours.size());
    int agree = 0;
    double max_diff = 0;
    for (size_t i = 0; i < ours.size(); ++i) {
      agree += ours[i]["label"] == theirs[i]["label"];
      for (const auto& [label, p] : theirs[i]["probabilities"].items()) {
        max_diff = std::max(max_diff, std::abs(p.get<double>() - ours[i]["probabilities"][label].get<double>()));
      }
    }
    std::printf("%s: the int8 oracle agrees on %d of %zu labels, largest probability difference %.2e\n", name, agree,
                ours.size(), max_diff);
    EXPECT_GE(agree, static_cast<int>(ours.size()) - 1) << name;
    EXPECT_LT(max_diff, tolerance) << name;
  }
}

TEST_F(QuantizeCliTest, TheDirectoryIsTheDocumentedFormat) {
  ExpectQuantized();
  for (const std::string& dir : {Dynamic(), Static()}) {
    EXPECT_FALSE(fs::exists(dir + "/model.safetensors")) << dir;
    EXPECT_TRUE(fs::exists(dir + "/model.int8.safetensors")) << dir;
    EXPECT_TRUE(fs::exists(dir + "/vocab.txt")) << dir;
    EXPECT_TRUE(fs::exists(dir + "/tokenizer_config.json")) << dir;
  }
  const nlohmann::json config = nlohmann::json::parse(*ReadFile(Static() + "/config.json"));
  EXPECT_EQ(config["quantization"]["activations"], "static");
  EXPECT_EQ(config["quantization"]["calibration"]["examples"], 240);
  EXPECT_EQ(config["quantization"]["calibration"]["file"], Fixture("train"));
  EXPECT_EQ(nlohmann::json::parse(*ReadFile(Dynamic() + "/config.json"))["quantization"]["activations"], "dynamic");
  // int8 is about a quarter of fp32 for the Linears; bert-tiny is mostly embeddings (30522 x 128 fp32).
  EXPECT_LT(fs::file_size(Dynamic() + "/model.int8.safetensors"), fs::file_size(Fp32() + "/model.safetensors"));
  for (const auto& entry : fs::directory_iterator(dir_->path())) {
    EXPECT_EQ(entry.path().filename().string().find(".partial"), std::string::npos) << entry.path();
  }
}

TEST_F(QuantizeCliTest, BadInputExitsTwoOrSevenWithOneLineNamingIt) {
  ExpectQuantized();
  ExpectFailure(Quantize(*dir_ / "nowhere", *dir_ / "o1", ""), 2, {"--model", "nowhere"});
  // A directory that is not a classifier: the fp32 model without id2label.
  fs::create_directories(*dir_ / "not-classifier");
  for (const char* file : {"model.safetensors", "vocab.txt", "tokenizer_config.json"}) {
    fs::copy_file(Fp32() + "/" + file, *dir_ / ("not-classifier/" + std::string(file)));
  }
  nlohmann::json config = nlohmann::json::parse(*ReadFile(Fp32() + "/config.json"));
  config.erase("id2label");
  config.erase("label2id");
  config["num_labels"] = 3;  // the classifier tensors keep their shape
  testing::WriteText(*dir_ / "not-classifier/config.json", config.dump());
  ExpectFailure(Quantize(*dir_ / "not-classifier", *dir_ / "o2", ""), 2, {"not-classifier", "id2label"});
  // A bad calibration file: named with its line; a missing one: named.
  testing::WriteText(*dir_ / "bad.jsonl", "{\"text\": \"fine\"}\n{\"txt\": \"no text field\"}\n");
  ExpectFailure(Quantize(Fp32(), *dir_ / "o3", "--calibration " + (*dir_ / "bad.jsonl")), 7, {"bad.jsonl:2"});
  ExpectFailure(Quantize(Fp32(), *dir_ / "o4", "--calibration " + (*dir_ / "none.jsonl")), 2, {"none.jsonl"});
  // An int8 model is not quantized again; a non-empty output needs --overwrite.
  ExpectFailure(Quantize(Dynamic(), *dir_ / "o5", ""), 2, {"already an int8 model"});
  ExpectFailure(Quantize(Fp32(), Dynamic(), ""), 2, {"--output", "--overwrite"});
  // The worker refuses what bertctl cannot check (max_position_embeddings 512): no output appears.
  ExpectFailure(Quantize(Fp32(), *dir_ / "o6", "--calibration " + Fixture("dev") + " --max-seq-len 1000"), 2,
                {"--max-seq-len", "max_position_embeddings"});
  for (const char* name : {"o1", "o2", "o3", "o4", "o5", "o6"}) EXPECT_FALSE(fs::exists(*dir_ / name)) << name;
  for (const auto& entry : fs::directory_iterator(dir_->path())) {
    EXPECT_EQ(entry.path().filename().string().find(".partial"), std::string::npos) << entry.path();
  }
}

TEST_F(QuantizeCliTest, OverwriteReplacesAndExportRefusesInt8) {
  ExpectQuantized();
  const std::string out = *dir_ / "replaced";
  ASSERT_EQ(Quantize(Fp32(), out, "").exit_code, 0);
  const testing::CommandResult again =
      Quantize(Fp32(), out, "--overwrite --calibration " + Fixture("dev") + " --calibration-samples 20");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  const nlohmann::json config = nlohmann::json::parse(*ReadFile(out + "/config.json"));
  EXPECT_EQ(config["quantization"]["activations"], "static");
  EXPECT_EQ(config["quantization"]["calibration"]["examples"], 20);
  ExpectFailure(testing::RunCommand(testing::Bertctl() + " export --checkpoint " + Dynamic() + " --output " +
                                    (*dir_ / "hf")),
                2, {"int8", "--format onnx"});
  EXPECT_FALSE(fs::exists(*dir_ / "hf"));
  // A broken int8 directory: predict names the tensor.
  const std::string broken = *dir_ / "broken";
  fs::copy(Static(), broken);
  nlohmann::json bad = nlohmann::json::parse(*ReadFile(broken + "/config.json"));
  bad["quantization"]["version"] = 9;
  testing::WriteText(broken + "/config.json", bad.dump());
  ExpectFailure(testing::RunCommand(testing::Bertctl() + " predict --model " + broken + " --input " + Fixture("test") +
                                    " --output " + (*dir_ / "broken.jsonl")),
                2, {"config.json", "quantization.version: 9"});
}

}  // namespace
}  // namespace bert
