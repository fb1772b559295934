// TrainingData: the samples a rank trains on at a global step, for a run
// config. It is the single-process counterpart of the coordinator's batch
// builder and uses the same pieces: DataSource (corpus, index, vocabulary,
// sample options), StepMapper (global step -> epoch, by the rule in
// dispatch_plan.h) and RankSlice.
//
// Not thread-safe: it builds and caches one epoch plan at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/run_config.h"
#include "common/status.h"
#include "datapipe/data_source.h"
#include "datapipe/dispatch_plan.h"
#include "datapipe/sample_plan.h"
#include "datapipe/training_sample.h"

namespace bert {

class TrainingData {
 public:
  // Opens the corpus of config.data and builds epoch 0. Fails, naming the
  // database or the key, when the corpus is incomplete, the vocabulary
  // differs, or an epoch holds fewer samples than one global batch.
  static Result<std::unique_ptr<TrainingData>> Open(const RunConfig& config, int num_threads);

  // Samples of rank `rank` of `world` at global step `step`, in order.
  Status RankSamples(uint64_t step, uint32_t rank, uint32_t world, std::vector<TrainingSample>* samples);

  const MaskingVocab& vocab() const { return *source_.vocab; }

 private:
  TrainingData() = default;
  Result<const EpochPlan*> Plan(uint64_t epoch);

  DataSource source_;
  uint64_t global_batch_size_ = 0;
  int num_threads_ = 1;
  std::unique_ptr<StepMapper> mapper_;
  std::unique_ptr<EpochPlan> plan_;  // the most recently used epoch
};

}  // namespace bert
