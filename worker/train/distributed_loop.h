// DistributedLoop: the training loop of RunDistributedPretraining
// (distributed_pretrain.h), internal to worker/train. Its setup (the model,
// the coordinator, the restore) and its end are in distributed_pretrain.cc;
// a step, trained, skipped or rolled back (train.anomaly), and what follows
// it (checksums, checkpoints, the time budget's end) in distributed_step.cc.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/run_config.h"
#include "common/status.h"
#include "coordinator/client.h"
#include "worker/comm/communicator.h"
#include "worker/comm/traced_communicator.h"
#include "worker/model/bert_heads.h"
#include "worker/train/anomaly.h"
#include "worker/train/checkpoint_io.h"
#include "worker/train/distributed_pretrain.h"
#include "worker/train/pretrain_progress.h"
#include "worker/train/train_step.h"

namespace bert {

class DistributedLoop {
 public:
  DistributedLoop(const RunConfig& config, Communicator* comm, const DistributedOptions& options)
      : config_(config),
        traced_comm_(comm, &activity_),
        traced_buffer_comm_(options.buffer_comm != nullptr ? options.buffer_comm : comm, &activity_),
        comm_(&traced_comm_),
        buffer_comm_(options.buffer_comm != nullptr ? &traced_buffer_comm_ : &traced_comm_),
        options_(options),
        tag_("[worker r" + std::to_string(comm->rank()) + "]"),
        anomaly_(config.train.anomaly) {}

  DistributedOutcome Run();

 private:
  using Clock = std::chrono::steady_clock;
  static double SecondsSince(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
  }

  // What a trained step tells the steps after it.
  struct StepEnd {
    bool budget_end = false;  // the time budget is spent: this step is the run's last
    uint64_t ordered = 0;     // the newest checkpoint order (preemption) any rank has
  };

  Status Prepare();
  Status CheckRun() const;

  // Loads the checkpoint the coordinator resumes from (verified again here:
  // sizes and checksums of every shard).
  // A new run starts from train.init_from's weights when it has one.
  Status Restore();
  bool IsCheckpointStep(uint64_t step) const;
  Status Train(DistributedOutcome* outcome);

  // The next micro-batch, which must be micro-batch m of `step`.
  Result<WorkerBatch> NextBatchOf(uint64_t step, uint32_t m);

  // A skipped step (train.anomaly): its batches are taken and acknowledged,
  // never trained on.
  Status PassOver(uint64_t step);
  Result<StepEnd> TrainOne(uint64_t step, double budget_s, DistributedOutcome* outcome);

  // The anomalous step's update was not applied. Rank 0 records the skip
  // (RUN_DIR/anomalies.json, durably); then every rank exits with
  // kExitRollback, and the launcher restarts the run from the last
  // committed checkpoint, or with kExitDiverged past train.anomaly.max_skips.
  Status RollBack(uint64_t step, const std::string& reason);
  std::string ReadLatestCheckpointName() const;

  // Checksums, checkpoints and the budget's end, after a step trained or skipped.
  Status AfterStep(uint64_t step, const StepEnd& end, DistributedOutcome* outcome);

  // All ranks must hold bit-identical parameters.
  Status CheckParametersAgree(uint64_t step, uint64_t* checksum);
  Status Finish(DistributedOutcome* outcome);

  const RunConfig& config_;
  WorkerActivity activity_;  // phase, step and collectives, for the coordinator's hang diagnosis
  TracedCommunicator traced_comm_, traced_buffer_comm_;  // the given communicators, recorded in activity_
  Communicator* comm_;         // host scalars, barriers, checksums (MPI)
  Communicator* buffer_comm_;  // the flat gradients and parameters (NCCL on CUDA; else comm_)
  DistributedOptions options_;
  const std::string tag_;
  std::unique_ptr<BertForPreTraining> model_;
  std::unique_ptr<Trainer> trainer_;
  std::unique_ptr<CoordinatorClient> client_;
  std::unique_ptr<PretrainProgress> progress_;
  std::unique_ptr<CheckpointSaver> saver_;
  RunInfo run_;
  std::vector<size_t> parts_;  // ShardRanges(N, W) sizes: the ZeRO-1 parts of the flat buffers
  double peak_gflops_ = 0;  // GEMM peak (the run's precision) of all ranks together (for MFU)
  uint64_t handled_checkpoint_order_ = 0;  // the newest preemption checkpoint order taken (its bound step)
  double train_seconds_ = 0;   // training time of the whole run so far, all sessions (ranks agree)
  bool budget_spent_ = false;  // the resumed checkpoint is the end of the run's time budget
  bool ended_by_budget_ = false;  // this session spent the time budget
  Clock::time_point session_start_;  // this session's training began
  double earlier_seconds_ = 0;       // training time of the earlier sessions
  AnomalyGuard anomaly_;             // train.anomaly: skipped steps, the medians
  int exit_code_ = 0;                // set by RollBack: the exit code that tells the launcher what to do
};

}  // namespace bert
