// Run configs: defaults, path resolution, round trip, and one-line errors that
// name the file and key for every kind of bad value.
#include "common/run_config.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace bert {
namespace {

const char* kMinimal =
    "model: models/bert-tiny.json\n"
    "vocab: vocab.txt\n"
    "data:\n"
    "  db: [corpus/a, /abs/b]\n";

Result<RunConfig> Parse(const std::string& yaml) { return ParseRunConfig(yaml, "run.yaml", "/cfg"); }

TEST(RunConfigTest, MinimalConfigGetsDefaultsAndResolvedPaths) {
  Result<RunConfig> c = Parse(kMinimal);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->model, "/cfg/models/bert-tiny.json");
  EXPECT_EQ(c->vocab, "/cfg/vocab.txt");
  EXPECT_EQ(c->data.db, (std::vector<std::string>{"/cfg/corpus/a", "/abs/b"}));
  EXPECT_EQ(c->run_dir, (std::filesystem::current_path() / "runs/default").string());
  EXPECT_EQ(c->data.max_seq_len, 128);
  EXPECT_EQ(c->train.optimizer, "adamw");
  EXPECT_EQ(c->train.device, "auto");
  EXPECT_EQ(c->train.precision, "fp32");
  EXPECT_FALSE(c->train.tf32);
  EXPECT_FALSE(c->train.activation_checkpointing);
  EXPECT_EQ(c->data.objective, "mlm_nsp");
  EXPECT_FALSE(c->data.packing);
  EXPECT_TRUE(c->train.dropout);
  EXPECT_EQ(c->train.init_from, "");
}

