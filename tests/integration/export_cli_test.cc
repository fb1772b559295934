// `bertctl export` end to end: a synthetic pretraining run (written with the
// checkpoint library) exported as an HF directory, read back bit for bit,
// re-exported from the HF directory byte for byte, and the refusals a user
// meets (non-empty output, missing input). --format onnx: a tiny classifier
// (fp32 and int8 directories) exported and, fp32, run in onnxruntime against
// the float64 HF reference; its refusals (unknown format, pretraining
// checkpoints, broken int8 directories).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/file_util.h"
#include "interop/pretrained.h"
#include "test_util.h"
#include "unit/interop/tiny_checkpoint.h"
#include "unit/interop/tiny_classifier.h"

namespace bert {
namespace {

using testing::ErrorLines;

using testing::RunCommand;
using testing::TempDir;

std::string Export(const std::string& from, const std::string& to, const std::string& extra = "") {
  return testing::Bertctl() + " export --checkpoint " + from + " --output " + to + extra;
}

TEST(ExportCli, ExportsARunAndReportsWhatItWrote) {
  TempDir dir;
  const testing::TinyRun run = testing::WriteTinyRun(dir / "run");
  const std::string out = dir / "hf";
  testing::CommandResult result = RunCommand(Export(run.run_dir, out));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  uint64_t parameters = 0;
  for (const NamedTensor& tensor : run.tensors) parameters += tensor.values.size();
  const uint64_t bytes = std::filesystem::file_size(out + "/model.safetensors");
  EXPECT_NE(result.output.find("read checkpoint " + run.checkpoint_dir), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("wrote " + out + ": BertForPreTraining, " + std::to_string(run.tensors.size()) +
                               " tensors, " + std::to_string(parameters) + " parameters, model.safetensors " +
                               std::to_string(bytes) + " bytes, vocab.txt 24 tokens"),
            std::string::npos)
      << result.output;

  Result<PretrainedModel> model = LoadPretrained(out, true);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_TRUE(testing::SameTensors(model->tensors, run.tensors));

  // The independent reader accepts the file.
  testing::CommandResult reference = RunCommand("python3 " + std::string(BERT_SOURCE_DIR) +
                                                "/tests/reference/safetensors_ref.py " + out + "/model.safetensors");
  EXPECT_EQ(reference.exit_code, 0) << reference.output;
  EXPECT_NE(reference.output.find("cls.predictions.decoder.weight\tF32\t24,8"), std::string::npos)
      << reference.output;

  // HF directory in, HF directory out: the same bytes.
  const std::string again = dir / "hf2";
  result = RunCommand(Export(out, again));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(*ReadFile(out + "/model.safetensors"), *ReadFile(again + "/model.safetensors"));
  EXPECT_EQ(*ReadFile(out + "/vocab.txt"), *ReadFile(again + "/vocab.txt"));
}

TEST(ExportCli, RefusesANonEmptyOutputUnlessOverwrite) {
  TempDir dir;
  const testing::TinyRun run = testing::WriteTinyRun(dir / "run");
  const std::string out = dir / "hf";
  std::filesystem::create_directories(out);
  testing::WriteText(out + "/notes.txt", "keep me");
  testing::CommandResult refused = RunCommand(Export(run.run_dir, out));
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_NE(refused.output.find("--output " + out + ": exists and is not empty (pass --overwrite"),
            std::string::npos)
      << refused.output;
  EXPECT_FALSE(std::filesystem::exists(out + "/model.safetensors"));

  testing::CommandResult replaced = RunCommand(Export(run.run_dir, out, " --overwrite"));
  EXPECT_EQ(replaced.exit_code, 0) << replaced.output;
  EXPECT_TRUE(std::filesystem::exists(out + "/config.json"));
  EXPECT_EQ(*ReadFile(out + "/notes.txt"), "keep me");
}

TEST(ExportCli, BadInputsGiveOneLineErrors) {
  TempDir dir;
  testing::CommandResult missing = RunCommand(Export(dir / "nope", dir / "hf"));
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_NE(missing.output.find(dir / "nope: no such directory"), std::string::npos) << missing.output;

  // A damaged checkpoint (the only one) is bad data: exit 7, naming the shard.
  const testing::TinyRun run = testing::WriteTinyRun(dir / "run");
  const std::string shard = run.checkpoint_dir + "/" + ShardFileName(0, 2);
  std::filesystem::resize_file(shard, std::filesystem::file_size(shard) - 4);
  testing::CommandResult corrupt = RunCommand(Export(run.run_dir, dir / "hf"));
  EXPECT_EQ(corrupt.exit_code, 7) << corrupt.output;
  EXPECT_NE(corrupt.output.find(shard), std::string::npos) << corrupt.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "hf/config.json"));
}

