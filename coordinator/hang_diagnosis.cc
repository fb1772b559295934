#include "coordinator/hang_diagnosis.h"

#include <algorithm>
#include <cstdio>
#include <vector>

namespace bert {
namespace {

std::string Seconds(int64_t ms) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s", static_cast<double>(ms) / 1000.0);
  return text;
}

// How long the worker has been in its phase by now (its report plus the time since).
int64_t PhaseAge(const WorkerInfo::Activity& a, int64_t now_ms) { return a.phase_ms + (now_ms - a.received_ms); }

std::string Ranks(const std::vector<uint32_t>& ranks) {
  std::string out;
  for (uint32_t rank : ranks) out += (out.empty() ? "" : ", ") + std::to_string(rank);
  return out;
}

}  // namespace

std::string DescribeActivity(const WorkerInfo& worker, int64_t now_ms) {
  const WorkerInfo::Activity& a = worker.activity;
  if (!a.known) return "";
  return "step " + std::to_string(a.step) + ", in " + WorkerPhaseName(a.phase) + " for " +
         Seconds(PhaseAge(a, now_ms)) + " by now (its last heartbeat came " + Seconds(now_ms - a.received_ms) +
         " ago)";
}

std::optional<Hang> FindHang(const std::map<uint32_t, WorkerInfo>& workers, int64_t now_ms, int64_t timeout_ms) {
  // The newest collective some rank has waited in for too long.
  Hang hang;
  int64_t waited_ms = 0;
  for (const auto& [rank, info] : workers) {
    const WorkerInfo::Activity& a = info.activity;
    if (!a.known || !a.in_collective || PhaseAge(a, now_ms) <= timeout_ms) continue;
    if (a.collectives > hang.collective) hang.collective = a.collectives;
  }
  if (hang.collective == 0) return std::nullopt;
  std::vector<uint32_t> waiting;
  for (const auto& [rank, info] : workers) {
    const WorkerInfo::Activity& a = info.activity;
    if (!a.known) continue;
    if (a.collectives < hang.collective) {
      hang.missing.push_back(rank);
    } else if (a.in_collective && a.collectives == hang.collective) {
      waiting.push_back(rank);
      waited_ms = std::max(waited_ms, PhaseAge(a, now_ms));
    }
  }
  const std::string head = "collective #" + std::to_string(hang.collective) + ": rank" +
                           (waiting.size() == 1 ? " " : "s ") + Ranks(waiting) + (waiting.size() == 1 ? " has" : " have") +
                           " waited in it for " + Seconds(waited_ms) + " (--collective-timeout-ms " +
                           std::to_string(timeout_ms) + ")";
  if (hang.missing.empty()) {
    if (waiting.size() != workers.size()) return std::nullopt;  // some rank left it: not a hang
    hang.message = head + "; every rank entered it and none left: the collective itself hangs (the interconnect, "
                          "or the MPI or NCCL library)";
    return hang;
  }
  hang.message = head;
  for (uint32_t rank : hang.missing) {
    const WorkerInfo& info = workers.at(rank);
    hang.message += "; " + info.Describe() + " never entered it: it is at " + DescribeActivity(info, now_ms);
  }
  return hang;
}

}  // namespace bert
