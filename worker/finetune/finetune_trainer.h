// Fine-tuning a sequence classifier (Devlin et al. 2019, section 4.1):
// `bert-worker --finetune OUTPUT/finetune.yaml` on every rank.
//
// The loop, per epoch: a deterministic shuffle of the training set from
// (seed, epoch); global batches of train.batch_size in that order (the last
// one shorter); rank r of W takes a contiguous slice of each global batch,
// padded to its own longest example. Each rank's loss is the SUM over its
// examples divided by the global batch's normaliser (finetune_loss.h), so
// the gradient summed over ranks (MPI all-reduce) equals one process's on
// the whole batch: W ranks train the same weights as 1 (up to float
// summation order) when dropout is off; with dropout each rank draws its own
// masks. Then R-Drop / FGM when configured, global-norm clipping, and AdamW
// with linear warmup and decay and per-layer lr scales (finetune_optim.h).
//
// Evaluation on dev after every epoch (or every eval_every_steps steps)
// computes finetune/metrics.h's metrics, all ranks scoring a slice each;
// the best weights by early_stopping.metric are kept in memory, and
// training stops after `patience` evaluations without improvement.
//
// Outputs (rank 0), in OUTPUT: the best model as an HF directory
// (interop/pretrained.h WriteHfDirectory), then metrics.json, last and
// atomically: {"dev", "test" (with a test file), "best_step", "best_epoch",
// "history": [{"step", "epoch", "train_loss", "dev"}], "init", "seed"}.
// Not thread-safe: one call per process.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "finetune/finetune_config.h"
#include "worker/comm/communicator.h"

namespace bert {

struct FinetuneOutcome {
  Status status;
  int exit_code = 0;       // common/protocol.h: 0 ok, 2 bad config, 7 bad data, 1 otherwise
  int64_t steps = 0;       // optimizer updates done
  int64_t best_step = 0;   // the step of the kept weights
  double best_metric = 0;  // early_stopping.metric of the best dev evaluation
};

// `comm` may be null: a world of one. It carries the host scalars;
// buffer_comm (null: comm) the flat gradients, which live on the model's
// device (train.device): NCCL's on a GPU.
FinetuneOutcome RunFinetune(const finetune::FinetuneConfig& config, Communicator* comm,
                            Communicator* buffer_comm = nullptr);

// The examples of epoch `epoch` (0-based) in training order: a Fisher-Yates
// shuffle of 0..n-1 driven by a generator seeded from (seed, epoch). Pure.
std::vector<int64_t> EpochOrder(int64_t n, uint64_t seed, int64_t epoch);

// Rank `rank`'s contiguous slice [first, second) of a batch of n examples
// split over `world` ranks (sizes differ by at most one). Pure.
std::pair<int64_t, int64_t> RankSlice(int64_t n, int rank, int world);

}  // namespace bert
