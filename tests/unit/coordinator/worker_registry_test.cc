// Worker registration rules and liveness (coordinator/worker_registry.h),
// with time driven by hand.
#include "coordinator/worker_registry.h"

#include <gtest/gtest.h>

namespace bert {
namespace {

proto::Register Request(uint32_t rank, uint32_t world = 2, const std::string& run_id = "run", uint64_t generation = 0) {
  proto::Register r;
  r.set_run_id(run_id);
  r.set_rank(rank);
  r.set_world_size(world);
  r.set_host("node" + std::to_string(rank));
  r.set_device("cpu");
  r.set_pid(100 + rank);
  r.set_generation(generation);
  r.set_protocol_version(kProtocolVersion);
  return r;
}

TEST(WorkerRegistryTest, RefusesWrongRunWrongWorldDuplicateRankAndOtherGeneration) {
  WorkerRegistry registry("run", 2);
  std::string detail;
  EXPECT_EQ(registry.Register("a", Request(0, 2, "other-run"), 0, &detail), Reject::kWrongRunId);
  EXPECT_NE(detail.find("run_id 'other-run' is not this coordinator's run 'run'"), std::string::npos) << detail;
  EXPECT_EQ(registry.Register("a", Request(0, 3), 0, &detail), Reject::kWorldSizeMismatch);
  EXPECT_NE(detail.find("world_size 3 differs from the coordinator's 2"), std::string::npos) << detail;
  EXPECT_EQ(registry.num_registered(), 0u);

  EXPECT_EQ(registry.Register("a", Request(0), 0, &detail), Reject::kNone);
  EXPECT_EQ(registry.Register("a", Request(0), 5, &detail), Reject::kNone);  // a resent Register
  EXPECT_EQ(registry.Register("b", Request(0), 5, &detail), Reject::kDuplicateRank);
  EXPECT_NE(detail.find("rank 0 is already held by rank 0 (host node0, pid 100, cpu)"), std::string::npos) << detail;
  EXPECT_EQ(registry.Register("a", Request(1), 5, &detail), Reject::kDuplicateRank);  // one connection, two ranks
  EXPECT_EQ(registry.Register("b", Request(1, 2, "run", 1), 5, &detail), Reject::kStaleGeneration);
  EXPECT_FALSE(registry.AllRegistered());
  EXPECT_EQ(registry.MissingRanks(), std::vector<uint32_t>{1});
  EXPECT_EQ(registry.Register("b", Request(1), 5, &detail), Reject::kNone);
  EXPECT_TRUE(registry.AllRegistered());
  EXPECT_EQ(registry.RankOf("b"), 1u);
  EXPECT_FALSE(registry.RankOf("c").has_value());
}

TEST(WorkerRegistryTest, TheWorkerSilentLongestPastTheTimeoutIsDead) {
  WorkerRegistry registry("run", 3);
  std::string detail;
  for (uint32_t rank = 0; rank < 3; ++rank) {
    ASSERT_EQ(registry.Register("id" + std::to_string(rank), Request(rank, 3), 1000, &detail), Reject::kNone);
  }
  EXPECT_FALSE(registry.FirstDead(3999, 3000).has_value());
  registry.Touch(0, 3500);
  registry.Touch(2, 3600);
  EXPECT_FALSE(registry.FirstDead(4000, 3000).has_value());  // exactly at the timeout: alive
  EXPECT_EQ(registry.FirstDead(4001, 3000), 1u);
  registry.Touch(1, 4001);
  EXPECT_FALSE(registry.FirstDead(6000, 3000).has_value());
  EXPECT_EQ(registry.FirstDead(7000, 3000), 0u);  // rank 0 last seen at 3500, the oldest
}

}  // namespace
}  // namespace bert
