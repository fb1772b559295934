// Dispatch arithmetic (datapipe/dispatch_plan.h): geometry checks, the
// micro-batches of every rank tiling each global batch for W = 1..16, the
// global step -> (epoch, step in epoch) walk against brute force, and the
// committed-step cursor under out-of-order acknowledgements.
#include "datapipe/dispatch_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace bert {
namespace {

TEST(DispatchGeometryTest, ChecksDivisibilityAndNamesTheKey) {
  Result<DispatchGeometry> g = DispatchGeometry::Make(256, 4, 0);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->micro_batch_size, 64u);  // 0: no gradient accumulation
  EXPECT_EQ(g->micro_batches, 1u);
  g = DispatchGeometry::Make(256, 4, 16);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->micro_batches, 4u);
  g = DispatchGeometry::Make(256, 3, 0);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("train.global_batch_size: 256 is not a multiple of the world size 3"),
            std::string::npos)
      << g.status().message();
  g = DispatchGeometry::Make(256, 4, 24);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("train.micro_batch_size: 24 does not divide the 64"), std::string::npos);
  EXPECT_FALSE(DispatchGeometry::Make(0, 1, 0).ok());
  EXPECT_FALSE(DispatchGeometry::Make(8, 0, 0).ok());
}

TEST(DispatchPlanTest, MicroBatchesOfAllRanksTileEachGlobalBatchForEveryWorldSize) {
  for (uint32_t world = 1; world <= 16; ++world) {
    for (uint64_t per_rank : {1, 2, 6, 12}) {
      const uint64_t global = per_rank * world;
      for (uint64_t micro = 1; micro <= per_rank; ++micro) {
        if (per_rank % micro != 0) continue;
        Result<DispatchGeometry> g = DispatchGeometry::Make(global, world, micro);
        ASSERT_TRUE(g.ok()) << g.status().message();
        for (uint64_t k : {0, 1, 7}) {
          // Concatenating rank 0's micro-batches, then rank 1's, ... gives
          // exactly [k*G, (k+1)*G), in order, with no gap or overlap.
          uint64_t expected = k * global;
          for (uint32_t rank = 0; rank < world; ++rank) {
            for (uint32_t m = 0; m < g->micro_batches; ++m) {
              const SampleRange r = MicroBatchRange(*g, StepLocation{3, k}, rank, m);
              ASSERT_EQ(r.begin, expected) << "W " << world << " micro " << micro << " rank " << rank << " m " << m;
              ASSERT_EQ(r.size(), micro);
              expected = r.end;
            }
          }
          ASSERT_EQ(expected, (k + 1) * global);
        }
      }
    }
  }
}

TEST(StepMapperTest, WalksEpochSizesAndDropsEachEpochsRemainder) {
  const std::vector<uint64_t> sizes = {100, 95, 130, 32, 64};
  const uint64_t global = 32;  // steps per epoch: 3, 2, 4, 1, 2
  std::vector<int> asked(sizes.size() + 1, 0);
  StepMapper mapper(global, [&](uint64_t epoch) -> Result<uint64_t> {
    ++asked[epoch];
    if (epoch >= sizes.size()) return Status::NotFound("no epoch " + std::to_string(epoch));
    return sizes[epoch];
  });
  // Brute force: list every (epoch, step) in order.
  std::vector<StepLocation> expected;
  for (uint64_t e = 0; e < sizes.size(); ++e) {
    for (uint64_t k = 0; k < sizes[e] / global; ++k) expected.push_back({e, k});
  }
  ASSERT_EQ(expected.size(), 12u);
  // Out of order, as builder threads ask.
  std::vector<uint64_t> steps(expected.size());
  for (uint64_t s = 0; s < steps.size(); ++s) steps[s] = s;
  std::shuffle(steps.begin(), steps.end(), std::mt19937_64(3));
  for (uint64_t step : steps) {
    Result<StepLocation> location = mapper.Locate(step);
    ASSERT_TRUE(location.ok()) << location.status().message();
    EXPECT_EQ(location->epoch, expected[step].epoch) << step;
    EXPECT_EQ(location->step_in_epoch, expected[step].step_in_epoch) << step;
  }
  for (size_t e = 0; e < sizes.size(); ++e) EXPECT_EQ(asked[e], 1) << "epoch " << e << " asked once";
  EXPECT_EQ(mapper.KnownEpochSizes(), sizes);
  // Past the last epoch the provider's error comes through.
  Result<StepLocation> beyond = mapper.Locate(12);
  ASSERT_FALSE(beyond.ok());
  EXPECT_NE(beyond.status().message().find("no epoch 5"), std::string::npos);
}

TEST(StepMapperTest, AnEpochSmallerThanTheGlobalBatchIsAnErrorNamingIt) {
  StepMapper mapper(64, [](uint64_t epoch) -> Result<uint64_t> { return epoch == 0 ? 200 : 50; });
  EXPECT_TRUE(mapper.Locate(2).ok());  // epoch 0: 3 steps
  Result<StepLocation> location = mapper.Locate(3);
  ASSERT_FALSE(location.ok());
  EXPECT_NE(location.status().message().find("epoch 1 has 50 samples, fewer than train.global_batch_size 64"),
            std::string::npos)
      << location.status().message();
}

TEST(StepTrackerTest, CursorMovesOnlyPastStepsEveryBatchOfWhichIsAcknowledged) {
  StepTracker tracker(10, 3);
  EXPECT_FALSE(tracker.Ack(11));
  EXPECT_FALSE(tracker.Ack(11));
  EXPECT_FALSE(tracker.Ack(11));  // step 11 complete, but 10 is not
  EXPECT_EQ(tracker.cursor(), 10u);
  EXPECT_FALSE(tracker.Ack(10));
  EXPECT_FALSE(tracker.Ack(10));
  EXPECT_TRUE(tracker.Ack(10));  // 10 and 11 done at once
  EXPECT_EQ(tracker.cursor(), 12u);
}

TEST(StepTrackerTest, AnyAckOrderEndsAtTheLastStep) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const uint64_t steps = 50, per_step = 1 + seed % 5, start = seed;
    std::vector<uint64_t> acks;
    for (uint64_t s = start; s < steps; ++s) acks.insert(acks.end(), per_step, s);
    // Ranks run ahead of each other by a bounded amount: shuffle windows.
    std::mt19937_64 rng(seed);
    for (size_t i = 0; i + 8 <= acks.size(); i += 4) std::shuffle(acks.begin() + i, acks.begin() + i + 8, rng);
    StepTracker tracker(start, per_step);
    uint64_t last = start;
    for (uint64_t step : acks) {
      tracker.Ack(step);
      ASSERT_GE(tracker.cursor(), last);
      last = tracker.cursor();
    }
    EXPECT_EQ(tracker.cursor(), steps) << seed;
  }
}

}  // namespace
}  // namespace bert