std::string ExportOnnx(const std::string& from, const std::string& to, const std::string& extra = "") {
  return Export(from, to, " --format onnx" + extra);
}


// Exit 2, one error line containing `needle`, and no model.onnx at `out`.
void ExpectOnnxRefused(const testing::CommandResult& result, const std::string& out, const std::string& needle) {
  EXPECT_EQ(result.exit_code, 2) << result.output;
  const std::vector<std::string> errors = ErrorLines(result.output);
  ASSERT_EQ(errors.size(), 1u) << result.output;
  EXPECT_NE(errors[0].find(needle), std::string::npos) << errors[0];
  EXPECT_FALSE(std::filesystem::exists(out + "/model.onnx"));
}

std::vector<nlohmann::json> JsonLines(const std::string& text) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] == '{') lines.push_back(nlohmann::json::parse(line));
  }
  return lines;
}

// Each supported hidden_act; texts of 1 to 20 letters (the tiny vocabulary is
// [PAD] [UNK] [CLS] [SEP] [MASK] a..s), every third one with a second text
// (token type 1), in padded batches of 1, 4 and 3.
TEST(ExportCliOnnx, Fp32ClassifierRunsInOnnxruntimeLikeTheHfReference) {
  TempDir dir;
  std::string texts;
  for (int i = 0; i < 13; ++i) {
    auto letters = [&](int count, int salt) {
      std::string text;
      for (int j = 0; j < count; ++j) text += std::string(j ? " " : "") + char('a' + (i + salt + 3 * j) % 19);
      return text;
    };
    texts += "{\"text\": \"" + letters(1 + (i * 7) % 20, 0) + "\"" +
             (i % 3 == 0 ? ", \"pair\": \"" + letters(1 + i % 5, 11) + "\"" : std::string()) + "}\n";
  }
  testing::WriteText(dir / "texts.jsonl", texts);
  const std::string python = std::string(BERT_PYTHON) + " " + BERT_SOURCE_DIR + "/tests/reference/";
  for (const std::string act : {"gelu", "gelu_new", "relu"}) {
    const std::string hf = dir / ("ft-" + act), out = dir / ("onnx-" + act);
    testing::WriteTinyClassifierHfDir(hf, act);
    testing::CommandResult result = RunCommand(ExportOnnx(hf, out));
    ASSERT_EQ(result.exit_code, 0) << result.output;
    EXPECT_NE(result.output.find("read HF directory " + hf), std::string::npos) << result.output;
    EXPECT_NE(result.output.find("wrote " + out + "/model.onnx: BertForSequenceClassification, fp32, opset 17"),
              std::string::npos)
        << result.output;
    for (const char* name : {"config.json", "vocab.txt", "tokenizer_config.json"}) {
      EXPECT_EQ(*ReadFile(out + "/" + name), *ReadFile(hf + "/" + name)) << name;
    }
    testing::CommandResult ort = RunCommand(python + "onnx_ref.py " + out + " " + (dir / "texts.jsonl") +
                                            " --batches 1,4,3 --pair-field pair");
    ASSERT_EQ(ort.exit_code, 0) << ort.output;
    EXPECT_NE(ort.output.find("13 examples in 5 batches"), std::string::npos) << ort.output;
    testing::CommandResult reference =
        RunCommand(python + "hf_bert_ref.py " + hf + " " + (dir / "texts.jsonl") + " --pair-field pair");
    ASSERT_EQ(reference.exit_code, 0) << reference.output;
    const std::vector<nlohmann::json> theirs = JsonLines(ort.output), ours = JsonLines(reference.output);
    ASSERT_EQ(theirs.size(), 13u) << ort.output;
    ASSERT_EQ(ours.size(), 13u) << reference.output;
    double max_diff = 0;
    for (size_t i = 0; i < ours.size(); ++i) {
      EXPECT_EQ(theirs[i]["label"], ours[i]["label"]) << act << " line " << i + 1;
      for (const auto& [label, p] : ours[i]["probabilities"].items()) {
        max_diff = std::max(max_diff, std::abs(p.get<double>() - theirs[i]["probabilities"][label].get<double>()));
      }
    }
    std::printf("onnxruntime vs hf_bert_ref (float64), hidden_act %s: largest probability difference %.2e\n",
                act.c_str(), max_diff);
    // fp32 against float64: measured up to 1.8e-7; gelu_new computed as the erf gelu gives 4.2e-6.
    EXPECT_LT(max_diff, 1e-6) << act;
  }
}

