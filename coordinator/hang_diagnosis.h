// Hang diagnosis: from the workers' last heartbeats (WorkerInfo::Activity),
// a collective that some rank has waited in for longer than the timeout,
// and the ranks that never entered it, with what each was doing (its step
// and phase). Every rank makes the same sequence of collectives, so "never
// entered" is "entered fewer". When every rank entered it and none left,
// the collective itself hangs (the interconnect or the library).
//
// A rank stopped or stuck (SIGSTOP, a deadlock, a kernel that never ends)
// still answers in the heartbeat timeout if its process is frozen; a rank
// whose I/O thread lives on while its training thread is stuck only shows
// here. Pure: time is passed in.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "coordinator/worker_registry.h"

namespace bert {

struct Hang {
  std::string message;  // one line: the collective, who waits, who never came and what it does
  uint64_t collective = 0;
  std::vector<uint32_t> missing;  // the ranks that never entered it (empty: all did)
};

std::optional<Hang> FindHang(const std::map<uint32_t, WorkerInfo>& workers, int64_t now_ms, int64_t timeout_ms);

// "step 57, in forward for 1.2 s by now (its last heartbeat came 0.3 s ago)";
// "" when unknown.
std::string DescribeActivity(const WorkerInfo& worker, int64_t now_ms);

}  // namespace bert
