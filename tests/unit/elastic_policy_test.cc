// bertctl pretrain's elastic shrink policy (cli/elastic.h): when failures
// without progress give a lost worker up, and which smaller world size the
// run continues with.
#include "cli/elastic.h"

#include <gtest/gtest.h>

namespace bert::cli {
namespace {

bool DividesThirty(uint32_t w) { return 30 % w == 0; }

TEST(ElasticPolicyTest, FailuresWithoutProgressForTheTimeoutShrinkToTheLargestSizeThatFits) {
  ElasticPolicy policy(4, 2, /*replace_timeout_s=*/60, DividesThirty);
  EXPECT_FALSE(policy.AfterFailure(8, 100, false).has_value()) << "the first failure only relaunches";
  EXPECT_FALSE(policy.AfterFailure(8, 130, false).has_value()) << "30 s without progress: not yet";
  EXPECT_FALSE(policy.AfterFailure(16, 200, false).has_value()) << "progress: a new stall begins";
  EXPECT_FALSE(policy.AfterFailure(16, 259, false).has_value());
  const std::optional<uint32_t> fewer = policy.AfterFailure(16, 260, false);
  ASSERT_TRUE(fewer.has_value());
  EXPECT_EQ(*fewer, 3u) << "30 samples: 3 ranks of 10";
  EXPECT_EQ(policy.workers(), 3u);
  // At 3 the stall starts over; then 2 is the floor.
  EXPECT_FALSE(policy.AfterFailure(16, 300, false).has_value());
  EXPECT_EQ(policy.AfterFailure(16, 400, false), std::optional<uint32_t>(2));
  EXPECT_FALSE(policy.AfterFailure(16, 500, false).has_value());
  EXPECT_FALSE(policy.AfterFailure(16, 900, true).has_value()) << "--min-workers 2: no smaller size";
}

TEST(ElasticPolicyTest, SpentRelaunchesShrinkAtOnceAndSizesTheBatchDoesNotDivideAreSkipped) {
  ElasticPolicy policy(5, 1, /*replace_timeout_s=*/3600, DividesThirty);
  EXPECT_EQ(policy.AfterFailure(0, 10, /*retries_spent=*/true), std::optional<uint32_t>(3)) << "4 does not divide 30";
  ElasticPolicy none(2, 2, 0, DividesThirty);
  EXPECT_FALSE(none.AfterFailure(4, 0, false).has_value());
  EXPECT_FALSE(none.AfterFailure(4, 1, false).has_value()) << "--min-workers equal to --workers: never";
}

}  // namespace
}  // namespace bert::cli
