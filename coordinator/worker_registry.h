// WorkerRegistry: who is registered as which rank, and who is alive.
//
// Registration is checked against the run: the run id must match, the world
// size must equal the coordinator's, the rank must be free (a live worker
// holding it makes a second Register a duplicate), and all workers of a
// session must come from one launcher generation (a straggler from before a
// restart is refused). The same peer may resend its Register (a retry); it
// gets the same answer.
//
// Liveness: the server calls Touch() for every valid message of a worker; a
// worker not heard from for longer than the timeout is dead. Time is passed
// in (milliseconds on a monotonic clock), so tests drive it by hand.
// Not thread-safe (the server's thread owns it).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/protocol.h"
#include "common/worker_activity.h"

namespace bert {

struct WorkerInfo {
  std::string identity;  // ZeroMQ routing id of its DEALER
  uint32_t rank = 0;
  std::string host, device;
  uint32_t pid = 0;
  uint64_t generation = 0;
  int64_t registered_ms = 0;
  int64_t last_seen_ms = 0;
  // What its training thread was doing at its last Heartbeat that said
  // (common/worker_activity.h); known is false until one did.
  struct Activity {
    bool known = false;
    WorkerPhase phase = WorkerPhase::kStarting;
    uint64_t step = 0;
    int64_t phase_ms = 0;       // in the phase when the heartbeat was sent
    uint64_t collectives = 0;   // collectives entered by then
    bool in_collective = false;
    int64_t received_ms = 0;    // when the heartbeat arrived
  } activity;
  // "rank 1 (host h, pid 123, cuda:0)": how logs and Abort reasons name it.
  std::string Describe() const;
};

class WorkerRegistry {
 public:
  WorkerRegistry(std::string run_id, uint32_t world_size);

  // Checks a Register (already field-validated by ValidateFromWorker) from
  // `identity`; on success records the worker and returns kNone, otherwise
  // returns the reason and sets *detail to the line for RegisterReply.reason.
  Reject Register(const std::string& identity, const proto::Register& request, int64_t now_ms, std::string* detail);

  // The rank a peer registered as, if any.
  std::optional<uint32_t> RankOf(const std::string& identity) const;
  const WorkerInfo* Find(uint32_t rank) const;
  void Touch(uint32_t rank, int64_t now_ms);
  // Keeps a Heartbeat's activity fields (when it has them).
  void SetActivity(uint32_t rank, const proto::Heartbeat& heartbeat, int64_t now_ms);

  // The registered worker silent for longest, if over timeout_ms.
  std::optional<uint32_t> FirstDead(int64_t now_ms, int64_t timeout_ms) const;
  bool AllRegistered() const { return workers_.size() == world_size_; }
  size_t num_registered() const { return workers_.size(); }
  std::vector<uint32_t> MissingRanks() const;
  const std::map<uint32_t, WorkerInfo>& workers() const { return workers_; }

 private:
  const std::string run_id_;
  const uint32_t world_size_;
  std::map<uint32_t, WorkerInfo> workers_;        // by rank
  std::map<std::string, uint32_t> rank_of_;      // identity -> rank
};

}  // namespace bert
