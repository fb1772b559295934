// Data-parallel pretraining with real processes on loopback: bert-coordinator
// and `mpirun -np W bert-worker` (MPI all-reduce), on a small real corpus.
//   - W = 2 with micro-batch G/4 (2 per rank) ends with the weights of W = 1
//     with the whole batch G in one micro-batch (to float rounding), and the
//     same W gives bit-identical weights across reruns;
//   - the ledger shows exactly the planned samples trained, once each;
//   - a worker killed with SIGKILL, or hung (SIGSTOP), is declared dead by
//     the coordinator within its timeout, and the others exit with a failure
//     code within 10 s instead of hanging in an all-reduce.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstring>
#include <fstream>

#include "common/protocol.h"
#include "integration/coordinator/coordinator_run.h"

namespace bert::testing {
namespace {

std::string Worker() { return std::string(BERT_BIN_DIR) + "/bert-worker"; }

std::vector<float> ReadFloats(const std::string& path) {
  Result<std::string> bytes = ReadFile(path);
  if (!bytes.ok()) return {};
  std::vector<float> values(bytes->size() / sizeof(float));
  std::memcpy(values.data(), bytes->data(), values.size() * sizeof(float));
  return values;
}

// The bert-worker processes mpirun started (its children).
std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> children;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const size_t paren = line.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream rest(line.substr(paren + 2));
    char state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent && line.find("bert-worker") != std::string::npos) children.push_back(std::stoi(name));
  }
  return children;
}

// Running (a zombie whose parent is gone counts as ended).
bool Alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z';
}

int RankOf(pid_t pid) {
  Result<std::string> environ = ReadFile("/proc/" + std::to_string(pid) + "/environ");
  if (!environ.ok()) return -1;
  const std::string key = std::string("OMPI_COMM_WORLD_RANK=");
  const size_t at = environ->find(key);
  return at == std::string::npos ? -1 : std::atoi(environ->c_str() + at + key.size());
}

class DistributedTest : public CoordinatorRunTest {
 protected:
  // bert-tiny without dropout (so that W = 1 and W = 2 compute the same
  // function), seq 64, G = 32.
  std::string WriteRun(const std::string& name, uint64_t micro_batch, uint64_t steps) {
    const std::string model = work_ / "tiny-no-dropout.json";
    Result<std::string> tiny = ReadFile(std::string(BERT_SOURCE_DIR) + "/configs/models/bert-tiny.json");
    Json config = Json::parse(*tiny);
    config["hidden_dropout_prob"] = 0.0;
    config["attention_probs_dropout_prob"] = 0.0;
    WriteText(model, config.dump(2));
    const std::string path = work_ / (name + ".yaml");
    WriteText(path, "name: " + name + "\nrun_dir: " + (work_ / name) + "\nmodel: " + model + "\ndata:\n  db: " + Db() +
                        "\n  seed: " + std::to_string(kSeed) + "\n  max_seq_len: 64\n  max_predictions: 10\n" +
                        "train:\n  global_batch_size: " + std::to_string(kGlobalBatch) + "\n  micro_batch_size: " +
                        std::to_string(micro_batch) + "\n  steps: " + std::to_string(steps) +
                        "\n  lr: 0.002\n  warmup_steps: 3\nlog:\n  every_steps: 1\n");
    return path;
  }

  struct Run {
    std::unique_ptr<Subprocess> coordinator, workers;
  };

  Run Start(const std::string& name, const std::string& config, uint32_t world, std::vector<std::string> worker_flags) {
    Run run;
    run.coordinator = std::make_unique<Subprocess>(
        std::vector<std::string>{Coordinator(), "--config", config, "--world-size", std::to_string(world), "--bind",
                                 "tcp://127.0.0.1:*", "--heartbeat-interval-ms", "500", "--heartbeat-timeout-ms",
                                 "3000", "--prefetch", "4"},
        work_ / (name + "-coordinator.log"));
    std::vector<std::string> argv = {"/usr/bin/mpirun", "--allow-run-as-root", "-np", std::to_string(world),
                                     "--bind-to", "none", Worker(), "--config", config};
    argv.insert(argv.end(), worker_flags.begin(), worker_flags.end());
    run.workers = std::make_unique<Subprocess>(argv, work_ / (name + "-workers.log"));
    return run;
  }

  // Runs to completion; returns the final parameters rank 0 saved.
  std::vector<float> Train(const std::string& name, uint32_t world, uint64_t micro_batch, uint64_t steps) {
    const std::string params = work_ / (name + ".params");
    Run run = Start(name, WriteRun(name, micro_batch, steps), world, {"--save-params", params, "--checksum-every", "5"});
    const std::optional<int> workers = run.workers->Wait(180000);
    const std::optional<int> coordinator = run.coordinator->Wait(10000);
    EXPECT_EQ(workers, 0) << ReadLog(*run.workers);
    EXPECT_EQ(coordinator, 0) << ReadLog(*run.coordinator);
    return ReadFloats(params);
  }

  std::vector<Json> Ledger(const std::string& name) const {
    CommandResult r = RunCommand(Coordinator() + " --dump-ledger " + (work_ / name) + " 2>/dev/null");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return JsonLines(r.output);
  }
};

TEST_F(DistributedTest, TwoRanksMatchOneRankWithTheWholeBatchAndRerunsAreBitIdentical) {
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
TEST_F(DistributedTest, AKilledWorkerIsDeclaredDeadAndTheOthersExitWithinTenSeconds) {
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
TEST_F(DistributedTest, AHungWorkerIsDeclaredDeadAndTheOtherAbortsWithItsCode) {
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
