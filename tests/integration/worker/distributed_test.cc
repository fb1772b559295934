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

#include "checkpoint/checkpoint.h"
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

// ZeRO-1 (the default: reduce-scatter, each rank updates its half with the
// optimizer state only it keeps, all-gather) against the replicated
// optimizer (bucketed all-reduce, every rank updates everything), with LAMB,
// whose per-tensor trust ratios need norms summed across the two halves
// (the ranks' boundary cuts a tensor). The gradient norm is summed in
// another order, so the runs agree to rounding, not bit for bit; the
// checkpoints' optimizer state agrees too, and each ZeRO-1 rank keeps half.
TEST_F(PretrainRunTest, ZeroOneMatchesTheReplicatedOptimizerAndKeepsHalfTheStatePerRank) {
  constexpr uint64_t kSteps = 12;
  const std::string lamb = "  optimizer: lamb\n";
  const std::vector<float> sharded =
      Finish(Start("zero", WriteRun("zero", kMicroBatch, kSteps, kSteps, lamb), 2, Flags("zero")), "zero");
  std::vector<std::string> replicated_flags = Flags("replicated");
  replicated_flags.push_back("--replicate-optimizer");
  const std::vector<float> replicated =
      Finish(Start("replicated", WriteRun("replicated", kMicroBatch, kSteps, kSteps, lamb), 2, replicated_flags),
             "replicated");
  ASSERT_EQ(sharded.size(), 4433468u);
  ASSERT_EQ(replicated.size(), sharded.size());
  double max_diff = 0;
  for (size_t i = 0; i < sharded.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(sharded[i] - replicated[i])));
  }
  std::printf("ZeRO-1 vs replicated LAMB after %llu steps: max |diff| %.2e\n", (unsigned long long)kSteps, max_diff);
  EXPECT_LT(max_diff, 1e-5);

  // Each rank's log states its state size: half of the replicated one.
  const std::string log = *ReadFile(work_ / "zero-workers.log");
  const std::string replicated_log = *ReadFile(work_ / "replicated-workers.log");
  EXPECT_NE(log.find("optimizer state 17.7 MB for parameters [0, 2216734) of 4433468 (ZeRO-1"), std::string::npos)
      << log;
  EXPECT_NE(log.find("optimizer state 17.7 MB for parameters [2216734, 4433468) of 4433468 (ZeRO-1"),
            std::string::npos)
      << log;
  EXPECT_NE(replicated_log.find("optimizer state 35.5 MB for parameters [0, 4433468) of 4433468 (replicated"),
            std::string::npos)
      << replicated_log;

  // The final checkpoints hold the same moments (to rounding) in the same layout.
  CheckpointStore zero_store(work_ / "zero"), replicated_store(work_ / "replicated");
  Result<LoadedCheckpoint> a = zero_store.LoadLatest(), b = replicated_store.LoadLatest();
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  for (const char* section : {"exp_avg", "exp_avg_sq"}) {
    std::vector<float> x(sharded.size()), y(sharded.size());
    ASSERT_TRUE(ReadRange(*a, section, 0, x.size(), x.data()).ok());
    ASSERT_TRUE(ReadRange(*b, section, 0, y.size(), y.data()).ok());
    double worst = 0, largest = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      worst = std::max(worst, static_cast<double>(std::fabs(x[i] - y[i])));
      largest = std::max(largest, static_cast<double>(std::fabs(y[i])));
    }
    EXPECT_GT(largest, 0.0) << section;
    EXPECT_LT(worst, 1e-6 + 1e-4 * largest) << section;
  }
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
