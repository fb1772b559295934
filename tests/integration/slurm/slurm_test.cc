// Pretraining as Slurm batch jobs on a real one-node Slurm (slurm-wlm +
// munge on localhost, started by scripts/slurm_local.sh): bertctl submit
// of a small CPU run that completes; USR1 mid-run (checkpoint, requeue,
// automatic resume) ending bit-identical to an uninterrupted run; a worker
// killed inside the job, relaunched within the allocation from the
// checkpoint; bertctl status following PENDING, RUNNING and COMPLETED; the
// --dry-run script of 4 nodes x 8 GPUs; one-line errors for bad resources,
// an unknown partition and a missing sbatch. The tests share the cluster
// and run serially (RESOURCE_LOCK in tests/CMakeLists.txt).
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "integration/coordinator/coordinator_run.h"

namespace bert {
namespace {

namespace fs = std::filesystem;
using testing::Bertctl;
using testing::CommandResult;
using testing::Json;
using testing::RunCommand;
using testing::WaitFor;
using testing::WriteText;

bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string ReadText(const std::string& path) {
  Result<std::string> text = ReadFile(path);
  return text.ok() ? *text : "";
}

int CountOf(const std::string& text, const std::string& part) {
  int count = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++count;
  return count;
}

// `scontrol show job -o ID` field, e.g. JobState; "" if unknown.
std::string JobField(const std::string& job_id, const std::string& key) {
  const CommandResult shown = RunCommand("scontrol show job -o " + job_id);
  const size_t at = shown.output.find(" " + key + "=");
  if (at == std::string::npos) return "";
  const size_t begin = at + key.size() + 2;
  return shown.output.substr(begin, shown.output.find_first_of(" \n", begin) - begin);
}

bool Finished(const std::string& state) {
  return state == "COMPLETED" || state == "FAILED" || state == "CANCELLED" || state == "TIMEOUT" ||
         state == "NODE_FAIL" || state == "OUT_OF_MEMORY" || state == "BOOT_FAIL" || state == "DEADLINE";
}

class SlurmTest : public testing::CoordinatorRunTest {
 protected:
  static void SetUpTestSuite() {
    // Idempotent: scripts/test.sh starts the cluster before ctest; plain
    // `ctest` gets it here. Never skipped: a cluster that cannot start fails.
    const CommandResult started = RunCommand(std::string(BERT_SOURCE_DIR) + "/scripts/slurm_local.sh start");
    ASSERT_EQ(started.exit_code, 0) << "cannot start the local Slurm cluster: " << started.output;
    CoordinatorRunTest::SetUpTestSuite();
  }

  void TearDown() override {
    for (const std::string& name : job_names_) RunCommand("scancel --name=" + name);
  }

  // bert-tiny without dropout, seq 64, G = 32 in micro-batches of 8.
  std::string WriteRunConfig(const std::string& name, int steps, int checkpoint_every) {
    const std::string model = work_ / "tiny-no-dropout.json";
    Json tiny = Json::parse(ReadText(std::string(BERT_SOURCE_DIR) + "/configs/models/bert-tiny.json"));
    tiny["hidden_dropout_prob"] = 0.0;
    tiny["attention_probs_dropout_prob"] = 0.0;
    WriteText(model, tiny.dump(2));
    const std::string path = work_ / (name + ".yaml");
    WriteText(path, "name: " + name + "\nrun_dir: " + RunDirOf(name) + "\nmodel: " + model + "\ndata:\n  db: " + Db() +
                        "\n  seed: 7\n  max_seq_len: 64\n  max_predictions: 10\ntrain:\n  global_batch_size: 32\n"
                        "  micro_batch_size: 8\n  steps: " + std::to_string(steps) +
                        "\n  lr: 0.002\n  warmup_steps: 3\nlog:\n  every_steps: 1\ncheckpoint:\n  every_steps: " +
                        std::to_string(checkpoint_every) + "\n  keep_last: 3\n");
    return path;
  }
  std::string RunDirOf(const std::string& name) const { return work_ / ("runs/" + name); }
  // The checkpoint RUN_DIR/checkpoints/latest names ("" if none).
  std::string Latest(const std::string& name) const {
    std::string text = ReadText(RunDirOf(name) + "/checkpoints/latest");
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return text;
  }
  std::string ParamsOf(const std::string& name) const { return work_ / (name + ".params"); }

