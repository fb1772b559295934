// A step of the distributed training loop (distributed_loop.h): trained
// (distributed_pretrain.h lists what every rank does), skipped (a step that
// train.anomaly skips: its batches are taken and acknowledged, not trained
// on) or rolled back (anomaly.h), then what follows it.
#include "worker/train/distributed_loop.h"

#include "worker/torch.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <optional>

#include <glog/logging.h>

#include "common/file_util.h"
#include "common/protocol.h"
#include "worker/model/flops.h"

namespace bert {

Status DistributedLoop::Train(DistributedOutcome* outcome) {
  const double budget_s = static_cast<double>(config_.train.time_budget_s);
  if (budget_spent_) {
    if (comm_->rank() == 0) {
      LOG(INFO) << tag_ << " the time budget " << FormatTimeBudget(config_.train.time_budget_s)
                << " was spent at step " << run_.start_step << " (" << std::fixed << std::setprecision(1)
                << train_seconds_ << " s of training): nothing left to train";
    }
    return Status::Ok();
  }
  // Training time of this session, added to the earlier sessions'; the
  // ranks agree on it (the slowest clock) in each step's all-reduce.
  session_start_ = Clock::now();
  earlier_seconds_ = train_seconds_;
  for (uint64_t step = run_.start_step; step < run_.total_steps; ++step) {
    StepEnd end;
    if (anomaly_.Skips(step)) {
      BERT_RETURN_IF_ERROR(PassOver(step));
    } else {
      Result<StepEnd> trained = TrainOne(step, budget_s, outcome);
      if (!trained.ok()) return trained.status();
      end = *trained;
    }
    BERT_RETURN_IF_ERROR(AfterStep(step, end, outcome));
    if (end.budget_end) break;
  }
  return Status::Ok();
}

Result<WorkerBatch> DistributedLoop::NextBatchOf(uint64_t step, uint32_t m) {
  activity_.SetStep(step);
  activity_.Enter(WorkerPhase::kDataWait);
  Result<std::optional<WorkerBatch>> next = client_->NextBatch();
  if (!next.ok()) return next.status();
  if (!next->has_value()) {
    return Status::Internal("coordinator " + client_->end_message() + " ended the run at step " +
                            std::to_string(step) + " of " + std::to_string(run_.total_steps));
  }
  if ((*next)->step != step || (*next)->micro != m) {
    return Status::Internal("coordinator sent step " + std::to_string((*next)->step) + " micro-batch " +
                            std::to_string((*next)->micro) + " where step " + std::to_string(step) +
                            " micro-batch " + std::to_string(m) + " was due");
  }
  return std::move(next->value());
}

Status DistributedLoop::PassOver(uint64_t step) {
  if (comm_->rank() == 0) {
    LOG(WARNING) << tag_ << " step " << step << " skipped: its batches are not trained on (train.anomaly; "
                 << AnomalyRecordPath(config_.run_dir) << ")";
  }
  for (uint32_t m = 0; m < run_.micro_batches_per_step; ++m) {
    Result<WorkerBatch> batch = NextBatchOf(step, m);
    if (!batch.ok()) return batch.status();
    BERT_RETURN_IF_ERROR(client_->Ack(step, m, 0.0f, 0.0f, static_cast<float>(batch->wait_ms)));
  }
  return Status::Ok();
}

Result<DistributedLoop::StepEnd> DistributedLoop::TrainOne(uint64_t step, double budget_s, DistributedOutcome* outcome) {
  const uint32_t k = run_.micro_batches_per_step;
  const Clock::time_point step_start = Clock::now();
  if (budget_s > 0) trainer_->SetBudgetFraction(train_seconds_ / budget_s);
  std::vector<PretrainBatch> micro;
  double wait_seconds = 0;
  double flops = 0;
  int64_t counts[2] = {0, 0};  // masked positions, sequences of the whole step
  for (uint32_t m = 0; m < k; ++m) {
    Result<WorkerBatch> batch = NextBatchOf(step, m);
    if (!batch.ok()) return batch.status();
    wait_seconds += batch->wait_ms / 1000.0;
    Result<PretrainBatch> collated = CollateBatch(batch->batch);
    if (!collated.ok()) return collated.status();
    counts[0] += collated->num_masked();
    counts[1] += collated->batch_size();
    flops += PreTrainingFlops(model_->config(), collated->batch_size(), collated->seq_len(), collated->num_masked());
    micro.push_back(std::move(collated).value());
  }
  BERT_RETURN_IF_ERROR(comm_->AllReduce(counts, 2, CommDataType::kInt64, CommReduceOp::kSum));
  // This rank's own work, without collectives (where a fast rank waits
  // for a slow one): what tells a straggler apart. (On a GPU this times
  // the launches unless the backend synchronizes.)
  const Clock::time_point compute_start = Clock::now();
  for (const PretrainBatch& batch : micro) {
    trainer_->ForwardBackward(batch, LossWeights::ShareOf(batch, counts[0], counts[1]));
  }
  FlatParameters& params = model_->parameters();
  if (comm_->rank() == 0 && options_.fault_nan_steps.count(step) > 0) {  // the tests' fault
    LOG(WARNING) << tag_ << " step " << step << ": a NaN put into the gradient (--fault-nan-steps)";
    params.grads().narrow(0, 0, 1).fill_(std::nan(""));
  }
  double compute_seconds = SecondsSince(compute_start);
  if (options_.shard_optimizer) {
    BERT_RETURN_IF_ERROR(buffer_comm_->ReduceScatter(params.grads().data_ptr(), parts_, CommDataType::kFloat32));
  } else {
    BERT_RETURN_IF_ERROR(buffer_comm_->AllReduceBuckets(params.grads().data_ptr(),
                                                        static_cast<size_t>(params.numel()),
                                                        CommDataType::kFloat32, options_.bucket_bytes));
  }
  // train.anomaly: the step's loss and gradient norm are judged before
  // its update; every rank refuses it if any rank finds it anomalous.
  std::string anomaly;
  Trainer::UpdateGate gate;
  double step_loss = trainer_->pending_loss();
  if (anomaly_.enabled()) {
    BERT_RETURN_IF_ERROR(comm_->AllReduce(&step_loss, 1, CommDataType::kFloat64, CommReduceOp::kSum));
    gate = [&](double grad_norm) {
      anomaly = anomaly_.Check(step_loss, grad_norm);
      int64_t flagged = anomaly.empty() ? 0 : 1;
      if (!comm_->AllReduce(&flagged, 1, CommDataType::kInt64, CommReduceOp::kMax).ok()) flagged = 1;
      if (flagged != 0 && anomaly.empty()) anomaly = "an anomaly another rank found";
      return flagged == 0;
    };
  }
  const Clock::time_point update_start = Clock::now();
  StepMetrics metrics = trainer_->ApplyGradients(gate);
  compute_seconds += SecondsSince(update_start);
  if (!anomaly.empty()) return RollBack(step, anomaly);
  if (options_.shard_optimizer && !metrics.skipped) {
    BERT_RETURN_IF_ERROR(buffer_comm_->AllGather(params.values().data_ptr(), parts_, CommDataType::kFloat32));
  }

  // The step's figures over all ranks (each rank holds its share).
  double sums[6] = {metrics.loss, metrics.mlm_accuracy * static_cast<double>(metrics.num_masked),
                    metrics.nsp_accuracy * static_cast<double>(metrics.num_sequences),
                    static_cast<double>(metrics.num_tokens), flops, static_cast<double>(metrics.num_sequences)};
  BERT_RETURN_IF_ERROR(comm_->AllReduce(sums, 6, CommDataType::kFloat64, CommReduceOp::kSum));
  // With the slowest wait, the newest checkpoint order (preemption) any
  // rank has: the ranks learn of it at different times, and take it
  // together at this step boundary. (Step numbers are exact in a double.)
  double maxima[3] = {wait_seconds, static_cast<double>(client_->PendingCheckpointRequest()),
                      earlier_seconds_ + SecondsSince(session_start_)};
  BERT_RETURN_IF_ERROR(comm_->AllReduce(maxima, 3, CommDataType::kFloat64, CommReduceOp::kMax));
  const double slowest_wait = maxima[0];
  StepEnd end;
  end.ordered = static_cast<uint64_t>(maxima[1]);
  train_seconds_ = maxima[2];
  // The time budget is spent: this step is the run's last.
  end.budget_end = budget_s > 0 && train_seconds_ >= budget_s && step + 1 < run_.total_steps;
  const double step_seconds = SecondsSince(step_start);
  // The step's figures (all ranks) ride on the Ack of its last micro-batch.
  StepFigures figures;
  figures.mlm_accuracy = sums[1] / static_cast<double>(std::max<int64_t>(1, counts[0]));
  figures.nsp_accuracy = sums[2] / std::max(1.0, sums[5]);
  figures.lr = metrics.lr;
  figures.grad_norm = metrics.grad_norm;
  figures.samples = static_cast<uint64_t>(sums[5]);
  figures.tokens = static_cast<uint64_t>(sums[3]);
  figures.masked = static_cast<uint64_t>(counts[0]);
  figures.model_flops = sums[4];
  figures.peak_flops = peak_gflops_ * 1e9;
  figures.compute_ms = compute_seconds * 1e3;
  figures.data_wait_ms = slowest_wait * 1e3;
  for (uint32_t m = 0; m < k; ++m) {
    const float loss = static_cast<float>(sums[0]), step_ms = static_cast<float>(step_seconds * 1e3),
                wait_ms = static_cast<float>(wait_seconds * 1e3 / k);
    BERT_RETURN_IF_ERROR(m + 1 < k ? client_->Ack(step, m, loss, step_ms, wait_ms)
                                   : client_->Ack(step, m, loss, step_ms, wait_ms, figures, end.budget_end));
  }
  ++outcome->steps;
  outcome->final_loss = sums[0];
  if (progress_) {
    StepRecord record;
    record.sequences = static_cast<int64_t>(sums[5]);
    record.tokens = static_cast<int64_t>(sums[3]);
    record.masked = counts[0];
    record.loss = sums[0];
    record.mlm_correct = sums[1];
    record.nsp_correct = sums[2];
    record.flops = sums[4];
    record.seconds = step_seconds;
    record.data_wait_seconds = slowest_wait;
    record.lr = metrics.lr;
    record.grad_norm = metrics.grad_norm;
    if (budget_s > 0) progress_->SetBudget(budget_s, train_seconds_);
    progress_->Add(static_cast<int64_t>(step + 1), record);
    if (end.budget_end) progress_->Flush(static_cast<int64_t>(step + 1));
  }
  return end;
}

Status DistributedLoop::RollBack(uint64_t step, const std::string& reason) {
  const std::string record = AnomalyRecordPath(config_.run_dir);
  const std::string latest = ReadLatestCheckpointName();
  int32_t verdict[1] = {0};  // 0: recorded, 1: the run diverges, 2: the record could not be written
  Status result = Status::Ok();
  if (comm_->rank() == 0) {
    result = anomaly_.AddSkip(step, reason, latest.empty() ? "" : config_.run_dir + "/checkpoints/" + latest);
    Status written = WriteFileAtomic(record, anomaly_.RecordText());
    verdict[0] = !written.ok() ? 2 : !result.ok() ? 1 : 0;
    if (!written.ok()) result = written;
  }
  BERT_RETURN_IF_ERROR(comm_->Broadcast(verdict, sizeof verdict, 0));
  // A checkpoint in flight is finished and reported (the coordinator may still commit it).
  Status saved = saver_->Wait();
  if (!saved.ok()) LOG(WARNING) << tag_ << " " << saved.message();
  exit_code_ = verdict[0] == 0 ? kExitRollback : verdict[0] == 1 ? kExitDiverged : kExitError;
  if (verdict[0] != 0) {
    return comm_->rank() == 0 ? result
                              : Status::FailedPrecondition("step " + std::to_string(step) + ": rank 0 stopped the "
                                                           "run after an anomaly (its log says why)");
  }
  return Status::FailedPrecondition(
      "step " + std::to_string(step) + ": " + reason + ": the update is not applied, the step is recorded as skipped in " +
      record + " and the run rolls back to " + (latest.empty() ? std::string("its start (no checkpoint yet)") : latest) +
      " (train.anomaly.action: rollback)");
}

Status DistributedLoop::AfterStep(uint64_t step, const StepEnd& end, DistributedOutcome* outcome) {
  const bool last = step + 1 == run_.total_steps || end.budget_end;
  if (last || (options_.checksum_every > 0 && (step + 1) % static_cast<uint64_t>(options_.checksum_every) == 0)) {
    BERT_RETURN_IF_ERROR(CheckParametersAgree(step + 1, &outcome->final_checksum));
  }
  // An out-of-schedule checkpoint the coordinator ordered (preemption),
  // taken once; an order that reaches this rank after the others took
  // it is the same order, and cleared.
  const bool preemption = end.ordered > handled_checkpoint_order_;
  if (preemption) {
    handled_checkpoint_order_ = end.ordered;
    LOG(WARNING) << tag_ << " checkpoint ordered by the coordinator (preemption): taking it after step " << step + 1;
  }
  const uint64_t pending = client_->PendingCheckpointRequest();
  if (pending != 0 && pending <= handled_checkpoint_order_) client_->ClearCheckpointRequest(pending);
  if (IsCheckpointStep(step + 1) || preemption || end.budget_end) {
    activity_.Enter(WorkerPhase::kCheckpoint);
    nlohmann::json state;
    if (comm_->rank() == 0) {
      state = ModelStateJson(model_->parameters(), trainer_->optimizer(), trainer_->options().schedule,
                             config_.train.init_seed);
      // The time budget's account, which a resume continues.
      state["scheduler"]["train_seconds"] = train_seconds_;
      state["scheduler"]["time_budget_s"] = config_.train.time_budget_s;
      state["scheduler"]["budget_spent"] = end.budget_end;
      if (anomaly_.enabled()) state["anomaly"] = anomaly_.StateJson();  // skips and medians, for a resume
    }
    BERT_RETURN_IF_ERROR(
        saver_->Save(step + 1, model_->parameters(), trainer_->optimizer(), model_->dropout_rng(), state));
  }
  if (end.budget_end) {
    ended_by_budget_ = true;
    if (comm_->rank() == 0) {
      LOG(INFO) << tag_ << " time budget " << FormatTimeBudget(config_.train.time_budget_s) << " spent after step "
                << step + 1 << " of at most " << run_.total_steps << " (" << std::fixed << std::setprecision(1)
                << train_seconds_ << " s of training): final checkpoint";
      if (static_cast<int64_t>(step + 1) < config_.train.warmup_steps) {
        LOG(WARNING) << tag_ << " the budget ended during warmup (step " << step + 1 << " of train.warmup_steps "
                     << config_.train.warmup_steps
                     << "), so the rate never decayed: lower train.warmup_steps for this budget";
      }
    }
  }
  return Status::Ok();
}

}  // namespace bert
