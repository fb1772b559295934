// The fine-tuning loop's pure parts (epoch order, rank slices) and one
// in-process run with every regulariser on (worker/finetune/finetune_trainer.h).
#include "worker/finetune/finetune_trainer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <numeric>

#include "common/file_util.h"
#include "finetune/finetune_config.h"
#include "interop/safetensors.h"
#include "test_util.h"
#include "worker/model/bert_heads.h"

namespace bert {
namespace {

TEST(EpochOrderTest, IsASeededPermutationThatChangesEachEpoch) {
  const std::vector<int64_t> order = EpochOrder(100, 42, 0);
  std::vector<int64_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> identity(100);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_EQ(sorted, identity);
  EXPECT_NE(order, identity);
  EXPECT_EQ(order, EpochOrder(100, 42, 0));  // deterministic
  EXPECT_NE(order, EpochOrder(100, 42, 1));  // reshuffled per epoch
  EXPECT_NE(order, EpochOrder(100, 43, 0));  // and per seed
  EXPECT_TRUE(EpochOrder(0, 42, 0).empty());
}

TEST(RankSliceTest, ContiguousSlicesCoverEveryBatchForEveryWorldSize) {
  for (int world = 1; world <= 16; ++world) {
    for (int64_t n = 0; n <= 40; ++n) {
      int64_t next = 0;
      for (int rank = 0; rank < world; ++rank) {
        const auto [begin, end] = RankSlice(n, rank, world);
        EXPECT_EQ(begin, next) << "n " << n << " world " << world;
        EXPECT_LE(end - begin, n / world + 1);
        EXPECT_GE(end - begin, n / world);
        next = end;
      }
      EXPECT_EQ(next, n);
    }
  }
}

std::vector<float> TensorValues(const std::vector<NamedTensor>& tensors, const std::string& name) {
  for (const NamedTensor& tensor : tensors) {
    if (tensor.name == name) return tensor.values;
  }
  return {};
}

TEST(RunFinetuneTest, RegularisersRunAndFrozenEmbeddingsStayAsInitialised) {
  testing::TempDir dir;
  BertConfig model;
  model.vocab_size = 30522;
  model.hidden_size = 32;
  model.num_hidden_layers = 2;
  model.num_attention_heads = 2;
  model.intermediate_size = 64;
  model.max_position_embeddings = 64;
  testing::WriteText(dir / "model.json", model.ToJson().dump());
  finetune::FinetuneConfig config;
  config.source = dir / "finetune.yaml";
  config.model = dir / "model.json";
  config.vocab = testing::UncasedVocab();
  config.output = dir / "out";
  const std::string fixture = std::string(BERT_FIXTURE_DIR) + "/classification/fortunes_";
  config.train_file = fixture + "train.jsonl";
  config.dev_file = fixture + "dev.jsonl";
  config.labels = {"computers", "food", "love"};
  config.max_seq_len = 32;
  config.batch_size = 32;
  config.epochs = 1;
  config.lr = 1e-3;
  config.loss = "focal";
  config.class_weights_mode = "explicit";
  config.class_weights = {1.0, 2.0, 1.0};
  config.rdrop_alpha = 1.0;
  config.fgm_epsilon = 0.5;
  config.layer_lr_decay = 0.8;
  config.freeze_embeddings = true;
  config.eval_every_steps = 3;

  const FinetuneOutcome outcome = RunFinetune(config, nullptr);
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.ToString();
  EXPECT_EQ(outcome.steps, 8);  // ceil(240 / 32)
  const nlohmann::json metrics = nlohmann::json::parse(*ReadFile(dir / "out/metrics.json"));
  EXPECT_EQ(metrics["history"].size(), 3u);  // steps 3, 6 and the last (8)
  EXPECT_EQ(metrics["history"][2]["step"], 8);

  Result<std::vector<NamedTensor>> trained = ReadSafetensors(dir / "out/model.safetensors");
  ASSERT_TRUE(trained.ok()) << trained.status().ToString();
  model.num_labels = 3;
  ModelOptions seeded;
  seeded.seed = config.seed;
  BertForSequenceClassification initial(model, seeded);
  const FlatParameters& params = initial.parameters();
  for (const std::string name : {"bert.embeddings.word_embeddings.weight", "bert.embeddings.LayerNorm.weight",
                                 "bert.encoder.layer.0.attention.self.query.weight", "classifier.weight"}) {
    const ParameterSlot& slot = params.slot(static_cast<size_t>(params.IndexOf(name)));
    const float* start = params.values().data_ptr<float>() + slot.offset;
    const bool unchanged = TensorValues(*trained, name) == std::vector<float>(start, start + slot.numel);
    EXPECT_EQ(unchanged, name.rfind("bert.embeddings.", 0) == 0) << name;
  }
}

TEST(RunFinetuneTest, BadConfigValuesExitTwo) {
  finetune::FinetuneConfig config;
  config.source = "ft.yaml";
  config.lr = -1;
  const FinetuneOutcome outcome = RunFinetune(config, nullptr);
  EXPECT_FALSE(outcome.status.ok());
  EXPECT_EQ(outcome.exit_code, 2);
}

}  // namespace
}  // namespace bert
