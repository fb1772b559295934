// bert-worker --local end to end on a real corpus (the Linux kernel docs):
// the MLM loss falls, the run is reproducible bit for bit, metrics and the
// frozen config land in the run directory, and bad configs are named.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace bert {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using testing::RunCommand;
using testing::TempDir;
using testing::WriteText;

std::string Worker() { return std::string(BERT_BIN_DIR) + "/bert-worker"; }

class LocalPretrainTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    // About 2 MB of real English: the admin guide and the process docs.
    CommandResult r = RunCommand(testing::Bertctl() + " prepare --input " + testing::LinuxDocDir() + "/admin-guide " +
                                 testing::LinuxDocDir() + "/process --vocab " + testing::UncasedVocab() + " --db " +
                                 (*dir_ / "db"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() { delete dir_; }

  // A bert-tiny run at seq 64 small enough for a test.
  std::string Config(const std::string& run_dir, int steps, const std::string& extra_train = "") {
    std::string path = work_ / (fs::path(run_dir).filename().string() + ".yaml");
    WriteText(path, "name: test\nrun_dir: " + run_dir + "\nmodel: " + std::string(BERT_SOURCE_DIR) +
                        "/configs/models/bert-tiny.json\nvocab: " + testing::UncasedVocab() + "\ndata:\n  db: [" +
                        (*dir_ / "db") + "]\n  max_seq_len: 64\n  max_predictions: 10\ntrain:\n  global_batch_size: 16\n"
                        "  steps: " + std::to_string(steps) + "\n  lr: 0.002\n  warmup_steps: 5\n" + extra_train +
                        "log:\n  every_steps: 10\n");
    return path;
  }

  static std::vector<nlohmann::json> Metrics(const std::string& run_dir) {
    std::vector<nlohmann::json> records;
    std::ifstream in(run_dir + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);) records.push_back(nlohmann::json::parse(line));
    return records;
  }

  static TempDir* dir_;
  TempDir work_;
};
TempDir* LocalPretrainTest::dir_ = nullptr;

// Pinned from measurement: the initial loss is ln(30522) + ln(2) ~ 11.0; after
// 50 steps of 16 samples at lr 2e-3, bert-tiny has learned the unigram
// distribution and the mean loss of steps 41-50 was 7.3-7.6 in our runs.
TEST_F(LocalPretrainTest, MlmLossFallsBelowPinnedValueWithinFiftySteps) {
  std::string run = work_ / "run";
  CommandResult r = RunCommand(Worker() + " --local --config " + Config(run, 50));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<nlohmann::json> metrics = Metrics(run);
  ASSERT_EQ(metrics.size(), 5u);
  EXPECT_GT(metrics.front()["loss"].get<double>(), 9.5);
  EXPECT_LT(metrics.back()["loss"].get<double>(), 8.2) << r.output;
  EXPECT_GT(metrics.back()["mlm_accuracy"].get<double>(), 0.03);
  for (const char* key : {"step", "loss", "mlm_accuracy", "nsp_accuracy", "lr", "samples_per_s", "tokens_per_s",
                          "mfu", "elapsed_s"}) {
    EXPECT_TRUE(metrics.back().contains(key)) << key;
  }
  EXPECT_NE(r.output.find("ETA"), std::string::npos);
  EXPECT_NE(r.output.find("MFU"), std::string::npos);
  EXPECT_TRUE(fs::exists(run + "/config.yaml"));
}

TEST_F(LocalPretrainTest, SameConfigGivesBitIdenticalLosses) {
  std::string a = work_ / "a", b = work_ / "b";
  ASSERT_EQ(RunCommand(Worker() + " --local --config " + Config(a, 10)).exit_code, 0);
  ASSERT_EQ(RunCommand(Worker() + " --local --config " + Config(b, 10)).exit_code, 0);
  std::vector<nlohmann::json> ma = Metrics(a), mb = Metrics(b);
  ASSERT_EQ(ma.size(), 1u);
  ASSERT_EQ(mb.size(), 1u);
  EXPECT_EQ(ma[0]["loss"].get<double>(), mb[0]["loss"].get<double>());  // exact, not approximate
  EXPECT_EQ(ma[0]["mlm_accuracy"].get<double>(), mb[0]["mlm_accuracy"].get<double>());
  std::string c = work_ / "c";
  ASSERT_EQ(RunCommand(Worker() + " --local --config " + Config(c, 10, "  init_seed: 7\n")).exit_code, 0);
  EXPECT_NE(Metrics(c)[0]["loss"].get<double>(), ma[0]["loss"].get<double>());
}

TEST_F(LocalPretrainTest, BadConfigsAreRejectedNamingTheKey) {
  std::string path = Config(work_ / "bad", 10, "  optimizer: sgd\n");
  CommandResult r = RunCommand(Worker() + " --local --config " + path);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("train.optimizer: must be adamw or lamb, got sgd"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(work_ / "bad/metrics.jsonl"));

  // A model whose vocabulary is not the corpus's.
  WriteText(work_ / "small-vocab.json", "{\"vocab_size\": 1000, \"hidden_size\": 32, \"num_hidden_layers\": 1, "
                                        "\"num_attention_heads\": 2, \"intermediate_size\": 64}");
  std::string mismatch = work_ / "mismatch.yaml";
  std::ifstream in(Config(work_ / "m", 5));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text.replace(text.find("model: "), text.find('\n', text.find("model: ")) - text.find("model: "),
               "model: " + (work_ / "small-vocab.json"));
  WriteText(mismatch, text);
  CommandResult m = RunCommand(Worker() + " --local --config " + mismatch);
  EXPECT_NE(m.exit_code, 0);
  EXPECT_NE(m.output.find("vocab_size 1000"), std::string::npos) << m.output;
}

// train.device: the log names the device; "cuda" where no GPU is visible
// (this CI machine) exits 2 naming the key before anything is written, and
// where one is, trains there.
TEST_F(LocalPretrainTest, TheDeviceIsLoggedAndCudaWithoutAGpuExitsTwoNamingTheKey) {
  CommandResult cpu = RunCommand(Worker() + " --local --config " + Config(work_ / "cpu", 5, "  device: cpu\n"));
  ASSERT_EQ(cpu.exit_code, 0) << cpu.output;
  EXPECT_NE(cpu.output.find("device cpu (train.device: cpu)"), std::string::npos) << cpu.output;

  CommandResult cuda = RunCommand(Worker() + " --local --config " + Config(work_ / "cuda", 5, "  device: cuda\n"));
  if (cuda.exit_code == 0) {
    EXPECT_NE(cuda.output.find("device cuda:0 (local rank 0;"), std::string::npos) << cuda.output;
  } else {
    EXPECT_EQ(cuda.exit_code, 2) << cuda.output;
    EXPECT_NE(cuda.output.find("train.device: cuda, but no CUDA device is visible"), std::string::npos) << cuda.output;
    EXPECT_FALSE(fs::exists(work_ / "cuda/metrics.jsonl"));
  }
}

}  // namespace
}  // namespace bert
