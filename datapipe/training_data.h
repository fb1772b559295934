// TrainingData: the global batches of a run, from a data config.
//
// Owns the corpus, its in-memory index, the masking vocabulary and the epoch
// plans, and answers "which samples make rank r's share of step s" — the one
// place where the step cursor becomes samples. Used by the single-process
// trainer and by the coordinator alike.
//
// Step rule: epoch e contributes floor(num_samples(e) / G) global batches;
// global batch k of epoch e is samples [k*G, (k+1)*G) of e's order, and the
// leftover num_samples(e) mod G samples of each epoch are not used (a batch
// never spans two epochs). Epoch sizes differ because the layout is re-drawn
// each epoch, so step -> (epoch, batch) walks the epoch sizes (cached).
// Rank r of W gets RankSlice(k, G, r, W) of that batch.
//
// Thread safety: not thread-safe (it builds and caches plans); use one per
// thread, or guard it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "datapipe/corpus_index.h"
#include "datapipe/corpus_store.h"
#include "datapipe/masking.h"
#include "datapipe/sample_plan.h"
#include "datapipe/training_sample.h"

namespace bert {

struct TrainingDataOptions {
  std::vector<std::string> dbs;  // corpus databases, in order
  std::string vocab_path;        // if set, must be the corpus's vocabulary
  SampleOptions sample;          // seed, lengths, masking
  uint64_t global_batch_size = 32;
  int num_threads = 1;           // for building epoch layouts
};

// Where global step s reads from.
struct StepLocation {
  uint64_t epoch = 0;
  uint64_t first_sample = 0;  // index of the global batch's first sample in the epoch order
};

class TrainingData {
 public:
  // Opens the corpus and builds epoch 0. Fails, naming the database or the
  // option, when the corpus is incomplete, the vocabulary differs, or an
  // epoch holds fewer samples than one global batch.
  static Result<std::unique_ptr<TrainingData>> Open(const TrainingDataOptions& options);

  Result<StepLocation> Locate(uint64_t step);
  // Samples of rank `rank` of `world` for global step `step`, in order.
  Status RankSamples(uint64_t step, uint32_t rank, uint32_t world, std::vector<TrainingSample>* samples);
  // Batches per epoch (the first epoch's; later ones differ slightly).
  uint64_t steps_in_epoch(uint64_t epoch);

  const MaskingVocab& vocab() const { return *vocab_; }
  const Corpus& corpus() const { return *corpus_; }
  const TrainingDataOptions& options() const { return options_; }

 private:
  TrainingData() = default;
  Result<const EpochPlan*> Plan(uint64_t epoch);

  TrainingDataOptions options_;
  std::unique_ptr<Corpus> corpus_;
  std::shared_ptr<const CorpusIndex> index_;
  std::shared_ptr<const MaskingVocab> vocab_;
  std::map<uint64_t, uint64_t> epoch_samples_;  // epoch -> number of samples
  std::unique_ptr<EpochPlan> plan_;             // the most recently used epoch
};

}  // namespace bert
