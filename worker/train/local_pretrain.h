// Single-process pretraining (`bert-worker --local`): the training loop read
// straight from the sample plan, without a coordinator.
//
// The loop, as a person would list it:
//   1. validate the run config and the model config; freeze the resolved
//      config into RUN_DIR/config.yaml;
//   2. open the corpus and the sample plan (datapipe/training_data.h);
//   3. build BertForPreTraining from its seed and the trainer;
//   4. for each step: take the global batch, cut it into micro-batches,
//      forward/backward each, clip, update;
//   5. every log.every_steps steps: print loss, MLM and NSP accuracy, lr,
//      samples/s, tokens/s, MFU (against an fp32 GEMM peak measured at
//      start) and an ETA, and append the same to RUN_DIR/metrics.jsonl.
// Returns a Status naming the bad key, file or database on failure.
#pragma once

#include <cstdint>
#include <string>

#include "common/run_config.h"
#include "common/status.h"

namespace bert {

struct LocalPretrainResult {
  int64_t steps = 0;
  double final_loss = 0;        // mean loss of the last logging window
  double final_mlm_accuracy = 0;
  double samples_per_second = 0;
  double mfu = 0;               // model FLOPs utilisation against the measured GEMM peak
};

Result<LocalPretrainResult> RunLocalPretraining(const RunConfig& config);

}  // namespace bert
