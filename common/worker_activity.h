// WorkerActivity: what a worker's training thread is doing, for the hang
// diagnosis (coordinator/worker_registry.h, FindHang). The training thread
// records its phase and step, and every collective it enters and leaves;
// the client's I/O thread reads it into each Heartbeat (common/protocol.proto),
// so that a coordinator whose ranks wait in a collective that one rank never
// entered names that rank and what it was doing.
//
// Every rank makes the same sequence of collectives, so the count of those
// entered is a sequence number that compares across ranks.
//
// Thread safety: one writer (the training thread), any number of readers; a
// reader may see a phase and a step from two neighbouring moments.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace bert {

enum class WorkerPhase : uint32_t {
  kStarting = 0,       // before the first step: setup, registration, the restore
  kDataWait = 1,       // waiting for the step's batches from the coordinator
  kForward = 2,
  kBackward = 3,
  kCommunication = 4,  // inside a collective
  kOptimizer = 5,
  kCheckpoint = 6,     // copying a checkpoint's shard out
  kCount = 7,
};

inline const char* WorkerPhaseName(WorkerPhase phase) {
  switch (phase) {
    case WorkerPhase::kStarting: return "starting";
    case WorkerPhase::kDataWait: return "data wait";
    case WorkerPhase::kForward: return "forward";
    case WorkerPhase::kBackward: return "backward";
    case WorkerPhase::kCommunication: return "communication";
    case WorkerPhase::kOptimizer: return "optimizer";
    case WorkerPhase::kCheckpoint: return "checkpoint";
    default: return "unknown";
  }
}

class WorkerActivity {
 public:
  struct Snapshot {
    WorkerPhase phase = WorkerPhase::kStarting;
    uint64_t step = 0;
    int64_t phase_ms = 0;      // time in the phase so far
    uint64_t collectives = 0;  // collectives entered so far
    bool in_collective = false;
  };

  void SetStep(uint64_t step) { step_.store(step, std::memory_order_relaxed); }
  // A phase outside a collective (kCommunication is EnterCollective's).
  void Enter(WorkerPhase phase) {
    outer_.store(static_cast<uint32_t>(phase), std::memory_order_relaxed);
    if (!in_collective_.load(std::memory_order_relaxed)) Switch(phase);
  }
  void EnterCollective() {
    collectives_.fetch_add(1, std::memory_order_relaxed);
    in_collective_.store(true, std::memory_order_relaxed);
    Switch(WorkerPhase::kCommunication);
  }
  // Back to the phase the collective was entered from.
  void LeaveCollective() {
    in_collective_.store(false, std::memory_order_relaxed);
    Switch(static_cast<WorkerPhase>(outer_.load(std::memory_order_relaxed)));
  }

  Snapshot Read() const {
    Snapshot s;
    s.phase = static_cast<WorkerPhase>(phase_.load(std::memory_order_relaxed));
    s.step = step_.load(std::memory_order_relaxed);
    s.phase_ms = std::max<int64_t>(0, NowMs() - since_ms_.load(std::memory_order_relaxed));
    s.collectives = collectives_.load(std::memory_order_relaxed);
    s.in_collective = in_collective_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  static int64_t NowMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void Switch(WorkerPhase phase) {
    since_ms_.store(NowMs(), std::memory_order_relaxed);
    phase_.store(static_cast<uint32_t>(phase), std::memory_order_relaxed);
  }

  std::atomic<uint32_t> phase_{static_cast<uint32_t>(WorkerPhase::kStarting)};
  std::atomic<uint32_t> outer_{static_cast<uint32_t>(WorkerPhase::kStarting)};
  std::atomic<uint64_t> step_{0};
  std::atomic<int64_t> since_ms_{NowMs()};
  std::atomic<uint64_t> collectives_{0};
  std::atomic<bool> in_collective_{false};
};

}  // namespace bert
