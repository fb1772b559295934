// The hang diagnosis (coordinator/hang_diagnosis.h) on hand-made heartbeats:
// the ranks that never entered a collective the others wait in too long,
// with what they were doing; a collective every rank entered and none left;
// and what is not a hang.
#include "coordinator/hang_diagnosis.h"

#include <gtest/gtest.h>

namespace bert {
namespace {

constexpr int64_t kTimeoutMs = 10000;

WorkerInfo Worker(uint32_t rank, uint64_t collectives, bool in_collective, WorkerPhase phase, int64_t phase_ms,
                  int64_t received_ms, uint64_t step = 57) {
  WorkerInfo info;
  info.rank = rank;
  info.host = "node" + std::to_string(rank);
  info.pid = 100 + rank;
  info.device = "cuda:0";
  info.activity.known = true;
  info.activity.collectives = collectives;
  info.activity.in_collective = in_collective;
  info.activity.phase = phase;
  info.activity.phase_ms = phase_ms;
  info.activity.received_ms = received_ms;
  info.activity.step = step;
  return info;
}

TEST(HangDiagnosisTest, NamesTheRankThatNeverEnteredAndWhatItDoes) {
  std::map<uint32_t, WorkerInfo> workers;
  workers[0] = Worker(0, 28, true, WorkerPhase::kCommunication, 9000, 100000);
  workers[1] = Worker(1, 27, false, WorkerPhase::kForward, 11000, 99500, 56);
  workers[2] = Worker(2, 28, true, WorkerPhase::kCommunication, 8000, 100000);
  // 9.0 + 0.5 s: not yet.
  EXPECT_FALSE(FindHang(workers, 100500, kTimeoutMs).has_value());
  // 9.0 + 1.5 s for rank 0.
  std::optional<Hang> hang = FindHang(workers, 101500, kTimeoutMs);
  ASSERT_TRUE(hang.has_value());
  EXPECT_EQ(hang->collective, 28u);
  EXPECT_EQ(hang->missing, std::vector<uint32_t>{1});
  EXPECT_EQ(hang->message,
            "collective #28: ranks 0, 2 have waited in it for 10.5 s (--collective-timeout-ms 10000); rank 1 (host "
            "node1, pid 101, cuda:0) never entered it: it is at step 56, in forward for 13.0 s by now (its last "
            "heartbeat came 2.0 s ago)");
}

TEST(HangDiagnosisTest, EveryRankInsideAndNoneLeftIsTheCollectiveItself) {
  std::map<uint32_t, WorkerInfo> workers;
  for (uint32_t rank = 0; rank < 2; ++rank) {
    workers[rank] = Worker(rank, 40, true, WorkerPhase::kCommunication, 12000, 50000);
  }
  std::optional<Hang> hang = FindHang(workers, 50000, kTimeoutMs);
  ASSERT_TRUE(hang.has_value());
  EXPECT_TRUE(hang->missing.empty());
  EXPECT_NE(hang->message.find("every rank entered it and none left: the collective itself hangs"), std::string::npos)
      << hang->message;
}

TEST(HangDiagnosisTest, WhatIsNotAHang) {
  std::map<uint32_t, WorkerInfo> workers;
  EXPECT_FALSE(FindHang(workers, 0, kTimeoutMs).has_value()) << "nobody registered";
  // A rank that left the collective and moved on: the waiting rank's report is stale, not a hang.
  workers[0] = Worker(0, 28, true, WorkerPhase::kCommunication, 11000, 1000);
  workers[1] = Worker(1, 29, false, WorkerPhase::kForward, 100, 1000);
  EXPECT_FALSE(FindHang(workers, 1000, kTimeoutMs).has_value());
  // Ranks that report no activity (a worker without it) are left out.
  WorkerInfo silent;
  silent.rank = 2;
  workers[2] = silent;
  workers[1] = Worker(1, 28, false, WorkerPhase::kOptimizer, 100, 1000);
  EXPECT_FALSE(FindHang(workers, 1000, kTimeoutMs).has_value()) << "rank 1 entered and left #28";
  workers[1] = Worker(1, 20, false, WorkerPhase::kDataWait, 100, 1000);
  std::optional<Hang> hang = FindHang(workers, 1000, kTimeoutMs);
  ASSERT_TRUE(hang.has_value());
  EXPECT_EQ(hang->missing, std::vector<uint32_t>{1});
  EXPECT_NE(hang->message.find("rank 0 has waited in it for 11.0 s"), std::string::npos) << hang->message;
  EXPECT_NE(hang->message.find("in data wait for"), std::string::npos) << hang->message;
  EXPECT_EQ(DescribeActivity(silent, 1000), "");
}

}  // namespace
}  // namespace bert
