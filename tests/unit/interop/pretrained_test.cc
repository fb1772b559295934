// LoadPretrained / WriteHfDirectory (interop/pretrained.h): our sharded
// checkpoints exported as HF directories bit for bit, HF names normalised on
// import, and the errors a user meets (incomplete directory, another
// vocabulary, wrong shapes, corrupt shards, pickles).
#include "interop/pretrained.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "unit/interop/tiny_checkpoint.h"

namespace bert {
namespace {

namespace fs = std::filesystem;
using testing::SameTensors;
using testing::TempDir;

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

std::vector<std::string> Names(const std::vector<NamedTensor>& tensors) {
  std::vector<std::string> names;
  for (const NamedTensor& tensor : tensors) names.push_back(tensor.name);
  return names;
}

testing::TinyRunOptions Options(uint32_t world_size, bool record_model_config, const std::string& vocab_checksum) {
  testing::TinyRunOptions options;
  options.world_size = world_size;
  options.record_model_config = record_model_config;
  options.vocab_checksum = vocab_checksum;
  return options;
}

const NamedTensor& Find(const std::vector<NamedTensor>& tensors, const std::string& name) {
  for (const NamedTensor& tensor : tensors) {
    if (tensor.name == name) return tensor;
  }
  static const NamedTensor kMissing;
  ADD_FAILURE() << name << " missing";
  return kMissing;
}

TEST(Pretrained, CheckpointExportsAsBertForPreTrainingAndLoadsBackBitForBit) {
  TempDir dir;
  const testing::TinyRun run = testing::WriteTinyRun(dir / "run");
  Result<PretrainedModel> model = LoadPretrained(run.run_dir, /*with_weights=*/true);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ(model->source, PretrainedModel::Source::kCheckpoint);
  EXPECT_EQ(model->path, run.checkpoint_dir);  // the latest committed checkpoint
  EXPECT_TRUE(SameTensors(model->tensors, run.tensors));  // read across 2 shards
  EXPECT_EQ(model->vocab, testing::TinyVocab());
  EXPECT_TRUE(model->do_lower_case);
  EXPECT_EQ(model->model_max_length, 32);
  EXPECT_EQ(model->config["architectures"], nlohmann::json({"BertForPreTraining"}));

  const std::string out = dir / "export";
  ASSERT_TRUE(WriteHfDirectory(out, *model).ok());
  for (const char* file : {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"}) {
    EXPECT_TRUE(fs::is_regular_file(out + "/" + file)) << file;
  }
  const nlohmann::json config = ReadJson(out + "/config.json");
  EXPECT_EQ(config["architectures"], nlohmann::json({"BertForPreTraining"}));
  EXPECT_EQ(config["model_type"], "bert");
  EXPECT_EQ(config["hidden_size"], 8);
  const nlohmann::json tokenizer = ReadJson(out + "/tokenizer_config.json");
  EXPECT_EQ(tokenizer["do_lower_case"], true);
  EXPECT_EQ(tokenizer["model_max_length"], 32);
  EXPECT_EQ(tokenizer["tokenizer_class"], "BertTokenizer");

  // The file lists HF's tied decoder where BertForPreTraining's state_dict
  // does: after the transform, before the NSP head.
  Result<std::vector<NamedTensor>> file = ReadSafetensors(out + "/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  const std::vector<std::string> names = Names(*file);
  ASSERT_EQ(names.size(), run.tensors.size() + 2);
  auto at = [&](const std::string& name) { return std::find(names.begin(), names.end(), name) - names.begin(); };
  EXPECT_EQ(at("cls.predictions.decoder.weight"), at("cls.predictions.transform.LayerNorm.bias") + 1);
  EXPECT_EQ(at("cls.predictions.decoder.bias"), at("cls.predictions.decoder.weight") + 1);
  EXPECT_EQ(at("cls.seq_relationship.weight"), at("cls.predictions.decoder.bias") + 1);
  EXPECT_EQ(Find(*file, "cls.predictions.decoder.weight").values,
            Find(run.tensors, "bert.embeddings.word_embeddings.weight").values);
  EXPECT_EQ(Find(*file, "cls.predictions.decoder.bias").values, Find(run.tensors, "cls.predictions.bias").values);

  Result<PretrainedModel> back = LoadPretrained(out, true);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->source, PretrainedModel::Source::kHfDirectory);
  EXPECT_TRUE(SameTensors(back->tensors, run.tensors));  // aliases dropped again
  EXPECT_EQ(back->vocab, model->vocab);
  EXPECT_EQ(back->vocab_checksum, model->vocab_checksum);
  EXPECT_EQ(back->model_max_length, 32);
}

TEST(Pretrained, CheckpointDirectoryLoadsWithoutWeightsForValidation) {
  TempDir dir;
  const testing::TinyRun run = testing::WriteTinyRun(dir / "run", Options(3, true, ""));
  Result<PretrainedModel> model = LoadPretrained(run.checkpoint_dir, /*with_weights=*/false);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_TRUE(model->tensors.empty());
  EXPECT_EQ(model->config["num_hidden_layers"], 2);
  EXPECT_EQ(model->vocab.size(), 24u);
  Result<PretrainedModel> with = LoadPretrained(run.checkpoint_dir, true);
  ASSERT_TRUE(with.ok());
  EXPECT_TRUE(SameTensors(with->tensors, run.tensors));  // 3 shards
}

TEST(Pretrained, OlderManifestWithoutModelConfigReadsTheRunsModelFile) {
  TempDir dir;
  const testing::TinyRun run = testing::WriteTinyRun(dir / "run", Options(2, false, ""));
  Result<PretrainedModel> model = LoadPretrained(run.run_dir, true);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ(model->config["hidden_size"], 8);
  fs::remove(run.model_path);
  Result<PretrainedModel> gone = LoadPretrained(run.run_dir, false);
  ASSERT_FALSE(gone.ok());
  EXPECT_NE(gone.status().message().find("no model_config"), std::string::npos) << gone.status().message();
  EXPECT_NE(gone.status().message().find(run.model_path), std::string::npos) << gone.status().message();
}

TEST(Pretrained, WrongVocabularyIsAnErrorNamingBothChecksums) {
  TempDir dir;
  const testing::TinyRun run = testing::WriteTinyRun(dir / "run", Options(2, true, "0123456789abcdef"));
  Result<PretrainedModel> model = LoadPretrained(run.run_dir, false);
  ASSERT_FALSE(model.ok());
  const std::string actual = (*Vocab::FromTokens(testing::TinyVocab()))->checksum();
  const std::string& message = model.status().message();
  EXPECT_NE(message.find("vocab_checksum 0123456789abcdef"), std::string::npos) << message;
  EXPECT_NE(message.find(run.vocab_path + " has checksum " + actual), std::string::npos) << message;
}

TEST(Pretrained, CorruptShardIsRefusedNamingTheFile) {
  TempDir dir;
  const testing::TinyRun run = testing::WriteTinyRun(dir / "run");
  const std::string shard = run.checkpoint_dir + "/" + ShardFileName(1, 2);
  {
    std::fstream file(shard, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(-5, std::ios::end);
    file.put('\x7f');
  }
  Result<PretrainedModel> model = LoadPretrained(run.checkpoint_dir, true);
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find(shard), std::string::npos) << model.status().message();
}

// An HF BertForMaskedLM file as older tools wrote it: BertModel names
// without "bert.", LayerNorm gamma/beta, the position_ids buffer (I64) and
// the tied decoder.
TEST(Pretrained, ImportNormalisesHfNames) {
  TempDir dir;
  const std::string hf = dir / "hf";
  fs::create_directories(hf);
  std::vector<NamedTensor> ours;
  for (NamedTensor& tensor : testing::TinyTensors(3)) {
    if (tensor.name.rfind("cls.seq_relationship.", 0) != 0) ours.push_back(tensor);
  }
  std::vector<NamedTensor> theirs;
  for (NamedTensor tensor : ours) {
    std::string& name = tensor.name;
    if (name.rfind("bert.", 0) == 0) name = name.substr(5);
    if (name.find("LayerNorm.weight") != std::string::npos) name.replace(name.size() - 6, 6, "gamma");
    if (name.find("LayerNorm.bias") != std::string::npos) name.replace(name.size() - 4, 4, "beta");
    theirs.push_back(tensor);
  }
  theirs.push_back({"cls.predictions.decoder.weight", {24, 8}, Find(ours, "bert.embeddings.word_embeddings.weight").values});
  ASSERT_TRUE(WriteSafetensors(hf + "/model.safetensors", theirs).ok());
  // Append an I64 position_ids the way HF files carry it: rewrite by hand.
  {
    Result<std::string> bytes = ReadFile(hf + "/model.safetensors");
    uint64_t n;
    std::memcpy(&n, bytes->data(), 8);
    nlohmann::ordered_json header = nlohmann::ordered_json::parse(bytes->substr(8, n));
    const uint64_t end = bytes->size() - 8 - n;
    header["embeddings.position_ids"] = {{"dtype", "I64"}, {"shape", {1, 32}}, {"data_offsets", {end, end + 256}}};
    const std::string text = header.dump();
    const uint64_t length = text.size();
    std::string file(reinterpret_cast<const char*>(&length), 8);
    file += text + bytes->substr(8 + n) + std::string(256, '\0');
    testing::WriteText(hf + "/model.safetensors", file);
  }
  nlohmann::json config = testing::TinyModelConfig();
  config["architectures"] = {"BertForMaskedLM"};
  testing::WriteText(hf + "/config.json", config.dump());
  std::string vocab;
  for (const std::string& token : testing::TinyVocab()) vocab += token + "\n";
  testing::WriteText(hf + "/vocab.txt", vocab);
  testing::WriteText(hf + "/tokenizer_config.json",
                     R"({"do_lower_case": false, "model_max_length": 1000000000000000019884624838656})");

  Result<PretrainedModel> model = LoadPretrained(hf, true);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_TRUE(SameTensors(model->tensors, ours));
  EXPECT_FALSE(model->do_lower_case);
  EXPECT_EQ(model->model_max_length, 32);  // HF's "no limit" sentinel: the position table
  EXPECT_EQ(model->config["architectures"], nlohmann::json({"BertForMaskedLM"}));

  EXPECT_EQ(NormalizeHfTensorName("encoder.layer.3.output.LayerNorm.gamma"),
            "bert.encoder.layer.3.output.LayerNorm.weight");
  EXPECT_EQ(NormalizeHfTensorName("bert.embeddings.position_ids"), "");
  EXPECT_EQ(NormalizeHfTensorName("cls.predictions.decoder.bias"), "");
  EXPECT_EQ(NormalizeHfTensorName("classifier.weight"), "classifier.weight");
}

TEST(Pretrained, DirectoryWithoutConfigJsonIsRefused) {
  TempDir dir;
  const testing::TinyRun run = testing::WriteTinyRun(dir / "run");
  Result<PretrainedModel> model = LoadPretrained(run.run_dir, true);
  ASSERT_TRUE(model.ok());
  const std::string out = dir / "export";
  ASSERT_TRUE(WriteHfDirectory(out, *model).ok());
  fs::remove(out + "/config.json");  // what an export cut short leaves
  Result<PretrainedModel> incomplete = LoadPretrained(out, false);
  ASSERT_FALSE(incomplete.ok());
  EXPECT_EQ(incomplete.status().message(),
            out + ": no config.json (not an HF model directory, or an unfinished export)");
  Result<PretrainedModel> nothing = LoadPretrained(dir.path(), false);
  ASSERT_FALSE(nothing.ok());
  EXPECT_NE(nothing.status().message().find("neither a run directory"), std::string::npos);
}

TEST(Pretrained, ShapesAreCheckedAgainstTheConfig) {
  TempDir dir;
  const testing::TinyRun run = testing::WriteTinyRun(dir / "run");
  Result<PretrainedModel> model = LoadPretrained(run.run_dir, true);
  ASSERT_TRUE(model.ok());
  const std::string out = dir / "export";
  ASSERT_TRUE(WriteHfDirectory(out, *model).ok());
  nlohmann::json config = ReadJson(out + "/config.json");
  config["intermediate_size"] = 32;
  testing::WriteText(out + "/config.json", config.dump());
  Result<PretrainedModel> wrong = LoadPretrained(out, false);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find(
                "tensor \"bert.encoder.layer.0.intermediate.dense.weight\" has shape [16, 8] but the config gives "
                "[32, 8]"),
            std::string::npos)
      << wrong.status().message();

  PretrainedModel missing = *model;
  missing.tensors.erase(missing.tensors.begin() + 1);  // position embeddings
  Status refused = WriteHfDirectory(dir / "other", missing);
  EXPECT_NE(refused.message().find("\"bert.embeddings.position_embeddings.weight\" is missing"), std::string::npos)
      << refused.message();
  EXPECT_FALSE(fs::exists(dir / "other/config.json"));
}

TEST(Pretrained, ClassifierGetsItsArchitectureLabelsAndMaxLength) {
  TempDir dir;
  PretrainedModel model;
  model.config = testing::TinyModelConfig();
  model.config["id2label"] = {{"0", "negative"}, {"1", "neutral"}, {"2", "positive"}};
  model.vocab = testing::TinyVocab();
  model.model_max_length = 16;
  for (NamedTensor& tensor : testing::TinyTensors(5)) {
    if (tensor.name.rfind("bert.", 0) == 0) model.tensors.push_back(tensor);
  }
  model.tensors.push_back({"classifier.weight", {3, 8}, std::vector<float>(24, 0.25f)});
  model.tensors.push_back({"classifier.bias", {3}, {0.5f, -0.5f, 0.0f}});
  const std::string out = dir / "classifier";
  ASSERT_TRUE(WriteHfDirectory(out, model).ok());
  const nlohmann::json config = ReadJson(out + "/config.json");
  EXPECT_EQ(config["architectures"], nlohmann::json({"BertForSequenceClassification"}));
  EXPECT_EQ(config["num_labels"], 3);
  EXPECT_EQ(config["label2id"]["neutral"], 1);
  EXPECT_EQ(ReadJson(out + "/tokenizer_config.json")["model_max_length"], 16);
  Result<PretrainedModel> back = LoadPretrained(out, true);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(SameTensors(back->tensors, model.tensors));
  EXPECT_EQ(back->model_max_length, 16);
  EXPECT_EQ(back->config["id2label"]["2"], "positive");

  model.config.erase("id2label");  // 2 labels by default: the classifier has 3 rows
  Status mismatch = WriteHfDirectory(dir / "bad", model);
  EXPECT_NE(mismatch.message().find("\"classifier.weight\" has shape [3, 8] but the config gives [2, 8]"),
            std::string::npos)
      << mismatch.message();
}

TEST(Pretrained, PickleOnlyDirectoryGetsAHint) {
  TempDir dir;
  testing::WriteText(dir / "config.json", testing::TinyModelConfig().dump());
  std::string vocab;
  for (const std::string& token : testing::TinyVocab()) vocab += token + "\n";
  testing::WriteText(dir / "vocab.txt", vocab);
  testing::WriteText(dir / "pytorch_model.bin", "PK");
  Result<PretrainedModel> model = LoadPretrained(dir.path(), true);
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find("only pytorch_model.bin"), std::string::npos) << model.status().message();
}

}  // namespace
}  // namespace bert
