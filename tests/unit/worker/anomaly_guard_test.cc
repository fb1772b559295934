// AnomalyGuard (worker/train/anomaly.h): which steps are anomalies, the cap
// on skips, and a state that a checkpoint and the run's record carry so
// that a resumed run judges its steps as the uninterrupted one.
#include "worker/train/anomaly.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "common/file_util.h"
#include "test_util.h"

namespace bert {
namespace {

AnomalyConfig Spikes(double loss_spike, double grad_norm_spike) {
  AnomalyConfig config;
  config.loss_spike = loss_spike;
  config.grad_norm_spike = grad_norm_spike;
  config.median_window = 20;
  return config;
}

bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(AnomalyGuardTest, NonFiniteLossOrGradientNormIsAnAnomalyFromTheFirstStep) {
  AnomalyGuard guard{AnomalyConfig()};
  EXPECT_TRUE(guard.enabled());
  EXPECT_EQ(guard.Check(std::nan(""), 1.0), "loss nan");
  EXPECT_EQ(guard.Check(3.0, std::numeric_limits<double>::infinity()), "gradient norm inf");
  EXPECT_EQ(guard.Check(3.0, 1.0), "");
  // Without spike factors, any finite value is fine.
  for (int i = 0; i < 30; ++i) EXPECT_EQ(guard.Check(3.0, 1.0), "");
  EXPECT_EQ(guard.Check(3e6, 1e6), "");
  AnomalyConfig off;
  off.action = "off";
  EXPECT_FALSE(AnomalyGuard(off).enabled());
}

TEST(AnomalyGuardTest, ASpikeIsKTimesTheMedianOfTheRecentStepsOnceTenAreThere) {
  AnomalyGuard guard(Spikes(3, 10));
  // Before 10 steps nothing is a spike.
  for (int i = 0; i < 9; ++i) EXPECT_EQ(guard.Check(i == 0 ? 50.0 : 2.0, 1.0), "") << i;
  EXPECT_EQ(guard.Check(2.0, 1.0), "");  // 10 in the history now: median 2
  EXPECT_EQ(guard.Check(5.9, 1.0), "");  // under 3 x 2
  const std::string spike = guard.Check(7.0, 1.0);
  EXPECT_TRUE(Contains(spike, "loss 7 is 3.5x the median 2 of the last 11 steps")) << spike;
  EXPECT_TRUE(Contains(spike, "train.anomaly.loss_spike 3")) << spike;
  const std::string norm = guard.Check(2.0, 11.0);
  EXPECT_TRUE(Contains(norm, "gradient norm 11 is 11x the median 1")) << norm;
  // A refused step does not enter the history: the same spike is refused again.
  EXPECT_FALSE(guard.Check(7.0, 1.0).empty());
  // The window slides: after 20 steps at loss 6, 7 is no spike.
  for (int i = 0; i < 20; ++i) EXPECT_EQ(guard.Check(i < 5 ? 5.5 : 6.0, 1.0), "");
  EXPECT_EQ(guard.Check(7.0, 1.0), "");
}

TEST(AnomalyGuardTest, MoreThanMaxSkipsWithinTheWindowDiverges) {
  AnomalyConfig config;
  config.max_skips = 2;
  config.skip_window = 10;
  AnomalyGuard guard(config);
  EXPECT_TRUE(guard.AddSkip(5, "loss nan", "").ok());
  EXPECT_TRUE(guard.AddSkip(8, "loss nan", "").ok());
  const Status third = guard.AddSkip(12, "gradient norm nan", "/runs/x/checkpoints/step-000010");
  ASSERT_FALSE(third.ok());
  EXPECT_TRUE(Contains(third.message(), "step 12: gradient norm nan; that is 3 anomalies within 10 steps, more "
                                        "than train.anomaly.max_skips 2 allow"))
      << third.message();
  EXPECT_TRUE(Contains(third.message(), "/runs/x/checkpoints/step-000010")) << third.message();
  EXPECT_TRUE(Contains(third.message(), "train.init_from")) << third.message();
  EXPECT_EQ(guard.skipped(), (std::set<uint64_t>{5, 8}));  // the stop is not a skip
  // Outside the window the old skips do not count.
  EXPECT_TRUE(guard.AddSkip(30, "loss nan", "").ok());
  EXPECT_TRUE(guard.Skips(30));
  EXPECT_FALSE(guard.Skips(12));
}

TEST(AnomalyGuardTest, ConfiguredSkipStepsAreSkippedButNotCounted) {
  AnomalyConfig config;
  config.skip_steps = {3, 4};
  config.max_skips = 0;
  AnomalyGuard guard(config);
  EXPECT_TRUE(guard.Skips(3));
  EXPECT_TRUE(guard.Skips(4));
  EXPECT_FALSE(guard.Skips(5));
  EXPECT_TRUE(guard.skipped().empty());
  EXPECT_FALSE(guard.AddSkip(6, "loss nan", "").ok()) << "max_skips 0: the first anomaly stops the run";
}

// A checkpoint's state restores the same verdicts; the record adds the
// skips made after it.
TEST(AnomalyGuardTest, StateAndRecordRestoreTheSameJudgement) {
  AnomalyGuard original(Spikes(3, 0));
  for (int i = 0; i < 15; ++i) original.Check(2.0 + 0.01 * i, 1.0);
  ASSERT_TRUE(original.AddSkip(9, "loss nan", "").ok());
  const nlohmann::json state = original.StateJson();
  EXPECT_EQ(state["skipped_steps"], nlohmann::json::array({9}));
  EXPECT_EQ(state["recent_loss"].size(), 15u);

  AnomalyGuard resumed(Spikes(3, 0));
  ASSERT_TRUE(resumed.Restore(nlohmann::json::parse(state.dump()), "manifest.json").ok());
  EXPECT_TRUE(resumed.Skips(9));
  for (double loss : {6.3, 6.5, 2.1, 100.0}) EXPECT_EQ(resumed.Check(loss, 1.0), original.Check(loss, 1.0)) << loss;

  testing::TempDir dir;
  const std::string path = AnomalyRecordPath(dir.path());
  AnomalyGuard fresh(Spikes(3, 0));
  ASSERT_TRUE(fresh.LoadRecord(path).ok()) << "no record: nothing skipped";
  EXPECT_TRUE(fresh.skipped().empty());
  ASSERT_TRUE(original.AddSkip(20, "loss inf", "").ok());
  ASSERT_TRUE(WriteFileAtomic(path, original.RecordText()).ok());
  ASSERT_TRUE(fresh.LoadRecord(path).ok());
  EXPECT_EQ(fresh.skipped(), (std::set<uint64_t>{9, 20}));
  const nlohmann::json record = nlohmann::json::parse(original.RecordText());
  ASSERT_EQ(record["events"].size(), 2u);
  EXPECT_EQ(record["events"][1]["step"], 20);
  EXPECT_EQ(record["events"][1]["reason"], "loss inf");
  EXPECT_EQ(record["events"][1]["action"], "skip");
}

TEST(AnomalyGuardTest, ACorruptRecordOrStateIsAnErrorNamingIt) {
  testing::TempDir dir;
  const std::string path = AnomalyRecordPath(dir.path());
  AnomalyGuard guard{AnomalyConfig()};
  for (const std::string text : {std::string("{\"skipped_steps\": [4, "), std::string("{\"skipped_steps\": [-4]}"),
                                 std::string("[1, 2]"), std::string("{\"events\": 3}")}) {
    ASSERT_TRUE(WriteFileAtomic(path, text).ok());
    const Status loaded = guard.LoadRecord(path);
    ASSERT_FALSE(loaded.ok()) << text;
    EXPECT_EQ(loaded.message().rfind(path + ": ", 0), 0u) << loaded.message();
    EXPECT_TRUE(Contains(loaded.message(), "delete it")) << loaded.message();
  }
  const Status bad = guard.Restore(nlohmann::json{{"recent_loss", {1.0, "x"}}}, "step-000008/manifest.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.message(), "step-000008/manifest.json: anomaly.recent_loss must be a list of finite numbers");
  EXPECT_FALSE(guard.Restore(nlohmann::json(3), "m.json").ok());
  EXPECT_TRUE(guard.Restore(nlohmann::json(), "m.json").ok()) << "null: a checkpoint without one";
}

}  // namespace
}  // namespace bert