// The pretraining recipe keys: set, resolved (init_from like every path) and
// written back.
TEST(RunConfigTest, RecipeKeysParseAndRoundTrip) {
  Result<RunConfig> c = Parse(std::string(kMinimal) +
                              "  objective: mlm\n  packing: true\ntrain:\n  dropout: false\n  init_from: ../runs/base\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->data.objective, "mlm");
  EXPECT_TRUE(c->data.packing);
  EXPECT_FALSE(c->train.dropout);
  EXPECT_EQ(c->train.init_from, "/runs/base");
  Result<RunConfig> again = ParseRunConfig(c->ToYaml(), "resolved.yaml", "/elsewhere");
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->ToYaml(), c->ToYaml());
  EXPECT_EQ(again->train.init_from, "/runs/base");
  c = Parse(std::string(kMinimal) + "  objective: mlm_sop\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->data.objective, "mlm_sop");
}

// train.time_budget: durations as people write them, kept through the
// resolved YAML; anything else is an error naming the key and the form.
TEST(RunConfigTest, TimeBudgetParsesDurationsAndRoundTrips) {
  EXPECT_EQ(*ParseTimeBudget("30m"), 1800);
  EXPECT_EQ(*ParseTimeBudget("1h30m"), 5400);
  EXPECT_EQ(*ParseTimeBudget("2d3h4m5s"), 2 * 86400 + 3 * 3600 + 4 * 60 + 5);
  EXPECT_EQ(*ParseTimeBudget("45"), 45);
  EXPECT_EQ(*ParseTimeBudget(""), 0);
  for (const char* bad : {"30x", "m", "1h30", "30m1h", "1m1m", "-5m", "1.5h", "1 h", "99999999999999999d"}) {
    EXPECT_FALSE(ParseTimeBudget(bad).ok()) << bad;
  }
  for (int64_t s : {1, 59, 60, 61, 3599, 3600, 5400, 86400, 90061, 366 * 86400}) {
    EXPECT_EQ(*ParseTimeBudget(FormatTimeBudget(s)), s) << FormatTimeBudget(s);
  }
  EXPECT_EQ(FormatTimeBudget(5400), "1h30m");
  Result<RunConfig> c = Parse(std::string(kMinimal) + "train:\n  time_budget: 1h30m\n  steps: 100000\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->train.time_budget_s, 5400);
  Result<RunConfig> again = ParseRunConfig(c->ToYaml(), "resolved.yaml", "/elsewhere");
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->train.time_budget_s, 5400);
  EXPECT_EQ(again->ToYaml(), c->ToYaml());
  c = Parse(std::string(kMinimal) + "train:\n  time_budget: 90\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->train.time_budget_s, 90);
  c = Parse(std::string(kMinimal));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->train.time_budget_s, 0) << "no budget unless asked";
  c = Parse(std::string(kMinimal) + "train:\n  time_budget: half an hour\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("train.time_budget: not a duration: 'half an hour' (write e.g. 30m"),
            std::string::npos)
      << c.status().message();
  c = Parse(std::string(kMinimal) + "train:\n  time_budget: 400d\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("train.time_budget: must be in [1s, 366d]"), std::string::npos)
      << c.status().message();
}

TEST(RunConfigTest, ChineseWholeWordNeedsWholeWordMaskingAndRoundTrips) {
  Result<RunConfig> c = Parse(std::string(kMinimal) + "  whole_word_masking: true\n  chinese_whole_word: true\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_TRUE(c->data.chinese_whole_word);
  Result<RunConfig> again = ParseRunConfig(c->ToYaml(), "resolved.yaml", "/elsewhere");
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_TRUE(again->data.chinese_whole_word);
  c = Parse(std::string(kMinimal) + "  chinese_whole_word: true\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("data.chinese_whole_word: needs data.whole_word_masking: true"),
            std::string::npos)
      << c.status().message();
}

// A relative run_dir follows the rule of the other paths in the file
// (relative to its directory), not the current directory.
TEST(RunConfigTest, ARelativeRunDirIsRelativeToTheConfigFileLikeEveryPath) {
  Result<RunConfig> c = Parse(std::string(kMinimal) + "run_dir: ../runs/mine\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->run_dir, "/runs/mine");
  c = Parse(std::string(kMinimal) + "run_dir: /abs/run\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->run_dir, "/abs/run");
}

// train.anomaly: defaults (rollback on non-finite steps only) and a round trip.
TEST(RunConfigTest, AnomalyKeysHaveDefaultsAndRoundTrip) {
  Result<RunConfig> c = Parse(kMinimal);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->train.anomaly.action, "rollback");
  EXPECT_EQ(c->train.anomaly.loss_spike, 0);
  EXPECT_EQ(c->train.anomaly.max_skips, 3);
  EXPECT_TRUE(c->train.anomaly.skip_steps.empty());
  c = Parse(std::string(kMinimal) + "train:\n  anomaly:\n    loss_spike: 4\n    grad_norm_spike: 20\n"
                                    "    median_window: 50\n    max_skips: 1\n    skip_window: 200\n"
                                    "    skip_steps: [12, 40]\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->train.anomaly.skip_steps, (std::vector<int64_t>{12, 40}));
  Result<RunConfig> again = ParseRunConfig(c->ToYaml(), "resolved.yaml", "/elsewhere");
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->ToYaml(), c->ToYaml());
  EXPECT_DOUBLE_EQ(again->train.anomaly.loss_spike, 4);
  EXPECT_DOUBLE_EQ(again->train.anomaly.grad_norm_spike, 20);
  EXPECT_EQ(again->train.anomaly.median_window, 50);
  EXPECT_EQ(again->train.anomaly.max_skips, 1);
  EXPECT_EQ(again->train.anomaly.skip_window, 200);
  EXPECT_EQ(again->train.anomaly.skip_steps, (std::vector<int64_t>{12, 40}));
}

TEST(RunConfigTest, ResolvedYamlRoundTrips) {
  Result<RunConfig> c = Parse(std::string(kMinimal) + "train:\n  lr: 0.0005\n  optimizer: lamb\n  steps: 77\n  warmup_steps: 7\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  Result<RunConfig> again = ParseRunConfig(c->ToYaml(), "resolved.yaml", "/elsewhere");
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->ToYaml(), c->ToYaml());
  EXPECT_EQ(again->train.steps, 77);
  EXPECT_DOUBLE_EQ(again->train.lr, 0.0005);
}

TEST(RunConfigTest, BadValuesNameFileAndKey) {
  struct Case {
    std::string extra;
    std::string expected;
  };
  const Case cases[] = {
      {"train:\n  lr: -1\n", "run.yaml: train.lr: must be in (0, 1), got -1"},
      {"train:\n  lr: fast\n", "run.yaml: train.lr: has the wrong type ('fast')"},
      {"train:\n  optimizer: sgd\n", "run.yaml: train.optimizer: must be adamw or lamb, got sgd"},
      {"train:\n  learning_rate: 0.1\n", "run.yaml: train.learning_rate: is not a known key"},
      {"data:\n  max_seq_len: 4\n", "run.yaml: data.max_seq_len: must be in [8, 8192], got 4"},
      {"colour: blue\n", "run.yaml: colour: is not a known key"},
      {"train: 3\n", "run.yaml: train.: must be a mapping"},
      {"train:\n  warmup_steps: 5000\n", "run.yaml: train.warmup_steps: must be in [0, train.steps]"},
      {"train:\n  lr: 0.1\n  lr: 0.2\n", "run.yaml: train.lr: is given twice"},
      {"train:\n  device: gpu\n", "run.yaml: train.device: must be auto, cpu or cuda, got gpu"},
      {"train:\n  precision: fp16\n", "run.yaml: train.precision: must be fp32 or bf16, got fp16"},
      {"train:\n  device: cpu\n  precision: bf16\n", "run.yaml: train.precision: bf16 runs on CUDA only"},
      {"train:\n  tf32: maybe\n", "run.yaml: train.tf32: has the wrong type ('maybe')"},
      {"data:\n  objective: nsp\n", "run.yaml: data.objective: must be mlm_nsp, mlm or mlm_sop, got nsp"},
      {"data:\n  packing: true\n", "run.yaml: data.packing: needs data.objective: mlm (a packed sample has no "
                                    "sentence pair), got mlm_nsp"},
      {"data:\n  objective: mlm_sop\n  packing: true\n", "run.yaml: data.packing: needs data.objective: mlm"},
      {"train:\n  dropout: 0.1\n", "run.yaml: train.dropout: has the wrong type ('0.1')"},
      {"train:\n  anomaly:\n    action: skip\n", "run.yaml: train.anomaly.action: must be rollback or off, got skip"},
      {"train:\n  anomaly:\n    loss_spike: 0.5\n", "run.yaml: train.anomaly.loss_spike: must be 0 (not checked) or > 1"},
      {"train:\n  anomaly:\n    grad_norm_spike: -2\n", "run.yaml: train.anomaly.grad_norm_spike: must be 0"},
      {"train:\n  anomaly:\n    median_window: 3\n", "run.yaml: train.anomaly.median_window: must be in [10, 100000]"},
      {"train:\n  anomaly:\n    max_skips: -1\n", "run.yaml: train.anomaly.max_skips: must be >= 0"},
      {"train:\n  anomaly:\n    skip_window: 0\n", "run.yaml: train.anomaly.skip_window: must be >= 1"},
      {"train:\n  anomaly:\n    skip_steps: [5, 1000]\n", "run.yaml: train.anomaly.skip_steps: must be steps in [0, train.steps)"},
      {"train:\n  anomaly:\n    skip_steps: five\n", "run.yaml: train.anomaly.skip_steps: has the wrong type ('five')"},
      {"train:\n  anomaly:\n    spike: 3\n", "run.yaml: train.anomaly.spike: is not a known key"},
  };
  for (const Case& c : cases) {
    // Later keys of the same section replace the minimal config's (none overlap here).
    Result<RunConfig> r = Parse(c.extra.rfind("data:", 0) == 0
                                    ? "model: m.json\nvocab: v.txt\ndata:\n  db: x\n" + c.extra.substr(6)
                                    : std::string(kMinimal) + c.extra);
    ASSERT_FALSE(r.ok()) << c.extra;
    EXPECT_EQ(r.status().message().rfind(c.expected, 0), 0u) << r.status().message();
    EXPECT_EQ(r.status().message().find('\n'), std::string::npos) << "one line";
  }
}

TEST(RunConfigTest, MissingRequiredKeysAndBrokenYamlAreNamed) {
  Result<RunConfig> no_db = Parse("model: m.json\nvocab: v.txt\n");
  ASSERT_FALSE(no_db.ok());
  EXPECT_NE(no_db.status().message().find("data.db: is required"), std::string::npos);
  Result<RunConfig> broken = Parse("model: [unclosed\n");
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("run.yaml: not valid YAML"), std::string::npos);
  Result<RunConfig> missing = LoadRunConfig("/no/such/run.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/no/such/run.yaml"), std::string::npos);
}

// The bundled run configs (the demo's and the GPU recipes the docs cite)
// are valid, and the GPU ones train in bf16 on CUDA.
TEST(RunConfigTest, EveryBundledRunConfigLoads) {
  int loaded = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(BERT_SOURCE_DIR) + "/configs/runs")) {
    if (entry.path().extension() != ".yaml") continue;
    Result<RunConfig> c = LoadRunConfig(entry.path().string());
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ++loaded;
    if (c->name == "base" || c->name == "large") {
      EXPECT_EQ(c->train.device, "cuda") << entry.path();
      EXPECT_EQ(c->train.precision, "bf16") << entry.path();
      EXPECT_EQ(c->train.global_batch_size % c->train.micro_batch_size, 0) << entry.path();
    }
  }
  EXPECT_GE(loaded, 3) << "tiny, base and large";
}

}  // namespace
}  // namespace bert