  // bertctl submit for 2 CPU ranks on this node; the job id.
  std::string Submit(const std::string& name, int steps, int checkpoint_every, const std::string& extra = "") {
    job_names_.push_back("bert-" + name);
    const CommandResult submitted =
        RunCommand("cd " + work_.path() + " && " + Bertctl() + " submit --config " +
                   WriteRunConfig(name, steps, checkpoint_every) + " --nodes 1 --tasks-per-node 2 --cpus-per-task 1 "
                   "--time 00:10:00 --signal-before-s 60 --partition debug --worker-args '--save-params " +
                   ParamsOf(name) + "' " + extra);
    EXPECT_EQ(submitted.exit_code, 0) << submitted.output;
    EXPECT_TRUE(Contains(submitted.output, "submitted job ")) << submitted.output;
    const Json record = Json::parse(ReadText(RunDirOf(name) + "/slurm.json"), nullptr, false);
    if (!record.is_object() || record["job_ids"].empty()) {
      ADD_FAILURE() << "no job id in " << RunDirOf(name) << "/slurm.json";
      return "0";
    }
    return record["job_ids"].back().get<std::string>();
  }

  // Waits until the job has ended; its final state.
  std::string WaitForEnd(const std::string& job_id, const std::string& name, int timeout_ms = 90000) {
    std::string state;
    const bool ended = WaitFor([&] { return Finished(state = JobField(job_id, "JobState")); }, timeout_ms);
    EXPECT_TRUE(ended) << "job " << job_id << " still " << state << " after " << timeout_ms << " ms\n" << JobLog(job_id, name);
    return state;
  }

  std::string JobLog(const std::string& job_id, const std::string& name) const {
    return ReadText(RunDirOf(name) + "/slurm/job-" + job_id + ".log");
  }

  // The last step metrics.jsonl recorded (0: none yet).
  int64_t LastStep(const std::string& name) const {
    const std::vector<Json> lines = testing::ReadJsonLines(RunDirOf(name) + "/metrics.jsonl");
    return lines.empty() ? 0 : lines.back().value("step", int64_t{0});
  }

  // An uninterrupted run of the same config with bertctl pretrain (mpirun).
  std::vector<char> ReferenceParams(const std::string& name, int steps, int checkpoint_every) {
    const CommandResult run = RunCommand("cd " + work_.path() + " && " + Bertctl() + " pretrain --config " +
                                         WriteRunConfig(name, steps, checkpoint_every) +
                                         " --workers 2 --max-restarts 0 --worker-args '--save-params " +
                                         ParamsOf(name) + "'");
    EXPECT_EQ(run.exit_code, 0) << run.output;
    const std::string bytes = ReadText(ParamsOf(name));
    return std::vector<char>(bytes.begin(), bytes.end());
  }

