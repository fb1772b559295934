// Elastic shrink (bertctl pretrain --min-workers, --replace-timeout-s): when
// a run that lost a worker cannot get it back, it goes on with fewer.
//
// A failed generation whose relaunches make no progress (no newer committed
// checkpoint) for --replace-timeout-s, or whose relaunches (--max-restarts)
// are spent, is taken as capacity that is gone: the next generation starts
// with the largest world size W' < W that is at least --min-workers and
// that the global batch divides, from the last committed checkpoint. The
// global batch stays the same, with more micro-batches per rank, so the run
// continues as a W' run from that checkpoint would (checkpoints reshard to
// any world size). Growing back is not done: a later `bertctl resume
// RUN_DIR --workers W` starts the full size again from a checkpoint.
//
// Pure: the caller passes in the latest committed step and the time.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

namespace bert::cli {

class ElasticPolicy {
 public:
  // `fits(w)`: the global batch and micro-batch work with w ranks.
  ElasticPolicy(uint32_t workers, uint32_t min_workers, double replace_timeout_s, std::function<bool(uint32_t)> fits)
      : workers_(workers), min_workers_(min_workers), replace_timeout_s_(replace_timeout_s), fits_(std::move(fits)) {}

  uint32_t workers() const { return workers_; }

  // After a retryable failure at `now_s` with the latest committed step;
  // retries_spent: no relaunch is left at this size. The smaller world size
  // to continue with, or nullopt to relaunch (or give up) at this one.
  std::optional<uint32_t> AfterFailure(uint64_t latest_step, double now_s, bool retries_spent) {
    if (!stalled_since_s_ || latest_step > stalled_step_) {  // progress since the last failure: a new stall
      stalled_since_s_ = now_s;
      stalled_step_ = latest_step;
      if (!retries_spent) return std::nullopt;
    }
    if (!retries_spent && now_s - *stalled_since_s_ < replace_timeout_s_) return std::nullopt;
    for (uint32_t w = workers_ - 1; w >= min_workers_ && w >= 1; --w) {
      if (!fits_(w)) continue;
      workers_ = w;
      stalled_since_s_.reset();
      return w;
    }
    return std::nullopt;
  }

 private:
  uint32_t workers_;
  const uint32_t min_workers_;
  const double replace_timeout_s_;
  std::function<bool(uint32_t)> fits_;
  std::optional<double> stalled_since_s_;  // the first failure of the current stall
  uint64_t stalled_step_ = 0;              // the latest checkpoint then
};

}  // namespace bert::cli
