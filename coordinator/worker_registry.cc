#include "coordinator/worker_registry.h"

namespace bert {

std::string WorkerInfo::Describe() const {
  return "rank " + std::to_string(rank) + " (host " + (host.empty() ? "?" : host) + ", pid " + std::to_string(pid) +
         (device.empty() ? "" : ", " + device) + ")";
}

WorkerRegistry::WorkerRegistry(std::string run_id, uint32_t world_size)
    : run_id_(std::move(run_id)), world_size_(world_size) {}

Reject WorkerRegistry::Register(const std::string& identity, const proto::Register& request, int64_t now_ms,
                                std::string* detail) {
  if (request.run_id() != run_id_) {
    *detail = "run_id '" + request.run_id() + "' is not this coordinator's run '" + run_id_ + "'";
    return Reject::kWrongRunId;
  }
  if (request.world_size() != world_size_) {
    *detail = "world_size " + std::to_string(request.world_size()) + " differs from the coordinator's " +
              std::to_string(world_size_);
    return Reject::kWorldSizeMismatch;
  }
  auto by_identity = rank_of_.find(identity);
  if (by_identity != rank_of_.end()) {
    if (by_identity->second == request.rank()) return Reject::kNone;  // a resent Register
    *detail = "this connection is already registered as rank " + std::to_string(by_identity->second);
    return Reject::kDuplicateRank;
  }
  auto holder = workers_.find(request.rank());
  if (holder != workers_.end()) {
    *detail = "rank " + std::to_string(request.rank()) + " is already held by " + holder->second.Describe();
    return Reject::kDuplicateRank;
  }
  if (!workers_.empty() && workers_.begin()->second.generation != request.generation()) {
    *detail = "generation " + std::to_string(request.generation()) + " differs from the registered workers' " +
              std::to_string(workers_.begin()->second.generation);
    return Reject::kStaleGeneration;
  }
  WorkerInfo info;
  info.identity = identity;
  info.rank = request.rank();
  info.host = request.host();
  info.device = request.device();
  info.pid = request.pid();
  info.generation = request.generation();
  info.registered_ms = now_ms;
  info.last_seen_ms = now_ms;
  workers_[info.rank] = info;
  rank_of_[identity] = info.rank;
  return Reject::kNone;
}

std::optional<uint32_t> WorkerRegistry::RankOf(const std::string& identity) const {
  auto it = rank_of_.find(identity);
  if (it == rank_of_.end()) return std::nullopt;
  return it->second;
}

const WorkerInfo* WorkerRegistry::Find(uint32_t rank) const {
  auto it = workers_.find(rank);
  return it == workers_.end() ? nullptr : &it->second;
}

void WorkerRegistry::Touch(uint32_t rank, int64_t now_ms) {
  auto it = workers_.find(rank);
  if (it != workers_.end()) it->second.last_seen_ms = now_ms;
}

void WorkerRegistry::SetActivity(uint32_t rank, const proto::Heartbeat& heartbeat, int64_t now_ms) {
  auto it = workers_.find(rank);
  if (it == workers_.end() || !heartbeat.has_activity()) return;
  WorkerInfo::Activity& a = it->second.activity;
  a.known = true;
  a.phase = static_cast<WorkerPhase>(heartbeat.phase());  // < kCount: ValidateFromWorker
  a.step = heartbeat.activity_step();
  a.phase_ms = static_cast<int64_t>(heartbeat.phase_ms());
  a.collectives = heartbeat.collectives();
  a.in_collective = heartbeat.in_collective();
  a.received_ms = now_ms;
}

std::optional<uint32_t> WorkerRegistry::FirstDead(int64_t now_ms, int64_t timeout_ms) const {
  std::optional<uint32_t> dead;
  int64_t oldest = now_ms - timeout_ms;
  for (const auto& [rank, info] : workers_) {
    if (info.last_seen_ms < oldest) {
      oldest = info.last_seen_ms;
      dead = rank;
    }
  }
  return dead;
}

std::vector<uint32_t> WorkerRegistry::MissingRanks() const {
  std::vector<uint32_t> missing;
  for (uint32_t rank = 0; rank < world_size_; ++rank) {
    if (!workers_.count(rank)) missing.push_back(rank);
  }
  return missing;
}

}  // namespace bert