  std::vector<std::string> job_names_;
};

std::string Status(const std::string& run_dir) {
  return RunCommand(Bertctl() + " status " + run_dir).output;
}

TEST_F(SlurmTest, SubmittedCpuJobRunsToCompletion) {
  const std::string job = Submit("complete", 6, 3);
  EXPECT_EQ(WaitForEnd(job, "complete"), "COMPLETED");
  const std::string log = JobLog(job, "complete");
  EXPECT_TRUE(Contains(log, "run complete")) << log;
  EXPECT_TRUE(Contains(log, "srun --mpi=pmix --ntasks=2 --kill-on-bad-exit=1")) << log;  // the workers' step
  EXPECT_EQ(Latest("complete"), "step-000006");
  EXPECT_EQ(LastStep("complete"), 6);
  // One log per rank, from the srun step (%t), besides the job's own.
  for (const char* rank : {"0", "1"}) {
    const std::string rank_log = ReadText(RunDirOf("complete") + "/slurm/job-" + job + "-rank-" + rank + ".log");
    EXPECT_TRUE(Contains(rank_log, std::string("[worker r") + rank + "]")) << rank_log;
  }
  EXPECT_FALSE(ReadText(ParamsOf("complete")).empty());
}

TEST_F(SlurmTest, Usr1CheckpointsRequeuesAndResumesBitIdentical) {
  constexpr int kSteps = 40;
  const std::vector<char> reference = ReferenceParams("reference", kSteps, 0);
  ASSERT_FALSE(reference.empty());
  const std::string job = Submit("preempted", kSteps, 0);
  ASSERT_TRUE(WaitFor([&] { return LastStep("preempted") >= 3; }, 60000)) << JobLog(job, "preempted");
  const CommandResult signalled = RunCommand("scancel --signal=USR1 --batch " + job);
  ASSERT_EQ(signalled.exit_code, 0) << signalled.output;
  const int64_t signalled_at = LastStep("preempted");
  EXPECT_EQ(WaitForEnd(job, "preempted", 120000), "COMPLETED");
  EXPECT_EQ(JobField(job, "Restarts"), "1");
  const std::string log = JobLog(job, "preempted");
  EXPECT_TRUE(Contains(log, "USR1: checkpoint and stop")) << log;
  EXPECT_TRUE(Contains(log, "requeueing job " + job)) << log;
  EXPECT_TRUE(Contains(log, "preempted (SIGUSR1)")) << log;  // bertctl exited 8, not as a failure
  EXPECT_TRUE(Contains(log, "run complete")) << log;
  // The coordinator checkpointed out of schedule (every_steps 0) and the
  // requeued job resumed from that checkpoint.
  const std::string coordinator = ReadText(RunDirOf("preempted") + "/coordinator/coordinator.log");
  EXPECT_TRUE(Contains(coordinator, "checkpoint-and-stop (SIGUSR1): ordered a checkpoint at the next step boundary")) << coordinator;
  EXPECT_TRUE(Contains(coordinator, "resuming from step-")) << coordinator;
  EXPECT_FALSE(Contains(coordinator, "resuming from step-000040")) << "the signal came after the run: " << coordinator;
  EXPECT_GE(signalled_at, 3);
  const std::string bytes = ReadText(ParamsOf("preempted"));
  ASSERT_EQ(bytes.size(), reference.size());
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), reference.begin()))
      << "the preempted and resumed run ended with other weights than the uninterrupted run";
}

TEST_F(SlurmTest, KilledWorkerIsRelaunchedWithinTheJob) {
  const std::string job = Submit("killed", 40, 4);
  ASSERT_TRUE(WaitFor([&] { return !Latest("killed").empty(); }, 60000))
      << JobLog(job, "killed");
  // A worker rank of this job: bert-worker with SLURM_JOB_ID=job.
  const CommandResult killed = RunCommand(
      "for p in $(pgrep -x bert-worker); do if tr '\\0' '\\n' < /proc/$p/environ | grep -qx SLURM_JOB_ID=" + job +
      "; then kill -9 $p && echo killed $p; break; fi; done");
  ASSERT_TRUE(Contains(killed.output, "killed ")) << "no worker of job " << job << " found";
  EXPECT_EQ(WaitForEnd(job, "killed", 120000), "COMPLETED");
  EXPECT_EQ(JobField(job, "Restarts"), "0") << "relaunched within the allocation, not requeued";
  const std::string log = JobLog(job, "killed");
  EXPECT_TRUE(Contains(log, "Restart 1 of 3")) << log;
  EXPECT_TRUE(Contains(log, "run complete")) << log;
  const std::string coordinator = ReadText(RunDirOf("killed") + "/coordinator/coordinator.log");
  EXPECT_TRUE(Contains(coordinator, "resuming from step-")) << coordinator;
  EXPECT_EQ(Latest("killed"), "step-000040");
}

