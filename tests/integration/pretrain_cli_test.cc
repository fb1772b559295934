// bertctl pretrain end to end with the real bert-coordinator and mpirun, and
// stand-in workers (BERT_WORKER_BIN = a shell script written here): a run
// that completes (the script runs bert-fake-worker), resumes and refuses
// another config; bad config values, a missing mpirun or worker binary,
// failing workers, a worker dying mid-run, a registration timeout, Ctrl-C
// (also with a coordinator that ignores SIGTERM) and a killed bertctl, after
// each of which no process of the run is left.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/file_util.h"
#include "common/process.h"
#include "integration/coordinator/coordinator_run.h"
#include "test_util.h"

namespace bert {
namespace {

namespace fs = std::filesystem;
using testing::Bertctl;
using testing::FakeWorker;
using testing::WaitFor;
using testing::CommandResult;
using testing::RunCommand;
using testing::TempDir;
using testing::UncasedVocab;
using testing::WriteText;
using Clock = std::chrono::steady_clock;


double SecondsSince(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Alive: exists and is not a zombie (a killed orphan may linger as one).
bool IsAlive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z' && line[close + 2] != 'X';
}

// The corpus (20 files of the kernel's admin-guide, ~400 samples per epoch
// at seq 64, prepared once per suite), Db(), RunDir() and work_ come from
// CoordinatorRunTest.
class PretrainCliTest : public testing::CoordinatorRunTest {
 protected:
  // A run config: G = 16 in micro-batches of 4, so 2 ranks take 2 each.
  std::string WriteConfig(const std::string& train_extra = "") {
    const std::string path = work_ / "run.yaml";
    WriteText(path, "name: clitest\nrun_dir: " + RunDir() + "\nmodel: " + std::string(BERT_SOURCE_DIR) +
                        "/configs/models/bert-tiny.json\ndata:\n  db: " + Db() +
                        "\n  seed: 7\n  max_seq_len: 64\n  max_predictions: 10\n"
                        "train:\n  global_batch_size: 16\n  micro_batch_size: 4\n  steps: 5\n  warmup_steps: 2\n" +
                        train_extra);
    return path;
  }

  // A stand-in bert-worker: `body` runs with the launcher's arguments
  // (--config FILE --coordinator ENDPOINT) and Open MPI's environment.
  std::string WriteWorker(const std::string& body) {
    const std::string path = work_ / "worker.sh";
    WriteText(path, "#!/bin/sh\nRANK=$OMPI_COMM_WORLD_RANK\necho \"$@\" > " + (work_ / "args.$RANK") + "\n" + body +
                        "\n");
    ::chmod(path.c_str(), 0755);
    return path;
  }

  // Starts `bertctl pretrain ARGS` in `cwd` (default: the work dir), its
  // output in bertctl.log, with BERT_WORKER_BIN = worker and `env` added.
  std::unique_ptr<Process> Start(const std::string& args, const std::string& worker,
                                 std::vector<std::pair<std::string, std::string>> env = {}) {
    ProcessOptions options;
    // Failures here are the point: no relaunches unless a test asks for them.
    const std::string restarts = args.find("--max-restarts") == std::string::npos ? " --max-restarts 0" : "";
    options.argv = {"/bin/sh", "-c", "cd " + work_.path() + " && exec " + Bertctl() + " pretrain " + args + restarts};
    options.env = std::move(env);
    options.env.push_back({"BERT_WORKER_BIN", worker});
    options.log_path = work_ / "bertctl.log";
    std::error_code ec;
    fs::remove(options.log_path, ec);
    Result<std::unique_ptr<Process>> process = Process::Start(options);
    EXPECT_TRUE(process.ok()) << process.status().message();
    return process.ok() ? std::move(process).value() : nullptr;
  }

  // Runs to the end (or fails the test after timeout_ms); the exit code.
  int Run(const std::string& args, const std::string& worker, int timeout_ms = 60000,
          std::vector<std::pair<std::string, std::string>> env = {}) {
    std::unique_ptr<Process> bertctl = Start(args, worker, std::move(env));
    if (bertctl == nullptr) return -1;
    std::optional<int> code = bertctl->Wait(timeout_ms);
    EXPECT_TRUE(code.has_value()) << "bertctl pretrain still running after " << timeout_ms << " ms:\n" << Output();
    return code.value_or(-1);
  }

