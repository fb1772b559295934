// Chaos: `bertctl pretrain` with 2 real workers while processes of the run
// are killed with SIGKILL at random moments: a random worker, a worker in the
// middle of a checkpoint write, the coordinator, then (long mode) random
// ones of either, each after the run got past a new checkpoint. The
// launcher relaunches from the latest committed checkpoint each time; the
// run must still complete with the final weights bit-identical to an
// uninterrupted run's: weights and optimizer state by checksum, and the
// ledger shows every step's samples trained exactly once.
//
// CI runs 3 kills. Long mode: BERT_CHAOS_KILLS=N (and BERT_CHAOS_SEED=S to
// replay a run; the seed used is printed).
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include <xxhash.h>

#include "checkpoint/checkpoint.h"
#include "common/process.h"
#include "integration/worker/pretrain_run.h"

namespace bert::testing {
namespace {

// How many relaunches the launcher has announced in its log.
int Restarts(const std::string& output) {
  int restarts = 0;
  for (size_t at = output.find("Restart "); at != std::string::npos; at = output.find("Restart ", at + 1)) ++restarts;
  return restarts;
}

class ChaosTest : public PretrainRunTest {
 protected:
  std::unique_ptr<Process> Launch(const std::string& name, const std::string& config, const std::string& extra) {
    ProcessOptions options;
    options.argv = {"/bin/sh", "-c",
                    "exec " + Bertctl() + " pretrain --config " + config + " --workers 2 " + extra +
                        " --coordinator-args '--heartbeat-interval-ms 200 --heartbeat-timeout-ms 1500'"};
    options.log_path = work_ / (name + "-bertctl.log");
    Result<std::unique_ptr<Process>> process = Process::Start(options);
    EXPECT_TRUE(process.ok()) << process.status().message();
    return process.ok() ? std::move(process).value() : nullptr;
  }

  // The final checkpoint's parameters and optimizer moments, one after the
  // other, and its optimizer step count.
  std::pair<std::vector<float>, int64_t> FinalState(const std::string& name) {
    CheckpointStore store(work_ / name);
    Result<LoadedCheckpoint> latest = store.LoadLatest();
    EXPECT_TRUE(latest.ok()) << latest.status().message();
    if (!latest.ok()) return {};
    return {CheckpointState(*latest), latest->manifest.optimizer.value("step", int64_t{-1})};
  }
};

TEST_F(ChaosTest, RandomKillsDuringTrainingAndCheckpointsEndBitIdentical) {
  const char* kills_env = std::getenv("BERT_CHAOS_KILLS");
  const int kills = kills_env ? std::max(3, std::atoi(kills_env)) : 3;
  const char* seed_env = std::getenv("BERT_CHAOS_SEED");
  const uint64_t seed = seed_env ? std::strtoull(seed_env, nullptr, 10) : std::random_device{}();
  std::printf("[chaos] %d kills, BERT_CHAOS_SEED=%llu\n", kills, static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  const uint64_t steps = 40 + 15 * static_cast<uint64_t>(kills);

  const std::string reference_config = WriteRun("reference", kMicroBatch, steps, 5);
  std::unique_ptr<Process> reference = Launch("reference", reference_config, "--max-restarts 0");
  ASSERT_NE(reference, nullptr);
  ASSERT_EQ(reference->Wait(300000), 0) << Text(work_ / "reference-bertctl.log");
  const auto [expected, expected_step] = FinalState("reference");
  ASSERT_FALSE(expected.empty());
  ASSERT_EQ(expected_step, static_cast<int64_t>(steps));

  const std::string config = WriteRun("chaos", kMicroBatch, steps, 5);
  const std::string log = work_ / "chaos-bertctl.log";
  std::unique_ptr<Process> run =
      Launch("chaos", config, "--max-restarts " + std::to_string(kills + 2) + " --restart-backoff-s 0.2");
  ASSERT_NE(run, nullptr);
  const std::string staging_glob = work_ / "chaos/checkpoints";
  const std::string frozen = work_ / "chaos/config.yaml";  // what bertctl gives the coordinator and workers
  int done = 0;
  uint64_t last_latest = 0;
  for (int kill = 0; kill < kills; ++kill) {
    // Wait for this generation's workers to be training.
    ASSERT_TRUE(WaitFor([&] { return FindProcesses("bert-worker", frozen).size() == 2; }, 120000))
        << Text(log);
    // Let it get past a new checkpoint first, so that every relaunch has
    // more to restore than the last one.
    ASSERT_TRUE(WaitFor([&] { return LatestStep("chaos") > last_latest; }, 120000)) << Text(log);
    const uint64_t latest_before = LatestStep("chaos");
    ASSERT_LT(latest_before, steps) << "the run ended before kill " << kill + 1;
    last_latest = latest_before;
    std::string what;
    if (kill == 1) {
      // During a checkpoint write: as soon as the next staging directory appears.
      const std::string next = ".staging-" + CheckpointStore::StepName(latest_before + 5);
      WaitFor([&] { return fs::exists(staging_glob + "/" + next); }, 60000);
      what = "a worker during a checkpoint write";
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 1500));
      // The third kill is always the coordinator (so CI's 3 cover it); later ones are random.
      what = kill == 2 || rng() % 3 == 0 ? "the coordinator" : "a worker";
    }
    std::vector<pid_t> victims = what == "the coordinator" ? FindProcesses("bert-coordinator", frozen)
                                                           : FindProcesses("bert-worker", frozen);
    if (victims.empty()) continue;  // between generations: wait for the next one
    const pid_t victim = victims[rng() % victims.size()];
    std::printf("[chaos] kill %d: %s (pid %d), latest checkpoint step %llu\n", kill + 1, what.c_str(), victim,
                static_cast<unsigned long long>(latest_before));
    ASSERT_EQ(::kill(victim, SIGKILL), 0);
    ++done;
    // The launcher notices, tears the generation down and relaunches. The
    // next kill waits for that relaunch: a generation whose coordinator is
    // dead keeps its workers training on prefetched batches until the
    // heartbeat times out, and killing one of them would be the same
    // failure, not a new one.
    ASSERT_TRUE(WaitFor([&] { return !Alive(victim); }, 20000));
    ASSERT_TRUE(WaitFor([&] { return Restarts(Text(log)) >= done; }, 60000))
        << "no relaunch after kill " << done << "\n"
        << Text(log);
  }
  const std::optional<int> code = run->Wait(600000);
  const std::string output = Text(log);
  ASSERT_EQ(code, 0) << output;
  EXPECT_GE(done, kills);
  EXPECT_GE(Restarts(output), done) << output;
  EXPECT_EQ(LatestStep("chaos"), steps);
  EXPECT_NE(output.find("from step-"), std::string::npos) << "no relaunch resumed from a checkpoint\n" << output;
  // Weights and optimizer state, bit for bit (compared by checksum).
  const auto [actual, actual_step] = FinalState("chaos");
  ASSERT_EQ(actual.size(), expected.size());
  EXPECT_EQ(actual_step, expected_step);
  EXPECT_EQ(XXH3_64bits(actual.data(), actual.size() * sizeof(float)),
            XXH3_64bits(expected.data(), expected.size() * sizeof(float)))
      << "final weights or optimizer state differ from the uninterrupted run's (BERT_CHAOS_SEED=" << seed << ")";
  // The ledger: every step's samples trained exactly once in the end
  // (steps re-run after a relaunch replace the lost session's entries).
  ExpectExactlyThePlannedSamples(Ledger("chaos"), steps);
}

}  // namespace
}  // namespace bert::testing