TEST_F(SlurmTest, StatusFollowsPendingRunningCompleted) {
  // A job of the same name holds the singleton chain: ours is PENDING.
  job_names_.push_back("bert-watched");
  const CommandResult blocker = RunCommand("sbatch --parsable --job-name=bert-watched --output=/dev/null "
                                           "--wrap 'sleep 60'");
  ASSERT_EQ(blocker.exit_code, 0) << blocker.output;
  const std::string blocker_id = blocker.output.substr(0, blocker.output.find_first_of(";\n"));
  const std::string job = Submit("watched", 20, 0);
  const std::string run_dir = RunDirOf("watched");
  std::string status;
  EXPECT_TRUE(WaitFor([&] { return Contains(status = Status(run_dir), "slurm job " + job + " (bert-watched): PENDING (Dependency)"); },
                      10000)) << status;
  RunCommand("scancel " + blocker_id);
  EXPECT_TRUE(WaitFor([&] { return Contains(status = Status(run_dir), "slurm job " + job + " (bert-watched): RUNNING"); },
                      30000)) << status;
  EXPECT_EQ(WaitForEnd(job, "watched"), "COMPLETED");
  status = Status(run_dir);
  EXPECT_TRUE(Contains(status, "slurm job " + job + " (bert-watched): COMPLETED")) << status;
  EXPECT_TRUE(Contains(status, "step 20/20")) << status;  // and the coordinator's last status
  const Json json = Json::parse(RunCommand(Bertctl() + " status --json " + run_dir).output, nullptr, false);
  ASSERT_TRUE(json.is_object());
  EXPECT_EQ(json["slurm"]["state"], "COMPLETED") << json.dump();

  // bertctl resume resubmits the recorded script (a new job of the chain);
  // bertctl cancel scancels the newest job.
  const CommandResult resumed = RunCommand(Bertctl() + " resume " + run_dir);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  const Json record = Json::parse(ReadText(run_dir + "/slurm.json"), nullptr, false);
  ASSERT_TRUE(record.is_object() && record["job_ids"].size() == 2) << record.dump();
  const std::string second = record["job_ids"][1].get<std::string>();
  EXPECT_NE(second, job);
  EXPECT_TRUE(Contains(resumed.output, "as Slurm job " + second)) << resumed.output;
  const CommandResult cancelled = RunCommand(Bertctl() + " cancel " + run_dir);
  EXPECT_EQ(cancelled.exit_code, 0) << cancelled.output;
  EXPECT_TRUE(Contains(cancelled.output, "cancelled job " + second)) << cancelled.output;
  EXPECT_TRUE(WaitFor([&] { return Contains(status = Status(run_dir), "slurm job " + second + " (bert-watched): CANCELLED"); },
                      20000)) << status;
}

