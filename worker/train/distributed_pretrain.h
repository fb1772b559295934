// Data-parallel pretraining (`bert-worker` under mpirun or srun): batches
// come from bert-coordinator, gradients are summed over ranks.
//
// Per optimizer step, on every rank:
//   1. take this rank's K micro-batches of the step from the coordinator
//      (CoordinatorClient: prefetched, so normally no wait);
//   2. all-reduce the step's masked-position and sequence counts, so every
//      rank weights its losses by its share of the whole step
//      (LossWeights::ShareOf) and the summed gradient is that of one batch
//      of all the step's samples, whatever W and K are;
//   3. forward/backward each micro-batch into the flat gradient buffer;
//   4. reduce-scatter (sum) the flat gradient buffer, so that each rank
//      holds the sum of its ZeRO-1 part, ShardRanges(N, W)[rank];
//   5. clip (the norm's partial squares summed over ranks) and update that
//      part with the optimizer state only this rank keeps (ZeRO-1: optimizer
//      memory / W), then all-gather the parameters: every rank ends the
//      step with the same full parameters. (--replicate-optimizer instead
//      all-reduces the gradients in buckets and every rank updates all of
//      them with a full copy of the state.)
//   6. acknowledge the micro-batches, the last one with the step's figures
//      over all ranks (loss, accuracies, lr, counts, FLOPs, this rank's
//      compute time), which the coordinator turns into /status, /metrics
//      and RUN_DIR/metrics.jsonl; rank 0 also logs a progress line
//      (pretrain_progress.h);
//   7. every checksum_every steps, all ranks compare a checksum of their
//      parameters and fail loudly if any differs.
// When the coordinator orders an abort (a peer died) or goes silent, the
// client's I/O thread calls Communicator::Abort, which ends this process
// with the matching exit code even if it is blocked in a collective.
//
// Initial weights come from train.init_seed on every rank; dropout streams
// are seeded per rank (rank 0's equals --local's).
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include "common/run_config.h"
#include "common/status.h"
#include "worker/comm/communicator.h"

namespace bert {

struct DistributedOptions {
  std::string endpoint;             // the coordinator's; empty: read RUN_DIR/coordinator/endpoint
  int endpoint_wait_ms = 60000;     // how long to wait for that file to appear
  std::string keys_dir;             // CURVE keys (common/curve_keys.h); empty: RUN_DIR/keys
  bool insecure = false;            // connect without CURVE (the coordinator runs --insecure)
  std::string run_id;               // empty: the config's name
  uint64_t generation = 0;          // launcher restart count (for the coordinator's logs)
  int register_timeout_ms = 60000;
  int64_t checksum_every = 100;     // steps between parameter checksums (0: only at the end)
  bool shard_optimizer = true;       // ZeRO-1; false: replicated state, bucketed all-reduce
  size_t bucket_bytes = size_t{25} << 20;  // all-reduce buckets (replicated optimizer only)
  std::string save_params;          // rank 0 writes the final flat fp32 parameters here (raw, native order)
  std::string device = "cpu";       // where the model trains, as torch::Device parses it ("cpu", "cuda:1"):
                                    // worker/train/device.h's choice for this process
  std::set<uint64_t> fault_nan_steps;  // tests: rank 0 puts a NaN into these steps' gradients
  Communicator* buffer_comm = nullptr;  // carries the flat gradients and parameters (NCCL with a CUDA device);
                                        // null: `comm`, which always carries the host scalars and barriers
};

struct DistributedOutcome {
  Status status;
  int exit_code = 0;                // common/protocol.h ExitCode
  int64_t steps = 0;                // optimizer steps this process made
  uint64_t final_checksum = 0;      // xxh3 of the final parameter bytes
  double final_loss = 0;
};

DistributedOutcome RunDistributedPretraining(const RunConfig& config, Communicator* comm,
                                             const DistributedOptions& options);

}  // namespace bert
