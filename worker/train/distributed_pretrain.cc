#include "worker/train/distributed_pretrain.h"
#include "worker/train/distributed_loop.h"

#include "worker/torch.h"
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <thread>
#include <vector>

#include <glog/logging.h>

#include "checkpoint/checkpoint.h"
#include "common/file_util.h"
#include "common/protocol.h"
#include "common/run_config.h"
#include "coordinator/client.h"
#include "datapipe/random.h"
#include "worker/model/bert_heads.h"
#include "worker/train/anomaly.h"
#include "worker/train/checkpoint_io.h"
#include "worker/train/init_from.h"
#include "worker/model/flops.h"
#include "worker/train/pretrain_progress.h"
#include "worker/train/train_step.h"

namespace bert {
namespace {

using Clock = std::chrono::steady_clock;

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// RUN_DIR/coordinator/endpoint, waiting for the coordinator to write it.
Result<std::string> WaitForEndpoint(const std::string& run_dir, int wait_ms) {
  const std::string path = run_dir + "/coordinator/endpoint";
  const auto deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
  while (true) {
    Result<std::string> text = ReadFile(path);
    if (text.ok() && !Trim(*text).empty()) return Trim(*text);
    if (Clock::now() >= deadline) {
      return Status::NotFound(path + ": no coordinator endpoint after " + std::to_string(wait_ms / 1000) +
                              " s (start bert-coordinator for this run, or pass --coordinator)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

uint64_t ParameterChecksum(const torch::Tensor& values) {
  const torch::Tensor host = values.device().is_cpu() ? values.contiguous() : values.to(torch::kCPU).contiguous();
  return XXH3_64bits(host.data_ptr(), static_cast<size_t>(host.numel()) * host.element_size());
}

}  // namespace

DistributedOutcome DistributedLoop::Run() {
  DistributedOutcome outcome;
  Status status = Prepare();
  if (status.ok()) status = Train(&outcome);
  if (status.ok()) status = Finish(&outcome);
  outcome.status = status;
  if (!status.ok() && exit_code_ != 0) {
    outcome.exit_code = exit_code_;
  } else if (!status.ok()) {
    const EndReason reason = client_ ? client_->end_reason() : EndReason::kNone;
    if (reason != EndReason::kNone && reason != EndReason::kDone) {
      outcome.exit_code = ExitCodeFor(reason);
    } else {
      // Bad config or corrupt data: no retry can fix it (IsRetryableExit).
      outcome.exit_code = status.code() == Status::Code::kInvalidArgument ? kExitUsage
                          : status.code() == Status::Code::kCorruption    ? kExitBadData
                                                                           : kExitError;
    }
  }
  return outcome;
}

Status DistributedLoop::Prepare() {
  OptimizerShard shard;
  if (options_.shard_optimizer) {
    // ZeRO-1: this rank's part of the optimizer state (train_step.h).
    Communicator* comm = comm_;
    shard.rank = static_cast<uint32_t>(comm_->rank());
    shard.world_size = static_cast<uint32_t>(comm_->world_size());
    // A failed collective poisons the result (the step is then skipped or
    // its update is NaN); the next collective of the step reports it.
    shard.sum_over_ranks = [comm](double value) {
      if (!comm->AllReduce(&value, 1, CommDataType::kFloat64, CommReduceOp::kSum).ok()) return std::nan("");
      return value;
    };
    shard.norm_reducer = [comm](torch::Tensor& partial_squares) {
      if (!comm->AllReduce(partial_squares.data_ptr(), static_cast<size_t>(partial_squares.numel()),
                           CommDataType::kFloat64, CommReduceOp::kSum)
               .ok()) {
        partial_squares.fill_(std::nan(""));
      }
    };
  }
  Result<Pretraining> pretraining = MakePretraining(config_, std::move(shard), torch::Device(options_.device));
  if (!pretraining.ok()) return pretraining.status();
  model_ = std::move(pretraining->model);
  trainer_ = std::move(pretraining->trainer);
  trainer_->set_activity(&activity_);
  for (const ShardRange& range :
       ShardRanges(static_cast<uint64_t>(model_->parameters().numel()), static_cast<uint32_t>(comm_->world_size()))) {
    parts_.push_back(range.size());
  }
  const FlatOptimizer& optimizer = trainer_->optimizer();
  const double state_mb = 2.0 * static_cast<double>(optimizer.exp_avg().numel()) *
                          static_cast<double>(optimizer.exp_avg().element_size()) / 1e6;
  LOG(INFO) << tag_ << " optimizer state " << std::fixed << std::setprecision(1) << state_mb
            << " MB for parameters [" << optimizer.shard_begin() << ", " << optimizer.shard_end() << ") of "
            << model_->parameters().numel()
            << (options_.shard_optimizer ? " (ZeRO-1: this rank's part)" : " (replicated on every rank)");
  // Same initial weights everywhere; distinct dropout streams per rank.
  if (comm_->rank() > 0) {
    model_->dropout_rng().Restore(
        rnd::Hash(config_.train.init_seed, /*stream=*/0x64726f70 /* "drop" */, static_cast<uint64_t>(comm_->rank())), 0);
  }

  // Every rank measures the GEMM peak at once, so that ranks sharing a
  // machine share its peak; MFU is against the sum.
  BERT_RETURN_IF_ERROR(comm_->Barrier());
  const torch::Device device = model_->parameters().values().device();
  double peak = MeasureTrainingPeakGflops(device, trainer_->options().bf16_autocast);
  BERT_RETURN_IF_ERROR(comm_->AllReduce(&peak, 1, CommDataType::kFloat64, CommReduceOp::kSum));
  peak_gflops_ = peak;

  ClientOptions client_options;
  if (options_.endpoint.empty()) {
    Result<std::string> endpoint = WaitForEndpoint(config_.run_dir, options_.endpoint_wait_ms);
    if (!endpoint.ok()) return endpoint.status();
    client_options.endpoint = *endpoint;
  } else {
    client_options.endpoint = options_.endpoint;
  }
  if (!options_.insecure) {  // after the endpoint, which the coordinator writes after the keys
    const std::string keys_dir = options_.keys_dir.empty() ? KeysDir(config_.run_dir) : options_.keys_dir;
    Result<WorkerKeys> keys = LoadWorkerKeys(keys_dir);
    if (!keys.ok()) return Status::FailedPrecondition("--keys: " + keys.status().message() + " (or --insecure)");
    client_options.keys = *keys;
  }
  client_options.run_id = options_.run_id.empty() ? config_.name : options_.run_id;
  client_options.rank = static_cast<uint32_t>(comm_->rank());
  client_options.world_size = static_cast<uint32_t>(comm_->world_size());
  client_options.device = model_->parameters().values().device().str();
  client_options.generation = options_.generation;
  client_options.register_timeout_ms = options_.register_timeout_ms;
  client_options.activity = &activity_;
  client_ = std::make_unique<CoordinatorClient>(client_options);
  Communicator* comm = comm_;
  const std::string tag = tag_;
  client_->SetAbortCallback([comm, tag](EndReason reason, const std::string& message) {
    LOG(ERROR) << tag << " " << EndReasonName(reason) << ": " << message << "; leaving the collectives";
    comm->Abort(ExitCodeFor(reason));
  });
  Result<RunInfo> run = client_->Register();
  if (!run.ok()) return run.status();
  run_ = *run;
  BERT_RETURN_IF_ERROR(CheckRun());
  BERT_RETURN_IF_ERROR(Restore());
  CoordinatorClient* client = client_.get();
  saver_ = std::make_unique<CheckpointSaver>(
      config_.run_dir, static_cast<uint32_t>(comm_->rank()), static_cast<uint32_t>(comm_->world_size()),
      [client](uint64_t step, const ShardInfo& shard) {
        ShardReport report;
        report.step = step;
        report.file = shard.file;
        report.begin = shard.begin;
        report.end = shard.end;
        report.bytes = shard.bytes;
        report.xxh3 = shard.xxh3;
        report.rank_state_json = shard.rank_state.dump();
        Status sent = client->ReportShardDurable(report);
        if (!sent.ok()) LOG(ERROR) << "[worker] " << sent.message();
      });
  if (comm_->rank() == 0) {
    auto progress = PretrainProgress::Open(config_.run_dir, static_cast<int64_t>(run_.start_step),
                                           static_cast<int64_t>(run_.total_steps), config_.log.every_steps, peak,
                                           tag_, /*write_jsonl=*/false);  // the coordinator writes metrics.jsonl
    if (!progress.ok()) return progress.status();
    progress_ = std::move(progress).value();
    LOG(INFO) << tag_ << " " << model_->parameters().numel() << " parameters; world size " << comm_->world_size()
              << " (" << comm_->backend()
              << (buffer_comm_ != comm_ ? ", gradients and parameters over " + buffer_comm_->backend() : "")
              << "), device " << model_->parameters().values().device() << ", steps " << run_.start_step << ".." << run_.total_steps << " of "
              << run_.global_batch_size << " samples, " << run_.micro_batches_per_step << " micro-batches of "
              << run_.micro_batch_size << " per rank; " << (trainer_->options().bf16_autocast ? "bf16" : "fp32") << " GEMM peak of all ranks " << peak << " GFLOP/s";
  }
  return Status::Ok();
}

Status DistributedLoop::CheckRun() const {
  auto mismatch = [&](const std::string& what, const std::string& coordinator, const std::string& ours) {
    return Status::InvalidArgument("coordinator " + client_->end_message() + " serves " + what + " " + coordinator +
                                   " but " + config_.name + "'s config says " + ours +
                                   " (start the workers with the coordinator's config)");
  };
  if (run_.global_batch_size != static_cast<uint64_t>(config_.train.global_batch_size)) {
    return mismatch("train.global_batch_size", std::to_string(run_.global_batch_size),
                    std::to_string(config_.train.global_batch_size));
  }
  if (run_.total_steps != static_cast<uint64_t>(config_.train.steps)) {
    return mismatch("train.steps", std::to_string(run_.total_steps), std::to_string(config_.train.steps));
  }
  if (run_.vocab_size != model_->config().vocab_size) {
    return Status::InvalidArgument(config_.model + ": vocab_size " + std::to_string(model_->config().vocab_size) +
                                   " differs from the corpus vocabulary's " + std::to_string(run_.vocab_size));
  }
  if (run_.start_step != 0 && run_.checkpoint.empty()) {
    return Status::FailedPrecondition("the coordinator resumes this run at step " +
                                      std::to_string(run_.start_step) + " without a checkpoint to restore from");
  }
  return Status::Ok();
}

Status DistributedLoop::Restore() {
  BERT_RETURN_IF_ERROR(anomaly_.LoadRecord(AnomalyRecordPath(config_.run_dir)));
  if (comm_->rank() == 0 && !anomaly_.skipped().empty()) {
    std::string steps;
    for (uint64_t step : anomaly_.skipped()) steps += (steps.empty() ? "" : ", ") + std::to_string(step);
    LOG(WARNING) << tag_ << " the run skips step(s) " << steps << " after anomalies ("
                 << AnomalyRecordPath(config_.run_dir) << ")";
  }
  if (run_.checkpoint.empty()) {
    if (config_.train.init_from.empty()) return Status::Ok();
    BERT_RETURN_IF_ERROR(InitializeFromPretrained(config_.train.init_from, model_.get()));
    uint64_t checksum = 0;
    return CheckParametersAgree(0, &checksum);
  }
  CheckpointStore store(config_.run_dir);
  Result<LoadedCheckpoint> latest = store.LoadLatest();
  if (!latest.ok()) return latest.status();
  const std::string name = CheckpointStore::StepName(latest->manifest.step);
  if (name != run_.checkpoint || latest->manifest.step != run_.start_step) {
    return Status::FailedPrecondition("the coordinator resumes from " + run_.checkpoint + " (step " +
                                      std::to_string(run_.start_step) + ") but the newest good checkpoint in " +
                                      store.dir() + " is " + name);
  }
  BERT_RETURN_IF_ERROR(RestoreFromCheckpoint(*latest, &model_->parameters(), &trainer_->optimizer(),
                                             &model_->dropout_rng(), static_cast<uint32_t>(comm_->rank()),
                                             static_cast<uint32_t>(comm_->world_size())));
  // The time the run's earlier sessions trained (a time budget's account).
  const TimeBudgetAccount account = TimeBudgetAccountOf(latest->manifest);
  train_seconds_ = account.train_seconds;
  budget_spent_ = account.spent;
  BERT_RETURN_IF_ERROR(anomaly_.Restore(latest->manifest.anomaly, latest->dir + "/manifest.json"));
  uint64_t checksum = 0;
  BERT_RETURN_IF_ERROR(CheckParametersAgree(run_.start_step, &checksum));
  LOG(INFO) << tag_ << " resumed from " << latest->dir << " at step " << run_.start_step << " (parameters "
            << Hex64(checksum) << ")";
  return Status::Ok();
}

bool DistributedLoop::IsCheckpointStep(uint64_t step) const {
  return step == run_.total_steps || (run_.checkpoint_every > 0 && step % run_.checkpoint_every == 0);
}

std::string DistributedLoop::ReadLatestCheckpointName() const {
  Result<std::string> latest = ReadFile(config_.run_dir + "/checkpoints/latest");
  return latest.ok() ? Trim(*latest) : "";
}

Status DistributedLoop::CheckParametersAgree(uint64_t step, uint64_t* checksum) {
  const uint64_t mine = ParameterChecksum(model_->parameters().values());
  uint64_t low = mine, high = mine;
  BERT_RETURN_IF_ERROR(comm_->AllReduce(&low, 1, CommDataType::kUint64, CommReduceOp::kMin));
  BERT_RETURN_IF_ERROR(comm_->AllReduce(&high, 1, CommDataType::kUint64, CommReduceOp::kMax));
  *checksum = mine;
  if (low != high) {
    return Status::Internal("parameters differ across ranks after step " + std::to_string(step) + ": rank " +
                            std::to_string(comm_->rank()) + " has checksum " + Hex64(mine) + ", ranks span " +
                            Hex64(low) + ".." + Hex64(high) +
                            " (non-deterministic kernels or a corrupted all-reduce; stopping)");
  }
  if (comm_->rank() == 0) VLOG(1) << tag_ << " parameters agree after step " << step << ": " << Hex64(mine);
  return Status::Ok();
}

Status DistributedLoop::Finish(DistributedOutcome* outcome) {
  // The final checkpoint must be durable (and reported) before the
  // coordinator can declare the run complete.
  BERT_RETURN_IF_ERROR(saver_->Wait());
  // The coordinator confirms the run complete once every rank acknowledged.
  // (A run that its time budget ended has batches prefetched beyond its
  // last step: dropped.)
  Result<std::optional<WorkerBatch>> next = std::optional<WorkerBatch>();
  if (ended_by_budget_) {
    BERT_RETURN_IF_ERROR(client_->WaitForDone());
  } else {
    next = client_->NextBatch();
  }
  if (!next.ok()) return next.status();
  if (next->has_value()) {
    return Status::Internal("coordinator " + client_->end_message() + " sent step " +
                            std::to_string((*next)->step) + " after the last step " +
                            std::to_string(run_.total_steps));
  }
  if (comm_->rank() == 0 && !options_.save_params.empty()) {
    const torch::Tensor values = model_->parameters().values().to(torch::kCPU).contiguous();
    std::string bytes(static_cast<const char*>(values.data_ptr()),
                      static_cast<size_t>(values.numel()) * values.element_size());
    BERT_RETURN_IF_ERROR(WriteFileAtomic(options_.save_params, bytes));
  }
  if (comm_->rank() == 0) {
    LOG(INFO) << tag_ << " done: " << outcome->steps << " steps, final loss " << outcome->final_loss
              << ", parameter checksum " << Hex64(outcome->final_checksum);
  }
  return comm_->Barrier();
}

DistributedOutcome RunDistributedPretraining(const RunConfig& config, Communicator* comm,
                                             const DistributedOptions& options) {
  DistributedLoop loop(config, comm, options);
  return loop.Run();
}

}  // namespace bert
