// How a coordinator's run ends (coordinator/server.h): every step
// acknowledged (and the final checkpoint committed), a dead worker, a hung
// collective (hang_diagnosis.h), a registration timeout, a stop signal, or a
// checkpoint-and-stop for a preemption; and the progress line while it runs.
#include "coordinator/server.h"

#include <algorithm>
#include <chrono>

#include <glog/logging.h>

#include "common/file_util.h"
#include "common/logging.h"
#include "common/run_config.h"
#include "coordinator/hang_diagnosis.h"

namespace bert {

int Server::CheckRunState(int64_t now_ms) {
  if (!fatal_.ok()) return Finish(kExitError, fatal_.message());
  if (tracker_.cursor() >= end_step_ && registry_.AllRegistered() &&
      (options_.committer == nullptr || options_.committer->last_committed_step() >= end_step_)) {
    const std::string budget = end_step_ < options_.total_steps
                                   ? "time budget " + FormatTimeBudget(options_.time_budget_s) + " spent: "
                                   : "";
    return Finish(kExitOk, budget + "all " + std::to_string(end_step_) + " steps acknowledged" +
                               (options_.committer ? ", final checkpoint committed" : ""));
  }
  if (std::optional<uint32_t> dead = registry_.FirstDead(now_ms, options_.heartbeat_timeout_ms)) {
    const WorkerInfo& info = *registry_.Find(*dead);
    const std::string doing = DescribeActivity(info, now_ms);
    return Finish(kExitAborted,
                  info.Describe() + " is dead: no message for " + std::to_string(now_ms - info.last_seen_ms) +
                      " ms (timeout " + std::to_string(options_.heartbeat_timeout_ms) + " ms)" +
                      (doing.empty() ? "" : "; it was at " + doing),
                  static_cast<int>(*dead));
  }
  if (options_.collective_timeout_ms > 0) {
    // Every rank is told (a stuck rank whose I/O thread lives may still leave).
    if (std::optional<Hang> hang = FindHang(registry_.workers(), now_ms, options_.collective_timeout_ms)) {
      return Finish(kExitAborted, "hung " + hang->message);
    }
  }
  if (!registry_.AllRegistered() && now_ms - start_ms_ > options_.register_timeout_ms) {
    std::string missing;
    for (uint32_t rank : registry_.MissingRanks()) missing += (missing.empty() ? "" : ", ") + std::to_string(rank);
    return Finish(kExitRegistration, "rank(s) " + missing + " did not register within " +
                                          std::to_string(options_.register_timeout_ms) + " ms");
  }
  if (options_.stop != nullptr && options_.stop->load()) return Finish(kExitInterrupted, "interrupted by a signal");
  if (options_.checkpoint_and_stop != nullptr && options_.checkpoint_and_stop->load()) return CheckpointAndStop();
  return -1;
}

int Server::CheckpointAndStop() {
  if (stop_at_step_ == 0) {
    if (options_.committer == nullptr || !registry_.AllRegistered()) {
      return Finish(kExitPreempted, "checkpoint-and-stop (SIGUSR1) before every rank registered: stopping; the "
                                    "run resumes from its latest checkpoint");
    }
    // The ranks take the checkpoint at the first step boundary after one of
    // them has the order (they agree on it in the step's all-reduce), so
    // not after the batches they have prefetched. The bound: the first step
    // that no rank has received all batches of yet, plus one. The order,
    // sent after every batch already sent on the same ordered connections,
    // reaches each rank before it can finish that step; no batch after it
    // is sent. Every rank has finished `cursor` steps, so the step is later.
    uint64_t step = 0;
    for (const RankStream& stream : streams_) step = std::max(step, stream.next_send.step + 1);
    stop_at_step_ = std::min(step, end_step_);
    preempt_first_step_ = std::min(tracker_.cursor() + 1, stop_at_step_);
    options_.committer->RequestOneOf(preempt_first_step_, stop_at_step_);  // its shards are expected
    proto::Envelope envelope = MakeEnvelope();
    envelope.mutable_checkpoint_request()->set_step(stop_at_step_);
    SendToAll(envelope);
    LOG(WARNING) << "[coord] checkpoint-and-stop (SIGUSR1): ordered a checkpoint at the next step boundary (step "
                 << preempt_first_step_ << " to " << stop_at_step_
                 << "); no batch after that is sent; stopping once it is committed";
  }
  // The final step's checkpoint completes the run (CheckRunState) instead.
  if (stats_.last_checkpoint_step >= preempt_first_step_ && stats_.last_checkpoint_step < end_step_) {
    return Finish(kExitPreempted, "checkpoint-and-stop (SIGUSR1): checkpoint of step " +
                                      std::to_string(stats_.last_checkpoint_step) +
                                      " committed; the run resumes from it");
  }
  return -1;
}

int Server::Finish(int exit_code, const std::string& reason, int dead_rank) {
  proto::Envelope envelope = MakeEnvelope();
  if (exit_code == kExitOk) {
    envelope.mutable_done()->set_final_step(end_step_);
  } else {
    envelope.mutable_abort()->set_reason("coordinator: " + reason);
    envelope.mutable_abort()->set_dead_rank(dead_rank);
    envelope.mutable_abort()->set_preempted(exit_code == kExitPreempted);
  }
  for (const auto& [rank, info] : registry_.workers()) {
    if (static_cast<int>(rank) != dead_rank) SendEnvelope(router_, info.identity, envelope);
  }
  stats_.exit_code = exit_code;
  stats_.exit_reason = reason;
  stats_.dead_rank = dead_rank;
  stats_.cursor = tracker_.cursor();
  stats_.elapsed_s = (MonotonicMs() - start_ms_) / 1000.0;
  stats_.build_cpu_s = builder_->build_seconds();
  stats_.samples_built = builder_->samples_built();
  stats_.security = counters_->ToJson();
  if (options_.board) options_.board->OnFinish(exit_code, reason, dead_rank, MonotonicMs());
  MaybeLogProgress(MonotonicMs(), /*force=*/true);
  if (exit_code == kExitOk) {
    LOG(INFO) << "[coord] run complete: " << reason << "; Done sent to " << registry_.num_registered() << " workers";
  } else {
    const size_t told = registry_.num_registered() - (dead_rank >= 0 ? 1 : 0);
    LOG(ERROR) << "[coord] " << reason << "; "
               << (told == 0 ? "no worker to tell"
                             : std::string(dead_rank >= 0 ? "told the other workers" : "told the workers") +
                                   " to abort (" + std::to_string(told) + ")");
  }
  if (stats_.total_rejects() > 0) {
    std::string counts;
    for (size_t i = 1; i < stats_.rejects.size(); ++i) {
      if (stats_.rejects[i] > 0) {
        counts += (counts.empty() ? "" : ", ") + std::string(RejectName(static_cast<Reject>(i))) + " " +
                  std::to_string(stats_.rejects[i]);
      }
    }
    LOG(WARNING) << "[coord] dropped " << stats_.total_rejects() << " bad messages: " << counts;
  }
  return exit_code;
}

void Server::MaybeLogProgress(int64_t now_ms, bool force) {
  const double seconds = (now_ms - last_progress_ms_) / 1000.0;
  if (!force && seconds < options_.progress_every_s) return;
  const uint64_t total = options_.total_steps, cursor = tracker_.cursor();
  const double samples_per_s = seconds > 0 ? (stats_.samples_sent - last_progress_samples_) / seconds : 0;
  const double mb_per_s = seconds > 0 ? (stats_.bytes_sent - last_progress_bytes_) / seconds / 1e6 : 0;
  const double steps_per_s = seconds > 0 ? (cursor - last_progress_cursor_) / seconds : 0;
  size_t in_flight = 0;
  for (const RankStream& stream : streams_) in_flight += stream.unacked.size();
  char line[512];
  std::snprintf(line, sizeof(line),
                "[coord] step %llu/%llu (%.1f%%) | %.0f samples/s, %.1f MB/s sent | %zu/%u workers | "
                "%zu unacked | build %.2f core-s | rejects %llu | ETA %s",
                static_cast<unsigned long long>(cursor), static_cast<unsigned long long>(total),
                total ? 100.0 * cursor / total : 100.0, samples_per_s, mb_per_s, registry_.num_registered(),
                geometry_.world_size, in_flight, builder_ ? builder_->build_seconds() : 0.0,
                static_cast<unsigned long long>(stats_.total_rejects()),
                steps_per_s > 0 ? FormatDuration((total - cursor) / steps_per_s).c_str() : "?");
  LOG(INFO) << line;
  last_progress_ms_ = now_ms;
  last_progress_samples_ = stats_.samples_sent;
  last_progress_bytes_ = stats_.bytes_sent;
  last_progress_cursor_ = cursor;
}

}  // namespace bert
