// Data-parallel pretraining with real processes on loopback: bert-coordinator
// and `mpirun -np W bert-worker` (MPI all-reduce), on a small real corpus
// (pretrain_run.h).
//   - W = 2 with micro-batch G/4 (2 per rank) ends with the weights of W = 1
//     with the whole batch G in one micro-batch (to float rounding), and the
//     same W gives bit-identical weights across reruns;
//   - the ledger shows exactly the planned samples trained, once each;
//   - a worker killed with SIGKILL, or hung (SIGSTOP), is declared dead by
//     the coordinator within its timeout, and the others exit with a failure
//     code within 10 s instead of hanging in an all-reduce.
#include <gtest/gtest.h>

#include "integration/worker/pretrain_run.h"

namespace bert::testing {
namespace {

TEST_F(PretrainRunTest, TwoRanksMatchOneRankWithTheWholeBatchAndRerunsAreBitIdentical) {
  constexpr uint64_t kSteps = 20;  // crosses an epoch boundary (~12 steps per epoch)
  const std::vector<float> one = Train("w1", 1, kGlobalBatch, kSteps);
  const std::vector<float> two = Train("w2", 2, kMicroBatch, kSteps);
  const std::vector<float> again = Train("w2-again", 2, kMicroBatch, kSteps);
  ASSERT_EQ(one.size(), 4433468u) << "bert-tiny's parameter count";
  ASSERT_EQ(two.size(), one.size());
  ASSERT_EQ(again.size(), one.size());

  // Same W: bit-identical.
  EXPECT_EQ(std::memcmp(two.data(), again.data(), two.size() * sizeof(float)), 0);
  // W = 2 vs W = 1: the same sums in another order. Measured: max |diff|
  // 6e-8 after 20 AdamW steps; the bound leaves room for other CPUs' kernels.
  double max_diff = 0, changed = 0;
  for (size_t i = 0; i < one.size(); ++i) max_diff = std::max(max_diff, static_cast<double>(std::fabs(one[i] - two[i])));
  EXPECT_LT(max_diff, 1e-5);
  // And training did move the weights (the comparison is not vacuous): the
  // W = 2 run differs from a run of fewer steps by far more than that.
  const std::vector<float> shorter = Train("w2-short", 2, kMicroBatch, 10);
  for (size_t i = 0; i < two.size(); ++i) changed = std::max(changed, static_cast<double>(std::fabs(two[i] - shorter[i])));
  EXPECT_GT(changed, 1e-3);

  // Rank 0 logged the steps with throughput, MFU and data wait.
  const std::vector<Json> metrics = ReadJsonLines(work_ / "w2/metrics.jsonl");
  ASSERT_EQ(metrics.size(), kSteps);
  EXPECT_LT(metrics.back()["loss"].get<double>(), metrics.front()["loss"].get<double>());
  for (const char* key : {"samples_per_s", "tokens_per_s", "mfu", "data_wait_fraction", "mlm_accuracy", "lr"}) {
    EXPECT_TRUE(metrics.back().contains(key)) << key;
  }
  // The ledger: exactly the planned samples, each trained and acknowledged once.
  ExpectExactlyThePlannedSamples(Ledger("w2"), kSteps);
}

// The survivors of a dead peer must not hang in MPI_Allreduce.
TEST_F(PretrainRunTest, AKilledWorkerIsDeclaredDeadAndTheOthersExitWithinTenSeconds) {
  Run run = Start("kill", WriteRun("kill", kMicroBatch, 100000), 2, {});
  ASSERT_TRUE(WaitFor([&] { return CountLines(work_ / "kill/metrics.jsonl") >= 3; }, 120000))
      << ReadLog(*run.workers) << ReadLog(*run.coordinator);
  std::vector<pid_t> workers = ChildrenOf(run.workers->pid());
  ASSERT_EQ(workers.size(), 2u);
  const pid_t victim = RankOf(workers[0]) == 1 ? workers[0] : workers[1];
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  const auto killed_at = std::chrono::steady_clock::now();

  const std::optional<int> launcher = run.workers->Wait(10000);
  ASSERT_TRUE(launcher.has_value()) << "workers still running 10 s after a peer died";
  EXPECT_NE(*launcher, 0);
  for (pid_t pid : workers) EXPECT_FALSE(Alive(pid)) << pid;
  // The coordinator declares it dead within its 3 s timeout (plus a beat)
  // and exits with kExitAborted.
  const std::optional<int> coordinator = run.coordinator->Wait(8000);
  EXPECT_EQ(coordinator, static_cast<int>(kExitAborted)) << ReadLog(*run.coordinator);
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, std::chrono::seconds(12));
  EXPECT_NE(ReadLog(*run.coordinator).find("dead"), std::string::npos) << ReadLog(*run.coordinator);
}

// A hung worker (stopped: no heartbeats) is found by the coordinator, which
// tells the other to abort: it leaves its all-reduce with kExitAborted.
TEST_F(PretrainRunTest, AHungWorkerIsDeclaredDeadAndTheOtherAbortsWithItsCode) {
  Run run = Start("hang", WriteRun("hang", kMicroBatch, 100000), 2, {});
  ASSERT_TRUE(WaitFor([&] { return CountLines(work_ / "hang/metrics.jsonl") >= 3; }, 120000))
      << ReadLog(*run.workers) << ReadLog(*run.coordinator);
  std::vector<pid_t> workers = ChildrenOf(run.workers->pid());
  ASSERT_EQ(workers.size(), 2u);
  const pid_t victim = RankOf(workers[0]) == 1 ? workers[0] : workers[1];
  ASSERT_EQ(::kill(victim, SIGSTOP), 0);

  const std::optional<int> coordinator = run.coordinator->Wait(8000);
  EXPECT_EQ(coordinator, static_cast<int>(kExitAborted)) << ReadLog(*run.coordinator);
  const std::optional<int> launcher = run.workers->Wait(10000);
  ::kill(victim, SIGKILL);  // in case mpirun left it stopped
  ASSERT_TRUE(launcher.has_value()) << "workers still running 10 s after the abort";
  EXPECT_EQ(*launcher, static_cast<int>(kExitAborted)) << ReadLog(*run.workers);
  EXPECT_NE(ReadLog(*run.workers).find("leaving the collectives"), std::string::npos) << ReadLog(*run.workers);
}

}  // namespace
}  // namespace bert::testing
