// The training stall an asynchronous checkpoint save causes, as a fraction
// of a step (issue target: under 5% for bert-base): median step time of
// bert-base (batch 8, seq 128, AdamW, fp32, CPU) without saves, beside the
// same with a CheckpointSaver::Save() issued before every step. The saver
// copies the rank's ranges (params and both moments) into memory on the
// training thread, then writes and fsyncs the shard on a background thread
// while the next step trains; both costs land in the measured step.
//
//   checkpoint_stall_bench [--smoke] [--model base|tiny] [--steps N] [--world W]
// --world W saves the 1/W share a rank of W writes (default 1: everything).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "common/logging.h"
#include "worker/model/bert_heads.h"
#include "worker/train/checkpoint_io.h"
#include "worker/train/runtime_setup.h"
#include "worker/train/train_step.h"

namespace bert {
namespace {

using Clock = std::chrono::steady_clock;

PretrainBatch MakeBatch(int64_t b, int64_t t, int64_t m, int64_t vocab_size) {
  torch::manual_seed(1);
  PretrainBatch batch;
  batch.input_ids = torch::randint(1000, vocab_size, {b, t}, torch::kLong);
  batch.token_type_ids = torch::zeros({b, t}, torch::kLong);
  batch.lengths = torch::full({b}, t, torch::kLong);
  torch::Tensor rows = torch::arange(b, torch::kLong).unsqueeze(1) * t;
  torch::Tensor columns = 1 + torch::arange(m, torch::kLong) * ((t - 2) / m);
  batch.masked_positions = (rows + columns.unsqueeze(0)).reshape({-1});
  batch.masked_labels = torch::randint(1000, vocab_size, {b * m}, torch::kLong);
  batch.nsp_labels = torch::randint(0, 2, {b}, torch::kLong);
  return batch;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Main(int argc, char** argv) {
  bool smoke = false;
  std::string model_name = "base";
  int steps = 5;
  uint32_t world = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--smoke") {
      smoke = true;
    } else if (arg == "--model" && i + 1 < argc) {
      model_name = argv[++i];
    } else if (arg == "--steps" && i + 1 < argc) {
      steps = std::max(2, std::atoi(argv[++i]));
    } else if (arg == "--world" && i + 1 < argc) {
      world = static_cast<uint32_t>(std::max(1, std::atoi(argv[++i])));
    } else {
      std::fprintf(stderr, "usage: checkpoint_stall_bench [--smoke] [--model base|tiny] [--steps N] [--world W]\n");
      return 2;
    }
  }
  if (smoke) {
    model_name = "tiny";
    steps = 2;
  }
  const int64_t batch_size = smoke ? 4 : 8, seq_len = smoke ? 32 : 128, masked = smoke ? 4 : 20;
  auto model = BertForPreTraining::FromConfigFile(std::string(BERT_SOURCE_DIR) + "/configs/models/bert-" + model_name +
                                                  ".json");
  if (!model.ok()) {
    std::fprintf(stderr, "checkpoint_stall_bench: %s\n", model.status().message().c_str());
    return 2;
  }
  TrainerOptions options;
  options.schedule.total_steps = 1000;
  options.schedule.warmup_steps = 10;
  Trainer trainer(model->get(), options);
  const PretrainBatch batch = MakeBatch(batch_size, seq_len, masked, (*model)->config().vocab_size);
  const std::string dir = (std::filesystem::temp_directory_path() / ("stall-bench-" + std::to_string(::getpid())))
                              .string();
  nlohmann::json state = ModelStateJson((*model)->parameters(), trainer.optimizer(), options.schedule, 0);
  state["model_config"] = (*model)->config().ToJson();  // what a run's config.yaml would add
  trainer.TrainStep({batch});  // warm-up: allocations, moments

  auto run = [&](bool save) {
    std::vector<double> times;
    int durable = 0;
    CheckpointSaver saver(dir, 0, world, [&](uint64_t, const ShardInfo&) { ++durable; });
    for (int s = 0; s < steps; ++s) {
      const Clock::time_point start = Clock::now();
      if (save) {
        Status saved = saver.Save(static_cast<uint64_t>(s + 1), (*model)->parameters(), trainer.optimizer(),
                                  (*model)->dropout_rng(), state);
        if (!saved.ok()) std::fprintf(stderr, "save: %s\n", saved.message().c_str());
      }
      trainer.TrainStep({batch});
      times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    }
    Status waited = saver.Wait();
    if (!waited.ok()) std::fprintf(stderr, "save: %s\n", waited.message().c_str());
    return std::make_pair(Median(times), durable);
  };
  const auto [plain_s, unused] = run(false);
  const auto [saving_s, saves] = run(true);
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  const double shard_mb = 3.0 * 4.0 * static_cast<double>((*model)->parameters().numel()) / world / 1e6;
  std::printf("checkpoint_stall_bench: bert-%s, batch %lld, seq %lld, AdamW, %d steps each; shard %.0f MB (1/%u of "
              "params + 2 moments)\n",
              model_name.c_str(), static_cast<long long>(batch_size), static_cast<long long>(seq_len), steps,
              shard_mb, world);
  std::printf("  median step without saves %.1f ms | with an async save every step %.1f ms | stall %.1f%% of a step "
              "(target < 5%%) | %d shards written\n",
              1e3 * plain_s, 1e3 * saving_s, 100.0 * (saving_s - plain_s) / plain_s, saves);
  return saves == steps ? 0 : 1;
}

}  // namespace
}  // namespace bert

int main(int argc, char** argv) {
  bert::ReexecWithTunedEnvironment(argv);
  bert::KeepLargeAllocationsOnHeap();
  bert::InitLogging(argv[0]);
  return bert::Main(argc, argv);
}
