// train.time_budget end to end (bert-coordinator and 2 real bert-workers):
// the run ends when its budget is spent, with a final checkpoint that says
// so, long before its step cap; the learning rate decays over the budget's
// time; a preempted run resumes with the time its first session spent, so
// the two sessions together spend one budget; and a finished run started
// again trains nothing.
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <thread>

#include "checkpoint/checkpoint.h"
#include "integration/worker/pretrain_run.h"

namespace bert {
namespace {

using testing::Json;
using testing::ReadJsonLines;

constexpr uint64_t kCap = 100000;  // train.steps: far more than the budget allows
constexpr double kPeakLr = 0.002;  // WriteRun's train.lr

class TimeBudgetTest : public testing::PretrainRunTest {
 protected:
  Json Manifest(const std::string& name, uint64_t step) const {
    Result<std::string> text = ReadFile(work_ / (name + "/checkpoints/" + CheckpointStore::StepName(step) + "/manifest.json"));
    EXPECT_TRUE(text.ok()) << text.status().message();
    return text.ok() ? Json::parse(*text) : Json();
  }
};

TEST_F(TimeBudgetTest, TheRunEndsWhenItsBudgetIsSpentWithTheRateDecayedToZero) {
  const std::string config = WriteRun("budget", testing::kMicroBatch, kCap, 0, "  time_budget: 6s\n");
  Finish(Start("budget", config, 2, Flags("budget"), {"--http-bind", "127.0.0.1:0"}), "budget");
  const uint64_t last = LatestStep("budget");
  ASSERT_GT(last, 10u);
  ASSERT_LT(last, kCap);
  const Json manifest = Manifest("budget", last);
  const Json& scheduler = manifest["scheduler"];
  EXPECT_EQ(scheduler["budget_spent"], true) << scheduler.dump();
  EXPECT_EQ(scheduler["time_budget_s"], 6);
  const double spent = scheduler["train_seconds"].get<double>();
  EXPECT_GE(spent, 6.0);
  EXPECT_LT(spent, 9.0) << "the run overran its budget by more than a few steps";
  const std::string log = ReadFile(work_ / "budget-coordinator.log").value();
  EXPECT_NE(log.find("time budget 6s spent: all " + std::to_string(last) + " steps acknowledged, final checkpoint "
                     "committed"),
            std::string::npos)
      << log;
  // Every step once, the last one included; after warmup the rate only
  // falls, and the last is within a step's share of the budget of zero.
  const std::vector<Json> metrics = ReadJsonLines(work_ / "budget/metrics.jsonl");
  ASSERT_EQ(metrics.size(), last);
  EXPECT_EQ(metrics.back()["step"].get<uint64_t>(), last);
  double previous = kPeakLr;
  for (size_t i = 3; i < metrics.size(); ++i) {
    const double lr = metrics[i]["lr"].get<double>();
    EXPECT_LE(lr, previous + 1e-12) << "step " << i + 1;
    previous = lr;
  }
  EXPECT_LT(metrics.back()["lr"].get<double>(), 0.1 * kPeakLr);
  const double middle = metrics[metrics.size() / 2]["lr"].get<double>();
  EXPECT_GT(middle, 0.2 * kPeakLr);
  EXPECT_LT(middle, 0.8 * kPeakLr);
  const Json status = Json::parse(*ReadFile(work_ / "budget/coordinator/status.json"));
  EXPECT_EQ(status["state"], "done") << status.dump();
  EXPECT_EQ(status["total_steps"].get<uint64_t>(), last) << "the budget's end is the run's total";
  EXPECT_EQ(status["time_budget_s"], 6);

  // Started again, the finished run trains nothing and ends at once.
  Finish(Start("budget", config, 2, Flags("budget")), "budget");
  EXPECT_EQ(LatestStep("budget"), last);
  EXPECT_EQ(ReadJsonLines(work_ / "budget/metrics.jsonl").size(), last);
  EXPECT_NE(ReadFile(work_ / "budget-coordinator.log")->find("the run's time budget was spent at step " +
                                                               std::to_string(last)),
            std::string::npos);
}

TEST_F(TimeBudgetTest, APreemptedRunResumesWithTheTimeItHadSpent) {
  constexpr double kBudget = 10;
  const std::string config = WriteRun("resumed", testing::kMicroBatch, kCap, 0, "  time_budget: 10s\n");
  Run run = Start("resumed", config, 2, Flags("resumed"));
  ASSERT_TRUE(testing::WaitFor([&] { return !ReadJsonLines(work_ / "resumed/metrics.jsonl").empty(); }, 120000))
      << ReadLog(*run.workers) << ReadLog(*run.coordinator);
  std::this_thread::sleep_for(std::chrono::milliseconds(4000));
  run.coordinator->Signal(SIGUSR1);
  EXPECT_EQ(run.coordinator->Wait(60000), static_cast<int>(kExitPreempted)) << ReadLog(*run.coordinator);
  EXPECT_EQ(run.workers->Wait(20000), static_cast<int>(kExitPreempted)) << ReadLog(*run.workers);
  const uint64_t taken = LatestStep("resumed");
  ASSERT_GT(taken, 0u);
  const Json first = Manifest("resumed", taken)["scheduler"];
  EXPECT_EQ(first["budget_spent"], false) << first.dump();
  const double first_seconds = first["train_seconds"].get<double>();
  EXPECT_GE(first_seconds, 3.5);
  ASSERT_LT(first_seconds, kBudget) << "the budget ran out before the preemption";

  Finish(Start("resumed", config, 2, Flags("resumed")), "resumed");
  const uint64_t last = LatestStep("resumed");
  ASSERT_GT(last, taken);
  const Json end = Manifest("resumed", last)["scheduler"];
  EXPECT_EQ(end["budget_spent"], true) << end.dump();
  const double total_seconds = end["train_seconds"].get<double>();
  EXPECT_GE(total_seconds, kBudget);
  EXPECT_LT(total_seconds, kBudget + 3) << "both sessions together spend one budget";
  // The first step after the resume has the rate of the time already spent,
  // not the budget's first rate again.
  const std::vector<Json> metrics = ReadJsonLines(work_ / "resumed/metrics.jsonl");
  ASSERT_EQ(metrics.size(), last);
  const Json& after = metrics[taken];
  ASSERT_EQ(after["step"].get<uint64_t>(), taken + 1);
  EXPECT_NEAR(after["lr"].get<double>(), kPeakLr * (1 - first_seconds / kBudget), 1e-9) << after.dump();
}

}  // namespace
}  // namespace bert
