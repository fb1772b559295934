// Dispatch plan: which samples each (step, rank, micro-batch) gets. Pure
// arithmetic over the sample plan (datapipe/sample_plan.h); no I/O.
//
// Rule (DESIGN.md, "Determinism of data"):
//   - Steps run through the epochs in order. Epoch e contributes
//     steps_per_epoch(e) = floor(num_samples(e) / G) steps; the last
//     num_samples(e) mod G samples of an epoch are never used, so a global
//     batch never spans two epochs. Epoch sizes differ (each epoch re-draws
//     the instance layout), hence global step -> (epoch, step in epoch) is a
//     walk over epoch sizes.
//   - Step k of epoch e is samples [k*G, (k+1)*G) of that epoch's order; rank
//     r of W takes RankSlice(k, G, r, W) and cuts it into (G/W) / m
//     micro-batches of m = micro_batch_size consecutive samples.
// So resume needs only the step cursor, and a different world size or
// micro-batch size sees the same global batches.
//
// Thread safety: DispatchGeometry and MicroBatchRange are values / pure;
// StepMapper is thread-safe (it caches epoch sizes under a mutex).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "datapipe/sample_plan.h"

namespace bert {

struct DispatchGeometry {
  uint64_t global_batch_size = 0;  // G: samples per step over all ranks and micro-batches
  uint32_t world_size = 0;         // W: ranks
  uint64_t micro_batch_size = 0;   // samples per micro-batch (forward pass) per rank
  uint32_t micro_batches = 0;      // micro-batches per rank per step: (G / W) / micro_batch_size

  // micro_batch_size 0 means G / W (no gradient accumulation). Requires W to
  // divide G and the micro-batch size to divide G / W, so every rank does the
  // same number of equal forward passes. Errors name the config key or flag.
  static Result<DispatchGeometry> Make(uint64_t global_batch_size, uint32_t world_size, uint64_t micro_batch_size);
  uint64_t samples_per_rank() const { return global_batch_size / world_size; }
};

// One unit of dispatch: what one rank trains on in one forward pass.
struct BatchKey {
  uint64_t step = 0;
  uint32_t rank = 0;
  uint32_t micro = 0;
  bool operator==(const BatchKey& o) const { return step == o.step && rank == o.rank && micro == o.micro; }
  bool operator<(const BatchKey& o) const {
    if (step != o.step) return step < o.step;
    return rank != o.rank ? rank < o.rank : micro < o.micro;
  }
  std::string ToString() const;  // "step 12 rank 1 micro 0"
};

// Where a global step lies.
struct StepLocation {
  uint64_t epoch = 0;
  uint64_t step_in_epoch = 0;  // k: the step is samples [k*G, (k+1)*G) of the epoch
};

// Epoch-local samples of micro-batch `micro` of `rank` at `location`. Pure.
// Requires rank < world_size and micro < micro_batches.
SampleRange MicroBatchRange(const DispatchGeometry& geometry, const StepLocation& location, uint32_t rank,
                            uint32_t micro);

// Global step -> (epoch, step in epoch), by walking epoch sizes, which it
// asks of `epoch_size` (e.g. by building the epoch's layout, or from the
// ledger) once per epoch and caches.
class StepMapper {
 public:
  using EpochSizeFn = std::function<Result<uint64_t>(uint64_t epoch)>;
  StepMapper(uint64_t global_batch_size, EpochSizeFn epoch_size);

  // Fails when an epoch has fewer than G samples (naming the epoch), or with
  // epoch_size's error.
  Result<StepLocation> Locate(uint64_t step);
  // Sizes learned so far, epoch 0 first.
  std::vector<uint64_t> KnownEpochSizes() const;

 private:
  const uint64_t global_batch_size_;
  EpochSizeFn epoch_size_;
  mutable std::mutex mutex_;
  std::vector<uint64_t> epoch_sizes_;
  std::vector<uint64_t> first_step_{0};  // first global step of each known epoch, and one past the last
};

// The committed-step cursor: the first step that not every (rank, micro)
// has acknowledged. Acks may arrive out of step order (ranks run ahead of
// each other by up to their prefetch). Not thread-safe.
class StepTracker {
 public:
  StepTracker(uint64_t cursor, uint64_t acks_per_step) : cursor_(cursor), acks_per_step_(acks_per_step) {}
  // Counts one ack of `step`; the caller guarantees each (step, rank, micro)
  // is counted once and step >= cursor(). Returns true when the cursor moved.
  bool Ack(uint64_t step);
  uint64_t cursor() const { return cursor_; }

 private:
  uint64_t cursor_;
  uint64_t acks_per_step_;
  std::vector<std::pair<uint64_t, uint64_t>> pending_;  // (step, acks) for steps >= cursor, sorted by step
};

}  // namespace bert
