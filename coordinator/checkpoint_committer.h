// CheckpointCommitter: the coordinator's half of a checkpoint
// (checkpoint/checkpoint.h). Workers write their shards into the staging
// directory of step S and report them (ShardDurable); rank 0 also writes
// `rank0-state.json` there first (layout, optimizer, scheduler, RNG). Once
// every rank has reported, the committer writes the manifest (adding what
// only the coordinator knows: run id, epoch, data cursor, world size,
// resolved config, vocabulary checksum) and commits: manifest last, fsync,
// rename, `latest`, fsync (CheckpointStore::Commit). Then it applies the
// retention policy.
//
// Checkpoint steps: every `every_steps` steps, the last step, and any step
// the coordinator requested (Request()). Not thread-safe: the server's
// thread owns it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <utility>
#include <set>
#include <string>

#include "checkpoint/checkpoint.h"
#include "common/protocol.h"
#include "common/status.h"

namespace bert {

struct CommitterOptions {
  std::string run_dir;
  std::string run_id;
  std::string config_yaml;
  std::string vocab_checksum;
  uint32_t world_size = 1;
  uint64_t total_steps = 0;
  uint64_t every_steps = 0;  // 0: only after the last step
  int keep_last = 3;
  uint64_t keep_every = 0;
};

// rank0-state.json, written by rank 0 into the staging directory.
constexpr char kRankZeroStateFile[] = "rank0-state.json";

class CheckpointCommitter {
 public:
  // epoch_of(step): the epoch of the samples of `step` (for the manifest).
  CheckpointCommitter(CommitterOptions options, std::function<uint64_t(uint64_t)> epoch_of);

  bool IsCheckpointStep(uint64_t step) const;
  // Adds an out-of-schedule checkpoint step.
  void Request(uint64_t step) { requested_.insert(step); }
  // Expects one out-of-schedule checkpoint at a step in [first, last], which
  // the ranks choose (a preemption): once a step of it is committed, the
  // others are no longer checkpoint steps.
  void RequestOneOf(uint64_t first, uint64_t last) { requested_window_ = {first, last}; }

  // A rank's durable shard. Returns the committed checkpoint's name when this
  // report completed step S and the commit succeeded; nullopt while reports
  // are missing. An InvalidArgument error for a report that does not fit
  // (step, file, duplicate); another error when the commit failed.
  Result<std::optional<std::string>> Report(uint32_t rank, const proto::ShardDurable& shard);

  uint64_t last_committed_step() const { return last_committed_; }
  bool final_committed() const { return last_committed_ >= options_.total_steps; }
  // Steps with some but not all shards reported.
  size_t pending() const { return reports_.size(); }

  // Sets the step of the checkpoint the run resumed from.
  void SetResumedFrom(uint64_t step) { last_committed_ = step; }

 private:
  Result<std::string> Commit(uint64_t step);

  CommitterOptions options_;
  std::function<uint64_t(uint64_t)> epoch_of_;
  CheckpointStore store_;
  std::set<uint64_t> requested_;
  std::optional<std::pair<uint64_t, uint64_t>> requested_window_;  // RequestOneOf
  std::map<uint64_t, std::map<uint32_t, ShardInfo>> reports_;  // step -> rank -> shard
  uint64_t last_committed_ = 0;
};

}  // namespace bert
