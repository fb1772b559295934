#include "worker/train/distributed_pretrain.h"

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
#include "worker/train/checkpoint_io.h"
#include "worker/train/init_from.h"
#include "worker/model/flops.h"
#include "worker/train/pretrain_progress.h"
#include "worker/train/train_step.h"

namespace bert {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

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

class DistributedLoop {
 public:
  DistributedLoop(const RunConfig& config, Communicator* comm, const DistributedOptions& options)
      : config_(config),
        comm_(comm),
        buffer_comm_(options.buffer_comm != nullptr ? options.buffer_comm : comm),
        options_(options),
        tag_("[worker r" + std::to_string(comm->rank()) + "]") {}

  DistributedOutcome Run() {
    DistributedOutcome outcome;
    Status status = Prepare();
    if (status.ok()) status = Train(&outcome);
    if (status.ok()) status = Finish(&outcome);
    outcome.status = status;
    if (!status.ok()) {
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

 private:
  Status Prepare() {
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

  Status CheckRun() const {
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

  // Loads the checkpoint the coordinator resumes from (verified again here:
  // sizes and checksums of every shard).
  // A new run starts from train.init_from's weights when it has one.
  Status Restore() {
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
    uint64_t checksum = 0;
    BERT_RETURN_IF_ERROR(CheckParametersAgree(run_.start_step, &checksum));
    LOG(INFO) << tag_ << " resumed from " << latest->dir << " at step " << run_.start_step << " (parameters "
              << Hex64(checksum) << ")";
    return Status::Ok();
  }

  bool IsCheckpointStep(uint64_t step) const {
    return step == run_.total_steps || (run_.checkpoint_every > 0 && step % run_.checkpoint_every == 0);
  }

  Status Train(DistributedOutcome* outcome) {
    const uint32_t k = run_.micro_batches_per_step;
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
    const Clock::time_point session_start = Clock::now();
    const double earlier_seconds = train_seconds_;
    for (uint64_t step = run_.start_step; step < run_.total_steps; ++step) {
      const Clock::time_point step_start = Clock::now();
      if (budget_s > 0) trainer_->SetBudgetFraction(train_seconds_ / budget_s);
      std::vector<PretrainBatch> micro;
      double wait_seconds = 0;
      double flops = 0;
      int64_t counts[2] = {0, 0};  // masked positions, sequences of the whole step
      for (uint32_t m = 0; m < k; ++m) {
        Result<std::optional<WorkerBatch>> next = client_->NextBatch();
        if (!next.ok()) return next.status();
        if (!next->has_value()) {
          return Status::Internal("coordinator " + client_->end_message() + " ended the run at step " +
                                  std::to_string(step) + " of " + std::to_string(run_.total_steps));
        }
        WorkerBatch& batch = **next;
        if (batch.step != step || batch.micro != m) {
          return Status::Internal("coordinator sent step " + std::to_string(batch.step) + " micro-batch " +
                                  std::to_string(batch.micro) + " where step " + std::to_string(step) +
                                  " micro-batch " + std::to_string(m) + " was due");
        }
        wait_seconds += batch.wait_ms / 1000.0;
        Result<PretrainBatch> collated = CollateBatch(batch.batch);
        if (!collated.ok()) return collated.status();
        counts[0] += collated->num_masked();
        counts[1] += collated->batch_size();
        flops += PreTrainingFlops(model_->config(), collated->batch_size(), collated->seq_len(),
                                  collated->num_masked());
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
      double compute_seconds = SecondsSince(compute_start);
      FlatParameters& params = model_->parameters();
      if (options_.shard_optimizer) {
        BERT_RETURN_IF_ERROR(buffer_comm_->ReduceScatter(params.grads().data_ptr(), parts_, CommDataType::kFloat32));
      } else {
        BERT_RETURN_IF_ERROR(buffer_comm_->AllReduceBuckets(params.grads().data_ptr(), static_cast<size_t>(params.numel()),
                                                     CommDataType::kFloat32, options_.bucket_bytes));
      }
      const Clock::time_point update_start = Clock::now();
      StepMetrics metrics = trainer_->ApplyGradients();
      compute_seconds += SecondsSince(update_start);
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
                          earlier_seconds + SecondsSince(session_start)};
      BERT_RETURN_IF_ERROR(comm_->AllReduce(maxima, 3, CommDataType::kFloat64, CommReduceOp::kMax));
      const double slowest_wait = maxima[0];
      const uint64_t ordered = static_cast<uint64_t>(maxima[1]);
      train_seconds_ = maxima[2];
      // The time budget is spent: this step is the run's last.
      const bool budget_end = budget_s > 0 && train_seconds_ >= budget_s && step + 1 < run_.total_steps;
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
                                       : client_->Ack(step, m, loss, step_ms, wait_ms, figures, budget_end));
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
        if (budget_end) progress_->Flush(static_cast<int64_t>(step + 1));
      }
      const bool last = step + 1 == run_.total_steps || budget_end;
      if (last || (options_.checksum_every > 0 && (step + 1) % static_cast<uint64_t>(options_.checksum_every) == 0)) {
        BERT_RETURN_IF_ERROR(CheckParametersAgree(step + 1, &outcome->final_checksum));
      }
      // An out-of-schedule checkpoint the coordinator ordered (preemption),
      // taken once; an order that reaches this rank after the others took
      // it is the same order, and cleared.
      const bool preemption = ordered > handled_checkpoint_order_;
      if (preemption) {
        handled_checkpoint_order_ = ordered;
        LOG(WARNING) << tag_ << " checkpoint ordered by the coordinator (preemption): taking it after step " << step + 1;
      }
      const uint64_t pending = client_->PendingCheckpointRequest();
      if (pending != 0 && pending <= handled_checkpoint_order_) client_->ClearCheckpointRequest(pending);
      if (IsCheckpointStep(step + 1) || preemption || budget_end) {
        nlohmann::json state;
        if (comm_->rank() == 0) {
          state = ModelStateJson(model_->parameters(), trainer_->optimizer(), trainer_->options().schedule,
                                 config_.train.init_seed);
          // The time budget's account, which a resume continues.
          state["scheduler"]["train_seconds"] = train_seconds_;
          state["scheduler"]["time_budget_s"] = config_.train.time_budget_s;
          state["scheduler"]["budget_spent"] = budget_end;
        }
        BERT_RETURN_IF_ERROR(saver_->Save(step + 1, model_->parameters(), trainer_->optimizer(),
                                          model_->dropout_rng(), state));
      }
      if (budget_end) {
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
        break;
      }
    }
    return Status::Ok();
  }

  // All ranks must hold bit-identical parameters.
  Status CheckParametersAgree(uint64_t step, uint64_t* checksum) {
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

  Status Finish(DistributedOutcome* outcome) {
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

  const RunConfig& config_;
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
};

}  // namespace

DistributedOutcome RunDistributedPretraining(const RunConfig& config, Communicator* comm,
                                             const DistributedOptions& options) {
  DistributedLoop loop(config, comm, options);
  return loop.Run();
}

}  // namespace bert