  std::string Output() const { return ReadText(work_ / "bertctl.log"); }
  static std::string ReadText(const std::string& path) {
    Result<std::string> text = ReadFile(path);
    return text.ok() ? *text : "";
  }

};

TEST_F(PretrainCliTest, CompletesAResumesAndRefusesAnotherConfig) {
  ASSERT_TRUE(fs::exists(FakeWorker())) << FakeWorker() << " is not built";
  const std::string worker = WriteWorker("exec " + FakeWorker() + " --endpoint \"$4\" \"$7\" \"$8\" "
                                         "--run-id happy --rank $RANK --world-size $OMPI_COMM_WORLD_SIZE "
                                         "--step-time-ms 10");
  // --name: the run directory is runs/NAME under the current directory.
  // bert-fake-worker consumes batches only: no checkpoints to commit.
  const std::string args = "--config " + WriteConfig() + " --workers 2 --name happy --steps 7 "
                           "--coordinator-args --without-checkpoints";
  ASSERT_EQ(Run(args, worker), 0) << Output();
  const std::string run_dir = work_ / "runs/happy";
  EXPECT_TRUE(Contains(Output(), "run complete")) << Output();
  EXPECT_TRUE(Contains(Output(), run_dir)) << Output();
  // The frozen config: --name and --steps applied, warmup clamped, paths absolute.
  const std::string frozen = ReadText(run_dir + "/config.yaml");
  EXPECT_TRUE(Contains(frozen, "name: happy\n")) << frozen;
  EXPECT_TRUE(Contains(frozen, "run_dir: " + run_dir + "\n")) << frozen;
  EXPECT_TRUE(Contains(frozen, "steps: 7\n")) << frozen;
  EXPECT_TRUE(Contains(frozen, "- " + Db() + "\n")) << frozen;
  // The workers got the frozen config and the endpoint the coordinator bound.
  for (const char* rank : {"0", "1"}) {
    const std::string worker_args = ReadText(work_ / (std::string("args.") + rank));
    EXPECT_TRUE(Contains(worker_args, "--config " + run_dir + "/config.yaml --coordinator tcp://127.0.0.1:"))
        << worker_args;
    EXPECT_TRUE(Contains(worker_args, "--generation 0 --keys " + run_dir + "/keys")) << worker_args;  // $7 $8
  }
  const nlohmann::json stats = nlohmann::json::parse(ReadText(run_dir + "/coordinator/stats.json"), nullptr, false);
  EXPECT_EQ(stats["batches_sent"], 7 * 2 * 2) << stats.dump();  // steps x ranks x micro-batches
  // Output of both sides is in the logs; the workers' also on the terminal.
  const std::string workers_log = ReadText(run_dir + "/workers.log");
  EXPECT_TRUE(Contains(workers_log, "[worker r0] run complete")) << workers_log;
  EXPECT_TRUE(Contains(workers_log, "[worker r1] run complete")) << workers_log;
  EXPECT_TRUE(Contains(Output(), "[worker r0] run complete")) << Output();
  EXPECT_TRUE(Contains(ReadText(run_dir + "/coordinator/coordinator.log"), "serving on"));

  // The same command again continues the run: the ledger is at its end.
  ASSERT_EQ(Run(args, worker), 0) << Output();
  EXPECT_TRUE(Contains(Output(), "resuming")) << Output();
  EXPECT_TRUE(Contains(Output(), "steps 7..7")) << Output();
  EXPECT_EQ(ReadText(run_dir + "/config.yaml"), frozen);

  // Other settings for the same run directory are refused.
  EXPECT_EQ(Run("--config " + WriteConfig() + " --workers 2 --name happy --steps 9 "
                "--coordinator-args --without-checkpoints", worker), 2) << Output();
  EXPECT_TRUE(Contains(Output(), "pick another --name")) << Output();
  EXPECT_EQ(ReadText(run_dir + "/config.yaml"), frozen);
}

TEST_F(PretrainCliTest, ABadConfigValueExits2NamingTheKey) {
  const std::string worker = WriteWorker("exit 0");
  EXPECT_EQ(Run("--config " + WriteConfig("  lr: -1\n"), worker), 2) << Output();
  EXPECT_TRUE(Contains(Output(), "train.lr")) << Output();
  // A batch that 3 ranks cannot split evenly names the batch size.
  EXPECT_EQ(Run("--config " + WriteConfig() + " --workers 3", worker), 2) << Output();
  EXPECT_TRUE(Contains(Output(), "train.global_batch_size")) << Output();
  EXPECT_EQ(Run("--config " + (work_ / "missing.yaml"), worker), 2) << Output();
  EXPECT_TRUE(Contains(Output(), "missing.yaml")) << Output();
  EXPECT_FALSE(fs::exists(RunDir()));
}

TEST_F(PretrainCliTest, AMissingMpirunIsAClearError) {
  fs::create_directories(work_ / "empty-bin");
  const std::string worker = WriteWorker("exit 0");
  EXPECT_EQ(Run("--config " + WriteConfig(), worker, 60000, {{"PATH", work_ / "empty-bin"}}), 1) << Output();
  EXPECT_TRUE(Contains(Output(), "mpirun not found")) << Output();
  EXPECT_TRUE(Contains(Output(), "openmpi-bin")) << Output();
  EXPECT_FALSE(fs::exists(RunDir()));
}

TEST_F(PretrainCliTest, AMissingWorkerBinaryIsAClearError) {
  EXPECT_EQ(Run("--config " + WriteConfig(), work_ / "no-such-worker"), 1) << Output();
  EXPECT_TRUE(Contains(Output(), "no-such-worker")) << Output();
  EXPECT_TRUE(Contains(Output(), "BERT_WORKER_BIN")) << Output();
}

TEST_F(PretrainCliTest, ARunDirWithAnotherConfigIsRefused) {
  fs::create_directories(RunDir());
  WriteText(RunDir() + "/config.yaml", "name: someone-else\n");
  EXPECT_EQ(Run("--config " + WriteConfig(), WriteWorker("exit 0")), 2) << Output();
  EXPECT_TRUE(Contains(Output(), RunDir() + "/config.yaml holds a different config")) << Output();
  EXPECT_TRUE(Contains(Output(), "pick another --name")) << Output();
  EXPECT_EQ(ReadText(RunDir() + "/config.yaml"), "name: someone-else\n");
  EXPECT_FALSE(fs::exists(RunDir() + "/coordinator/coordinator.log")) << "the coordinator must not start";
}

// Each stand-in rank also leaves a process in a session of its own, out of
// mpirun's reach: bertctl adopts it (subreaper) and kills it after the grace.
TEST_F(PretrainCliTest, FailingWorkersAreNamedAndLeaveNothingBehind) {
  // Both ranks leave theirs before either fails (mpirun stops the other then).
  const std::string worker = WriteWorker(
      "setsid sleep 300 & echo $! > " + (work_ / "leftover.$RANK") + "\nwhile [ ! -s " + (work_ / "leftover.0") +
      " ] || [ ! -s " + (work_ / "leftover.1") + " ]; do sleep 0.05; done\necho \"rank $RANK failing\" >&2; exit 9");
  const auto start = Clock::now();
  EXPECT_EQ(Run("--config " + WriteConfig() + " --workers 2", worker), 1) << Output();
  const std::string output = Output();
  EXPECT_TRUE(Contains(output, "workers (mpirun) exited 9")) << output;
  EXPECT_TRUE(Contains(output, "coordinator stopped by bertctl")) << output;
  EXPECT_TRUE(Contains(output, RunDir() + "/workers.log")) << output;
  EXPECT_TRUE(Contains(output, "rank 0 failing") || Contains(output, "rank 1 failing")) << output;
  EXPECT_TRUE(Contains(ReadText(RunDir() + "/workers.log"), "failing"));
  EXPECT_TRUE(Contains(output, "killed 2 leftover process(es)")) << output;
  for (const char* rank : {"0", "1"}) {
    const std::string pid = ReadText(work_ / (std::string("leftover.") + rank));
    ASSERT_FALSE(pid.empty());
    EXPECT_FALSE(IsAlive(std::stoi(pid))) << "rank " << rank << "'s leftover " << pid << " outlived bertctl";
  }
  // 5 s for the coordinator to notice by itself, 10 s for the leftovers.
  EXPECT_LT(SecondsSince(start), 30);
}

TEST_F(PretrainCliTest, AWorkerDyingMidRunIsReportedByTheCoordinator) {
  ASSERT_TRUE(fs::exists(FakeWorker())) << FakeWorker() << " is not built";
  // Rank 0 trains; rank 1 registers, then dies. mpirun takes rank 0 down,
  // and the coordinator declares the silent workers dead and exits 3.
  const std::string worker = WriteWorker(
      "if [ $RANK = 1 ]; then timeout -s KILL 1 " + FakeWorker() +
      " --endpoint \"$4\" \"$7\" \"$8\" --run-id clitest --rank 1 --world-size 2 --step-time-ms 200; exit 9; fi\n"
      "exec " + FakeWorker() + " --endpoint \"$4\" \"$7\" \"$8\" --run-id clitest --rank 0 --world-size 2 "
      "--step-time-ms 200");
  const int code = Run("--config " + WriteConfig() + " --workers 2 --steps 1000 --coordinator-args "
                       "\"--heartbeat-interval-ms 200 --heartbeat-timeout-ms 1500 --without-checkpoints\"", worker);
  const std::string output = Output();
  EXPECT_EQ(code, 3) << output;
  EXPECT_TRUE(Contains(output, "coordinator exited 3 (a worker died")) << output;
  EXPECT_TRUE(Contains(output, "workers (mpirun) exited 9")) << output;
  EXPECT_TRUE(Contains(output, "the coordinator's last error")) << output;
}

// A retryable failure (a worker killed) relaunches coordinator and workers,
// with the next generation, up to --max-restarts; a fatal one does not.
TEST_F(PretrainCliTest, ADeadWorkerRelaunchesTheRunUntilItCompletes) {
  ASSERT_TRUE(fs::exists(FakeWorker())) << FakeWorker() << " is not built";
  // Generation 0: rank 1 is killed after a second. Later generations run through.
  const std::string worker = WriteWorker(
      "if [ \"$6\" = 0 ] && [ $RANK = 1 ]; then timeout -s KILL 1 " + FakeWorker() +
      " --endpoint \"$4\" \"$7\" \"$8\" --run-id clitest --rank 1 --world-size 2 --generation 0 --step-time-ms 100;"
      " exit 9; fi\n"
      "exec " + FakeWorker() + " --endpoint \"$4\" \"$7\" \"$8\" --run-id clitest --rank $RANK --world-size 2 "
      "--generation \"$6\" "
      "--step-time-ms 20");
  const int code = Run("--config " + WriteConfig() + " --workers 2 --steps 60 --max-restarts 2 --restart-backoff-s 0.2 "
                       "--coordinator-args \"--heartbeat-interval-ms 200 --heartbeat-timeout-ms 1500 "
                       "--without-checkpoints\"", worker, 120000);
  const std::string output = Output();
  EXPECT_EQ(code, 0) << output;
  EXPECT_TRUE(Contains(output, "Restart 1 of 2")) << output;
  EXPECT_FALSE(Contains(output, "Restart 2 of 2")) << output;
  EXPECT_TRUE(Contains(output, "generation 1")) << output;

  // A bad config value is fatal: no relaunch.
  EXPECT_EQ(Run("--config " + WriteConfig("  lr: -1\n") + " --max-restarts 3", worker), 2) << Output();
  EXPECT_FALSE(Contains(Output(), "Restart")) << Output();
}

TEST_F(PretrainCliTest, ARegistrationTimeoutIsTheExitCode) {
  const std::string worker = WriteWorker("exec sleep 300");
  const auto start = Clock::now();
  EXPECT_EQ(Run("--config " + WriteConfig() + " --workers 2 --coordinator-args \"--register-timeout-ms 1000\"", worker),
            5) << Output();
  EXPECT_TRUE(Contains(Output(), "coordinator exited 5 (not every rank registered in time")) << Output();
  // The workers were given the grace period and then stopped.
  EXPECT_TRUE(Contains(Output(), "workers (mpirun) stopped by bertctl")) << Output();
  EXPECT_LT(SecondsSince(start), 30);
}

// Ctrl-C: SIGTERM to the coordinator and mpirun (which passes it on), exit
// 6, and no process of the run left behind.
TEST_F(PretrainCliTest, InterruptStopsEverythingAndExits6) {
  const std::string worker = WriteWorker("echo $$ > " + (work_ / "pid.$RANK") + "\nexec sleep 300");
  std::unique_ptr<Process> bertctl = Start("--config " + WriteConfig() + " --workers 2", worker);
  ASSERT_NE(bertctl, nullptr);
  ASSERT_TRUE(WaitFor([&] { return fs::exists(work_ / "pid.0") && fs::exists(work_ / "pid.1"); }, 30000))
      << Output();
  std::vector<pid_t> pids = DescendantPids(bertctl->pid());
  EXPECT_GE(pids.size(), 4u) << "coordinator, mpirun and two workers";
  // One launcher per run: a second one on the same run directory is refused.
  CommandResult second = RunCommand("BERT_WORKER_BIN=" + worker + " " + Bertctl() + " pretrain --config " +
                                    (work_ / "run.yaml") + " --workers 2");
  EXPECT_EQ(second.exit_code, 2) << second.output;
  EXPECT_TRUE(Contains(second.output, "another bertctl pretrain is running")) << second.output;
  const auto start = Clock::now();
  ASSERT_TRUE(bertctl->Signal(SIGINT));
  const std::optional<int> code = bertctl->Wait(15000);
  EXPECT_EQ(code, 6) << Output();
  EXPECT_LT(SecondsSince(start), 12) << "within the grace period";
  EXPECT_TRUE(Contains(Output(), "interrupted")) << Output();
  for (pid_t pid : pids) EXPECT_FALSE(IsAlive(pid)) << "process " << pid << " outlived bertctl";
}

// A launcher killed outright (no chance to clean up) still takes its run
// down: the coordinator and mpirun get SIGTERM when it dies.
TEST_F(PretrainCliTest, AKilledLauncherTakesItsRunDown) {
  const std::string worker = WriteWorker("echo $$ > " + (work_ / "pid.$RANK") + "\nexec sleep 300");
  std::unique_ptr<Process> bertctl = Start("--config " + WriteConfig() + " --workers 2", worker);
  ASSERT_NE(bertctl, nullptr);
  ASSERT_TRUE(WaitFor([&] { return fs::exists(work_ / "pid.0") && fs::exists(work_ / "pid.1"); }, 30000))
      << Output();
  const std::vector<pid_t> pids = DescendantPids(bertctl->pid());
  EXPECT_GE(pids.size(), 4u) << "coordinator, mpirun and two workers";
  ::kill(bertctl->pid(), SIGKILL);  // only bertctl, not its process group
  EXPECT_EQ(bertctl->Wait(5000), 128 + SIGKILL);
  for (pid_t pid : pids) {
    EXPECT_TRUE(WaitFor([pid] { return !IsAlive(pid); }, 10000)) << "process " << pid << " outlived bertctl";
  }
}

// A coordinator that ignores SIGTERM is killed after the grace period.
TEST_F(PretrainCliTest, InterruptKillsWhatIgnoresSigterm) {
  const std::string coordinator = work_ / "stubborn-coordinator.sh";
  WriteText(coordinator,
            "#!/bin/sh\ntrap '' TERM\nwhile [ $# -gt 0 ]; do [ \"$1\" = --run-dir ] && RUN=$2; shift; done\n"
            "echo tcp://127.0.0.1:9 > $RUN/coordinator/endpoint\necho $$ > " + (work_ / "coordinator.pid") +
                "\nwhile true; do sleep 0.1; done\n");
  ::chmod(coordinator.c_str(), 0755);
  const std::string worker = WriteWorker("echo $$ > " + (work_ / "pid.$RANK") + "\nexec sleep 300");
  std::unique_ptr<Process> bertctl =
      Start("--config " + WriteConfig() + " --workers 2", worker, {{"BERT_COORDINATOR_BIN", coordinator}});
  ASSERT_NE(bertctl, nullptr);
  ASSERT_TRUE(WaitFor([&] { return fs::exists(work_ / "pid.0") && fs::exists(work_ / "pid.1"); }, 30000))
      << Output();
  const pid_t coordinator_pid = std::stoi(ReadText(work_ / "coordinator.pid"));
  const auto start = Clock::now();
  ASSERT_TRUE(bertctl->Signal(SIGINT));
  EXPECT_EQ(bertctl->Wait(20000), 6) << Output();
  const double seconds = SecondsSince(start);
  EXPECT_GE(seconds, 9.5) << Output();
  EXPECT_LT(seconds, 14) << Output();
  EXPECT_TRUE(Contains(Output(), "did not stop within 10 s")) << Output();
  EXPECT_FALSE(IsAlive(coordinator_pid));
  for (const char* rank : {"0", "1"}) {
    EXPECT_FALSE(IsAlive(std::stoi(ReadText(work_ / (std::string("pid.") + rank)))));
  }
}

}  // namespace
}  // namespace bert
