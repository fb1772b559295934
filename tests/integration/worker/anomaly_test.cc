// train.anomaly end to end: `bertctl pretrain` with the real coordinator and
// 2 real workers, and a NaN put into one step's gradient through the
// workers' test seam (--fault-nan-steps). The run rolls back to its last
// committed checkpoint, skips exactly that step, and ends bit-identical to a
// run that was given that skip (train.anomaly.skip_steps) from the start,
// its checkpoints and RUN_DIR/anomalies.json saying which step was skipped
// and why. More anomalies than train.anomaly.max_skips stop the run with
// the exit code that says so and a message that says what to do.
#include <gtest/gtest.h>

#include <xxhash.h>

#include "checkpoint/checkpoint.h"
#include "common/process.h"
#include "integration/worker/pretrain_run.h"

namespace bert::testing {
namespace {

constexpr uint64_t kSteps = 14, kEvery = 4;
constexpr uint64_t kNanStep = 9;  // after the checkpoint of step 8 is committed

bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

class AnomalyTest : public PretrainRunTest {
 protected:
  // bertctl pretrain with 2 workers; `worker_args` go to every bert-worker.
  // Returns its exit code; its output is in NAME-bertctl.log.
  int Pretrain(const std::string& name, const std::string& config, const std::string& worker_args) {
    ProcessOptions options;
    options.argv = {"/bin/sh", "-c",
                    "exec " + Bertctl() + " pretrain --config " + config + " --workers 2 --max-restarts 0" +
                        " --worker-args '--save-params " + (work_ / (name + ".params")) + " " + worker_args + "'" +
                        " --coordinator-args '--heartbeat-interval-ms 200 --heartbeat-timeout-ms 1500'"};
    options.log_path = work_ / (name + "-bertctl.log");
    Result<std::unique_ptr<Process>> process = Process::Start(options);
    EXPECT_TRUE(process.ok()) << process.status().message();
    if (!process.ok()) return -1;
    return (*process)->Wait(300000).value_or(-1);
  }

  std::string Output(const std::string& name) const { return Text(work_ / (name + "-bertctl.log")); }

  LoadedCheckpoint Latest(const std::string& name) {
    Result<LoadedCheckpoint> latest = CheckpointStore(work_ / name).LoadLatest();
    EXPECT_TRUE(latest.ok()) << latest.status().message();
    return latest.ok() ? *latest : LoadedCheckpoint();
  }

};

TEST_F(AnomalyTest, ANanRollsBackSkipsThatStepAndEqualsARunGivenThatSkipFromTheStart) {
  const std::string skip = "  anomaly:\n    skip_steps: [" + std::to_string(kNanStep) + "]\n";
  ASSERT_EQ(Pretrain("given", WriteRun("given", kMicroBatch, kSteps, kEvery, skip), ""), 0) << Output("given");
  EXPECT_TRUE(Contains(Output("given"), "step " + std::to_string(kNanStep) + " skipped")) << Output("given");

  ASSERT_EQ(Pretrain("nan", WriteRun("nan", kMicroBatch, kSteps, kEvery),
                     "--fault-nan-steps " + std::to_string(kNanStep)),
            0)
      << Output("nan");
  const std::string output = Output("nan");
  // One rollback, to a committed checkpoint, not counted as a failure (--max-restarts 0).
  EXPECT_TRUE(Contains(output, "a NaN put into the gradient")) << output;
  EXPECT_TRUE(Contains(output, "rolled back after an anomalous step")) << output;
  EXPECT_TRUE(Contains(output, "restarting from step-0000")) << output;
  EXPECT_TRUE(Contains(output, "run complete")) << output;

  // The record: that step, and why.
  const Json record = Json::parse(Text(work_ / "nan/anomalies.json"), nullptr, false);
  ASSERT_TRUE(record.is_object()) << Text(work_ / "nan/anomalies.json");
  EXPECT_EQ(record["skipped_steps"], Json::array({kNanStep})) << record.dump();
  ASSERT_EQ(record["events"].size(), 1u) << record.dump();
  EXPECT_EQ(record["events"][0]["step"], kNanStep);
  EXPECT_EQ(record["events"][0]["reason"], "gradient norm nan") << record.dump();

  // The final checkpoint carries the skip, and equals the run given it from
  // the start: weights and optimizer moments bit for bit, one update fewer.
  const LoadedCheckpoint given = Latest("given"), rolled_back = Latest("nan");
  ASSERT_EQ(rolled_back.manifest.step, kSteps);
  EXPECT_EQ(rolled_back.manifest.anomaly["skipped_steps"], Json::array({kNanStep}));
  EXPECT_EQ(rolled_back.manifest.anomaly["recent_loss"].size(), kSteps - 1);
  EXPECT_EQ(rolled_back.manifest.optimizer.value("step", int64_t{-1}), static_cast<int64_t>(kSteps - 1));
  EXPECT_EQ(given.manifest.optimizer.value("step", int64_t{-1}), static_cast<int64_t>(kSteps - 1));
  const std::vector<float> expected = CheckpointState(given), actual = CheckpointState(rolled_back);
  ASSERT_EQ(actual.size(), expected.size());
  ASSERT_FALSE(actual.empty());
  EXPECT_EQ(XXH3_64bits(actual.data(), actual.size() * sizeof(float)),
            XXH3_64bits(expected.data(), expected.size() * sizeof(float)))
      << "the rolled-back run's weights or optimizer state differ from the run given the skip";
  EXPECT_EQ(ReadFloats(work_ / "nan.params"), ReadFloats(work_ / "given.params"));
}

TEST_F(AnomalyTest, MoreAnomaliesThanMaxSkipsStopTheRunSayingWhatToDo) {
  const std::string cap = "  anomaly:\n    max_skips: 1\n    skip_window: 100\n";
  const int code = Pretrain("diverging", WriteRun("diverging", kMicroBatch, kSteps, kEvery, cap),
                            "--fault-nan-steps 5,7");
  const std::string output = Output("diverging");
  EXPECT_EQ(code, kExitDiverged) << output;
  EXPECT_TRUE(Contains(output, "rolled back after an anomalous step")) << output;  // step 5: skipped
  EXPECT_TRUE(Contains(output, "step 7: gradient norm nan; that is 2 anomalies within 100 steps")) << output;
  EXPECT_TRUE(Contains(output, "train.init_from")) << output;
  EXPECT_FALSE(Contains(output, "Restart 1")) << output;
  const Json record = Json::parse(Text(work_ / "diverging/anomalies.json"), nullptr, false);
  ASSERT_TRUE(record.is_object());
  EXPECT_EQ(record["skipped_steps"], Json::array({5}));  // the stop is not a skip
  ASSERT_EQ(record["events"].size(), 2u) << record.dump();
  EXPECT_EQ(record["events"][1]["action"], "stop");
  EXPECT_LT(LatestStep("diverging"), kSteps);
}

}  // namespace
}  // namespace bert::testing
