// bert-worker: one training process per GPU (or CPU slot).
//   bert-worker --local --config RUN.yaml [--db DIR...] [--steps N]
// trains in this one process straight from the sample plan. (The distributed
// mode, fed by bert-coordinator, comes with the coordinator.)
#include <CLI/CLI.hpp>

#include <iostream>

#include "common/logging.h"
#include "common/run_config.h"
#include "worker/local_pretrain.h"
#include "worker/runtime_setup.h"

int main(int argc, char** argv) {
  bert::ReexecWithTunedEnvironment(argv);  // first: OpenBLAS and OpenMP read these at load time
  bert::KeepLargeAllocationsOnHeap();
  bert::InitLogging(argv[0]);
  CLI::App app{"bert-worker: trains BERT (LibTorch). --local trains in this process from the corpus directly."};
  bool local = false;
  std::string config_path;
  std::vector<std::string> dbs;
  int64_t steps = 0;
  app.add_flag("--local", local, "Train in this single process, reading the sample plan directly")->required();
  app.add_option("--config", config_path, "Run config (YAML), see configs/")->required()->check(CLI::ExistingFile);
  app.add_option("--db", dbs, "Corpus databases (override data.db of the config)");
  app.add_option("--steps", steps, "Optimizer steps (override train.steps)")->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  CLI11_PARSE(app, argc, argv);

  bert::Result<bert::RunConfig> config = bert::LoadRunConfig(config_path);
  if (!config.ok()) {
    LOG(ERROR) << "[worker] " << config.status().message();
    return 2;
  }
  if (!dbs.empty()) config->data.db = dbs;
  if (steps > 0) {
    config->train.steps = steps;
    config->train.warmup_steps = std::min(config->train.warmup_steps, steps);
  }
  bert::Status valid = config->Validate();
  if (!valid.ok()) {
    LOG(ERROR) << "[worker] " << config_path << ": " << valid.message();
    return 2;
  }
  bert::Result<bert::LocalPretrainResult> result = bert::RunLocalPretraining(*config);
  if (!result.ok()) {
    LOG(ERROR) << "[worker] " << result.status().message();
    return 1;
  }
  std::printf("trained %lld steps: loss %.4f, MLM accuracy %.3f, %.1f samples/s, MFU %.1f%%\n",
              (long long)result->steps, result->final_loss, result->final_mlm_accuracy, result->samples_per_second,
              100 * result->mfu);
  return 0;
}