TEST_F(SlurmTest, DryRunFourNodesEightGpus) {
  const std::string config = WriteRunConfig("big", 100, 10);
  const CommandResult dry = RunCommand("cd " + work_.path() + " && " + Bertctl() + " submit --config " + config +
                                       " --nodes 4 --gpus-per-node 8 --cpus-per-task 6 --time 1-12:00:00 "
                                       "--partition gpu --account proj42 --dry-run");
  ASSERT_EQ(dry.exit_code, 0) << dry.output;
  const std::string& script = dry.output;
  const std::string run_dir = RunDirOf("big");
  for (const std::string& line : std::vector<std::string>{
           "#SBATCH --job-name=bert-big\n", "#SBATCH --nodes=4\n", "#SBATCH --ntasks-per-node=8\n",
        "#SBATCH --cpus-per-task=6\n", "#SBATCH --gpus-per-node=8\n", "#SBATCH --time=1-12:00:00\n",
        "#SBATCH --partition=gpu\n", "#SBATCH --account=proj42\n", "#SBATCH --requeue\n",
        "#SBATCH --signal=B:USR1@300\n", "#SBATCH --dependency=singleton\n",
        "#SBATCH --output=" + run_dir + "/slurm/job-%j.log\n",
        "srun --mpi=pmix --ntasks=32 --kill-on-bad-exit=1 --output=" + run_dir +
            "/slurm/job-%j-rank-%t.log --open-mode=append --nodes=4 --ntasks-per-node=8 --gpus-per-node=8 "
            "--gpu-bind=none --cpus-per-task=6 " + std::string(BERT_BIN_DIR) + "/bert-worker --config " + run_dir + "/config.yaml",
        " pretrain --config " + config, "--workers 32 --launcher srun",
        "--srun-args '--nodes=4 --ntasks-per-node=8 --gpus-per-node=8 --gpu-bind=none --cpus-per-task=6'",
        "export NCCL_DEBUG=${NCCL_DEBUG:-WARN}",
        "scontrol requeue \"$SLURM_JOB_ID\""}) {
    EXPECT_TRUE(Contains(script, line)) << "missing: " << line << "\n" << script;
  }
  EXPECT_EQ(CountOf(script, "#SBATCH"), 14) << script;  // no empty optional lines
  // Valid shell, and nothing written: a dry run prints only.
  WriteText(work_ / "dry.sbatch", script);
  const CommandResult syntax = RunCommand("bash -n " + (work_ / "dry.sbatch"));
  EXPECT_EQ(syntax.exit_code, 0) << syntax.output;
  EXPECT_FALSE(fs::exists(run_dir)) << run_dir;
  // CPU mode: no GPU lines.
  const CommandResult cpu = RunCommand(Bertctl() + " submit --config " + config + " --nodes 2 --tasks-per-node 4 --dry-run");
  EXPECT_FALSE(Contains(cpu.output, "gpus")) << cpu.output;
  EXPECT_TRUE(Contains(cpu.output, "--ntasks=8 ")) << cpu.output;
}

TEST_F(SlurmTest, BadResourcesUnknownPartitionAndMissingSbatchGetOneLine) {
  const std::string config = WriteRunConfig("bad", 10, 0);
  const std::string submit = "cd " + work_.path() + " && " + Bertctl() + " submit --config " + config;
  struct Case {
    std::string flags, env, expected;
  };
  for (const Case& c : std::vector<Case>{
           {"--nodes 0", "", "--nodes: must be in [1, 100000], got 0"},
           {"--time 1:99:00", "", "--time: '1:99:00' is not a Slurm time limit"},
           {"--time soon", "", "--time: 'soon' is not a Slurm time limit"},
           {"--time 00:01:00 --signal-before-s 300", "", "--signal-before-s: 300 s is not less than --time"},
           {"--partition nosuch", "", "--partition: no partition 'nosuch' on this cluster (sinfo lists: debug)"},
           {"", "PATH=/nonexistent ", "sbatch not found on PATH"}}) {
    const CommandResult r = RunCommand(c.env.empty() ? submit + " " + c.flags : "cd " + work_.path() + " && " + c.env +
                                                                                   Bertctl() + " submit --config " +
                                                                                   config + " " + c.flags);
    EXPECT_EQ(r.exit_code, c.env.empty() ? 2 : 1) << c.flags << ": " << r.output;
    EXPECT_TRUE(Contains(r.output, c.expected)) << c.flags << ": " << r.output;
    EXPECT_EQ(CountOf(r.output, "\n"), 1) << c.flags << ": " << r.output;
    EXPECT_FALSE(fs::exists(RunDirOf("bad") + "/slurm.json")) << c.flags;
  }
  // cancel and status of a run that was never submitted.
  const CommandResult cancel = RunCommand(Bertctl() + " cancel " + work_.path());
  EXPECT_EQ(cancel.exit_code, 2) << cancel.output;
  EXPECT_TRUE(Contains(cancel.output, "slurm.json: no Slurm job record")) << cancel.output;
}

}  // namespace
}  // namespace bert
