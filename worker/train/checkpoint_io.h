// The worker's half of a checkpoint (checkpoint/checkpoint.h): what goes
// into a rank's shard and how a model, its optimizer and its dropout stream
// come back from a committed checkpoint.
//
// Sections: "params" (the flat parameters), "exp_avg" and "exp_avg_sq"
// (the optimizer's moments). Rank r of W stores the element range
// ShardRanges(N, W)[r] of each: the ranks write disjoint parts in parallel.
// With ZeRO-1 (train_step.h, OptimizerShard) that range is exactly the
// optimizer state rank r keeps; a replicated optimizer holds all of it.
// Restoring reads all the parameters and the moments of the optimizer's own
// range, from a checkpoint of any world size.
// Its rank state is its dropout stream (seed, counter). Rank 0 also writes
// rank0-state.json: the layout (name, dtype, shape, offset of every tensor),
// the optimizer (kind, hyperparameters, step count), the schedule and the
// initialisation seed, which the coordinator puts in the manifest.
//
// Saving is asynchronous: Save() copies this rank's ranges into host memory
// (3 x N/W floats; from a GPU, asynchronous copies into pinned memory) and
// returns; a background thread writes the
// shard, fsyncs it and calls the `durable` callback (which reports it to the
// coordinator). One save is in flight at a time: Save() first waits for the
// previous one. Not thread-safe otherwise: one training thread calls it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "common/status.h"
#include "worker/model/flat_ops.h"
#include "worker/model/flat_parameters.h"
#include "worker/train/lr_schedule.h"
#include "worker/train/optimizer.h"

namespace bert {

// The model-side part of a manifest (rank0-state.json).
nlohmann::json ModelStateJson(const FlatParameters& params, const FlatOptimizer& optimizer,
                              const LrSchedule& schedule, uint64_t init_seed);

class CheckpointSaver {
 public:
  using DurableFn = std::function<void(uint64_t step, const ShardInfo& shard)>;
  CheckpointSaver(std::string run_dir, uint32_t rank, uint32_t world_size, DurableFn durable);
  ~CheckpointSaver();  // waits for a save in flight

  // Starts saving the state after `step` steps. rank0_state: written by
  // rank 0 only (ModelStateJson). Returns the previous save's error, if any.
  Status Save(uint64_t step, const FlatParameters& params, const FlatOptimizer& optimizer, const DropoutRng& rng,
              const nlohmann::json& rank0_state);
  // Waits for the save in flight; its error, if any.
  Status Wait();

 private:
  const std::string run_dir_;
  const uint32_t rank_, world_size_;
  DurableFn durable_;
  std::thread thread_;
  Status result_;
  torch::Tensor host_;  // the copied ranges, section after section (fp32; pinned for a GPU model)
};

// Restores params, optimizer moments and step count (read into host memory,
// then copied to the tensors' device), and this rank's
// dropout stream (from its own shard when the world size is the same; else
// a fresh stream for (seed, rank, step)) from `checkpoint`. Checks that the
// layout and the optimizer kind match the model's; errors name the
// checkpoint directory and the field.
Status RestoreFromCheckpoint(const LoadedCheckpoint& checkpoint, FlatParameters* params, FlatOptimizer* optimizer,
                             DropoutRng* rng, uint32_t rank, uint32_t world_size);

}  // namespace bert