TEST(ExportCliOnnx, ExportsInt8DirectoriesWithIntegerOps) {
  TempDir dir;
  for (LinearQuantization q : {LinearQuantization::kInt8Dynamic, LinearQuantization::kInt8Static}) {
    const std::string int8 = dir / "int8";
    std::filesystem::remove_all(int8);
    testing::WriteTinyInt8Dir(int8, q, testing::TinyInt8Tensors(q));
    const std::string out = dir / "onnx";
    testing::CommandResult result = RunCommand(ExportOnnx(int8, out, " --overwrite"));
    ASSERT_EQ(result.exit_code, 0) << result.output;
    EXPECT_NE(result.output.find("read int8 directory " + int8), std::string::npos) << result.output;
    EXPECT_NE(result.output.find(std::string(q == LinearQuantization::kInt8Static ? "int8, static" : "int8, dynamic") +
                                 " activations, opset 17"),
              std::string::npos)
        << result.output;
    EXPECT_EQ(*ReadFile(out + "/config.json"), *ReadFile(int8 + "/config.json"));
  }
}

TEST(ExportCliOnnx, RefusesWhatItCannotExportWithOneLine) {
  TempDir dir;
  const std::string out = dir / "onnx";
  const testing::TinyRun run = testing::WriteTinyRun(dir / "run");
  ExpectOnnxRefused(RunCommand(Export(run.run_dir, out, " --format tflite")), out,
                    "--format tflite: unknown (hf or onnx)");
  ExpectOnnxRefused(RunCommand(ExportOnnx(run.run_dir, out)), out,
                    "--format onnx exports a fine-tuned classifier (an HF directory from bertctl finetune or an int8 "
                    "directory), not a pretraining checkpoint");
  // A pretraining model as an HF directory: no classifier.
  ASSERT_EQ(RunCommand(Export(run.run_dir, dir / "hf")).exit_code, 0);
  ExpectOnnxRefused(RunCommand(ExportOnnx(dir / "hf", out)), out,
                    "no classifier.weight: only a fine-tuned BertForSequenceClassification exports to ONNX");

  std::vector<NamedTensor> tensors = testing::TinyInt8Tensors(LinearQuantization::kInt8Dynamic);
  const std::string int8 = dir / "int8";
  testing::WriteTinyInt8Dir(int8, LinearQuantization::kInt8Dynamic, tensors);
  ExpectOnnxRefused(RunCommand(Export(int8, out)), out, "cannot be exported as HF fp32 safetensors");
  for (NamedTensor& tensor : tensors) {
    if (tensor.name != "bert.encoder.layer.1.intermediate.dense.weight") continue;
    tensor.dtype = "U8";
    tensor.values.assign(tensor.values.size(), 3);
  }
  testing::WriteTinyInt8Dir(int8, LinearQuantization::kInt8Dynamic, tensors);
  ExpectOnnxRefused(RunCommand(ExportOnnx(int8, out)), out,
                    int8 + "/model.int8.safetensors: tensor \"bert.encoder.layer.1.intermediate.dense.weight\" is U8, "
                           "the int8 format stores it as I8");

  // A truncated weights file is bad data: exit 7, naming it.
  testing::WriteTinyInt8Dir(int8, LinearQuantization::kInt8Dynamic,
                            testing::TinyInt8Tensors(LinearQuantization::kInt8Dynamic));
  const std::string weights = int8 + "/model.int8.safetensors";
  std::filesystem::resize_file(weights, std::filesystem::file_size(weights) - 4);
  testing::CommandResult truncated = RunCommand(ExportOnnx(int8, out));
  EXPECT_EQ(truncated.exit_code, 7) << truncated.output;
  EXPECT_NE(truncated.output.find(weights), std::string::npos) << truncated.output;
  EXPECT_FALSE(std::filesystem::exists(out + "/model.onnx"));

  // An output that exists is kept unless --overwrite.
  testing::WriteTinyClassifierHfDir(dir / "ft");
  std::filesystem::create_directories(out);
  testing::WriteText(out + "/notes.txt", "keep me");
  ExpectOnnxRefused(RunCommand(ExportOnnx(dir / "ft", out)), out, "exists and is not empty (pass --overwrite");
  EXPECT_EQ(RunCommand(ExportOnnx(dir / "ft", out, " --overwrite")).exit_code, 0);
  EXPECT_TRUE(std::filesystem::exists(out + "/model.onnx"));
}

}  // namespace
}  // namespace bert
