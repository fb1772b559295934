// Fine-tuning config: defaults, one-line errors naming file and key, relative
// paths, and the resolved YAML's round trip (what bert-worker reads).
#include "finetune/finetune_config.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace bert::finetune {
namespace {

TEST(FinetuneConfigTest, EmptyFileGivesTheDocumentedDefaults) {
  Result<FinetuneConfig> c = ParseFinetuneConfig("", "ft.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->init, "none");
  EXPECT_EQ(c->max_seq_len, 128);
  EXPECT_EQ(c->batch_size, 32);
  EXPECT_EQ(c->epochs, 3);
  EXPECT_DOUBLE_EQ(c->lr, 2e-5);
  EXPECT_DOUBLE_EQ(c->warmup_ratio, 0.1);
  EXPECT_EQ(c->seed, 42u);
  EXPECT_EQ(c->loss, "cross_entropy");
  EXPECT_EQ(c->early_stopping_metric, "macro_f1");
  EXPECT_EQ(c->fields.text, "text");
  EXPECT_EQ(c->fields.label, "label");
  EXPECT_EQ(c->format, FileFormat::kAuto);
  // Parsing accepts a partial file (bertctl's flags fill it); Validate wants a runnable job.
  Status valid = c->Validate();
  ASSERT_FALSE(valid.ok());
  EXPECT_EQ(valid.message(), "ft.yaml: output: is required: the output directory");
}

TEST(FinetuneConfigTest, BadValuesNameFileAndKey) {
  struct Case {
    std::string yaml;
    std::string expected;
  };
  const Case cases[] = {
      {"train:\n  lr: -1\n", "ft.yaml: train.lr: must be in (0, 1), got -1"},
      {"train:\n  lr: fast\n", "ft.yaml: train.lr: has the wrong type ('fast')"},
      {"train:\n  learning_rate: 0.1\n", "ft.yaml: train.learning_rate: is not a known key"},
      {"colour: blue\n", "ft.yaml: colour: is not a known key"},
      {"train:\n  epochs: 0\n", "ft.yaml: train.epochs: must be in [1, 10000], got 0"},
      {"train:\n  device: tpu\n", "ft.yaml: train.device: must be auto, cpu or cuda, got tpu"},
      {"train:\n  max_seq_len: 2\n", "ft.yaml: train.max_seq_len: must be in [3, 8192], got 2"},
      {"loss:\n  type: hinge\n", "ft.yaml: loss.type: must be cross_entropy or focal, got hinge"},
      {"loss:\n  class_weights: inverse\n", "ft.yaml: loss.class_weights: must be balanced or a list of weights"},
      {"loss:\n  class_weights: [1, -2]\n", "ft.yaml: loss.class_weights: every weight must be > 0"},
      {"labels: [a, b]\nloss:\n  class_weights: [1, 2, 3]\n",
       "ft.yaml: loss.class_weights: needs one weight per label (2), got 3"},
      {"labels: [a, a]\n", "ft.yaml: labels: must be distinct non-empty names"},
      {"early_stopping:\n  metric: f1\n", "ft.yaml: early_stopping.metric: must be accuracy, macro_f1 or loss, got f1"},
      {"data:\n  format: xml\n", "ft.yaml: data.format: format must be auto, jsonl, csv or tsv, got 'xml'"},
      {"train: 3\n", "ft.yaml: train.: must be a mapping"},
      {"train:\n  lr: 0.1\n  lr: 0.2\n", "ft.yaml: train.lr: is given twice"},
      {"train: [1\n", "ft.yaml:"},
      {"distill:\n  temperature: 0\n", "ft.yaml: distill.temperature: must be in (0, 100], got 0"},
      {"distill:\n  alpha: 1.5\n", "ft.yaml: distill.alpha: must be in [0, 1], got 1.5"},
      {"distill:\n  transfer: extra.jsonl\n", "ft.yaml: distill.transfer: needs distill.teacher"},
      {"distill:\n  teacher_model: t\n", "ft.yaml: distill.teacher_model: is not a known key"},
  };
  for (const Case& c : cases) {
    Result<FinetuneConfig> r = ParseFinetuneConfig(c.yaml, "ft.yaml");
    ASSERT_FALSE(r.ok()) << c.yaml;
    EXPECT_EQ(r.status().message().rfind(c.expected, 0), 0u) << r.status().message();
    EXPECT_EQ(r.status().message().find('\n'), std::string::npos) << "one line";
  }
}

TEST(FinetuneConfigTest, LoadResolvesPathsAgainstTheFilesDirectory) {
  bert::testing::TempDir dir;
  bert::testing::WriteText(dir / "ft.yaml",
                           "init: runs/tiny\noutput: out\ndata:\n  train: d/train.jsonl\n  dev: /abs/dev.csv\n");
  Result<FinetuneConfig> c = LoadFinetuneConfig(dir / "ft.yaml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->init, dir / "runs/tiny");
  EXPECT_EQ(c->output, dir / "out");
  EXPECT_EQ(c->train_file, dir / "d/train.jsonl");
  EXPECT_EQ(c->dev_file, "/abs/dev.csv");
  EXPECT_EQ(c->test_file, "");
  EXPECT_TRUE(c->Validate().ok()) << c->Validate().message();
  Result<FinetuneConfig> missing = LoadFinetuneConfig(dir / "nope.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.yaml"), std::string::npos);
}

TEST(FinetuneConfigTest, ResolvedYamlRoundTripsEveryKey) {
  FinetuneConfig c;
  c.source = "resolved";
  c.init = "/runs/tiny";
  c.output = "/out";
  c.train_file = "/d/train.jsonl";
  c.dev_file = "/d/dev.jsonl";
  c.test_file = "/d/test.jsonl";
  c.format = FileFormat::kCsv;
  c.fields.text = "premise";
  c.fields.text_pair = "hypothesis";
  c.fields.label = "gold";
  c.labels = {"1", "true", "no", "a: b"};  // YAML-ish names stay strings
  c.max_seq_len = 64;
  c.lr = 3e-5;
  c.warmup_ratio = 0.06;
  c.seed = 7;
  c.eval_every_steps = 50;
  c.layer_lr_decay = 0.95;
  c.freeze_embeddings = true;
  c.freeze_layers = 2;
  c.loss = "focal";
  c.label_smoothing = 0.1;
  c.focal_gamma = 1.5;
  c.class_weights_mode = "explicit";
  c.class_weights = {0.5, 1.25, 1.0 / 3, 2};
  c.rdrop_alpha = 4;
  c.fgm_epsilon = 0.3;
  c.early_stopping_metric = "loss";
  c.patience = 3;
  c.distill_teacher = "/ft/teacher";
  c.distill_temperature = 4;
  c.distill_alpha = 0.9;
  c.distill_transfer_file = "/d/unlabelled.jsonl";
  c.distill_teacher_logits = "/cache/logits.safetensors";
  ASSERT_TRUE(c.Validate().ok()) << c.Validate().message();
  const std::string yaml = FinetuneConfigToYaml(c);
  Result<FinetuneConfig> back = ParseFinetuneConfig(yaml, "finetune.yaml");
  ASSERT_TRUE(back.ok()) << back.status().message() << "\n" << yaml;
  EXPECT_EQ(FinetuneConfigToYaml(*back), yaml);
  EXPECT_EQ(back->labels, c.labels);
  EXPECT_EQ(back->class_weights, c.class_weights);  // exact doubles
  EXPECT_EQ(back->lr, 3e-5);
  EXPECT_EQ(back->fields.text_pair, "hypothesis");
  EXPECT_EQ(back->format, FileFormat::kCsv);
  EXPECT_TRUE(back->freeze_embeddings);
  EXPECT_EQ(back->early_stopping_metric, "loss");
  EXPECT_NE(yaml.find("lr: 3e-05"), std::string::npos) << yaml;
  EXPECT_EQ(back->distill_teacher, "/ft/teacher");
  EXPECT_EQ(back->distill_temperature, 4);
  EXPECT_EQ(back->distill_alpha, 0.9);
  EXPECT_EQ(back->distill_transfer_file, "/d/unlabelled.jsonl");
  EXPECT_EQ(back->distill_teacher_logits, "/cache/logits.safetensors");

  c.class_weights_mode = "balanced";
  c.class_weights.clear();
  back = ParseFinetuneConfig(FinetuneConfigToYaml(c), "finetune.yaml");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->class_weights_mode, "balanced");
  c.class_weights_mode = "";
  back = ParseFinetuneConfig(FinetuneConfigToYaml(c), "finetune.yaml");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->class_weights_mode, "");
  EXPECT_TRUE(back->class_weights.empty());
}

// finetune_config_fuzz: an unknown loss.type holding a newline ("cross\nent",
// quoted) was echoed raw by the value checks.
TEST(FinetuneConfigTest, BadEnumValueWithANewlineStaysOneLine) {
  Result<FinetuneConfig> config =
      ParseFinetuneConfig("loss:\n  type: \"cross\\nent\\x01\"\n", "ft.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(), "ft.yaml: loss.type: must be cross_entropy or focal, got cross\\nent\\x01");
}

}  // namespace
}  // namespace bert::finetune
