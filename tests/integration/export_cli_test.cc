// `bertctl export` end to end: a synthetic pretraining run (written with the
// checkpoint library) exported as an HF directory, read back bit for bit,
// re-exported from the HF directory byte for byte, and the refusals a user
// meets (non-empty output, missing input).
#include <gtest/gtest.h>

#include <filesystem>

#include "common/file_util.h"
#include "interop/pretrained.h"
#include "test_util.h"
#include "unit/interop/tiny_checkpoint.h"

namespace bert {
namespace {

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

}  // namespace
}  // namespace bert
