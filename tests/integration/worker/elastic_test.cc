// Elastic shrink end to end: `bertctl pretrain --workers 3 --min-workers 2`
// with real workers, one of which is lost for good after the checkpoint of
// step 8 (killed, and its slot refuses to start again). The launcher's
// relaunch with 3 fails without progress; it continues with 2 workers from
// that checkpoint, the global batch unchanged, and the run ends with the
// weights of a run that was 3 workers up to that checkpoint and 2 from it.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>

#include <cmath>

#include "checkpoint/checkpoint.h"
#include "common/process.h"
#include "integration/worker/pretrain_run.h"

namespace bert::testing {
namespace {

constexpr uint64_t kSteps = 16, kEvery = 8;
constexpr uint64_t kBatch = 30, kMicro = 5;  // 3 ranks: 2 micro-batches each; 2 ranks: 3

class ElasticTest : public PretrainRunTest {};

TEST_F(ElasticTest, ALostWorkerThatDoesNotComeBackLeavesTheRunOnTwoFromTheLastCheckpoint) {
  // The reference: 3 workers to the checkpoint of step 8, then 2 from it.
  const std::string reference_config = WriteRun("reference", kMicro, kSteps, kEvery);
  SetGlobalBatch(reference_config, kBatch);
  {
    Run run = Start("reference", reference_config, 3, Flags("reference"));
    ASSERT_TRUE(WaitFor([&] { return LatestStep("reference") >= kEvery; }, 180000)) << ReadLog(*run.workers);
    for (pid_t pid : ChildrenOf(run.workers->pid())) ::kill(pid, SIGKILL);
    ASSERT_TRUE(run.workers->Wait(15000).has_value());
    run.coordinator->Signal(SIGKILL);
    run.coordinator->Wait(5000);
    ASSERT_EQ(LatestStep("reference"), kEvery) << "the reference ran past its checkpoint";
  }
  const std::vector<float> expected = Finish(Start("reference", reference_config, 2, Flags("reference")), "reference");
  ASSERT_FALSE(expected.empty());

  // The elastic run. Rank 2 of a 3-rank generation is lost once `lost` exists.
  const std::string config = WriteRun("elastic", kMicro, kSteps, kEvery);
  SetGlobalBatch(config, kBatch);
  const std::string lost = work_ / "lost", wrapper = work_ / "worker.sh";
  WriteText(wrapper, "#!/bin/sh\nif [ \"$OMPI_COMM_WORLD_SIZE\" = 3 ] && [ \"$OMPI_COMM_WORLD_RANK\" = 2 ] && [ -e " +
                         lost + " ]; then echo '[test] rank 2: its slot is gone' >&2; exit 1; fi\nexec " + Worker() +
                         " \"$@\"\n");
  ::chmod(wrapper.c_str(), 0755);
  ProcessOptions options;
  options.argv = {"/bin/sh", "-c",
                  "exec " + Bertctl() + " pretrain --config " + config +
                      " --workers 3 --min-workers 2 --replace-timeout-s 0 --max-restarts 3 --restart-backoff-s 0.2"
                      " --worker-args '--save-params " +
                      (work_ / "elastic.params") +
                      "' --coordinator-args '--heartbeat-interval-ms 200 --heartbeat-timeout-ms 1500'"};
  options.env = {{"BERT_WORKER_BIN", wrapper}};
  options.log_path = work_ / "elastic-bertctl.log";
  Result<std::unique_ptr<Process>> bertctl = Process::Start(options);
  ASSERT_TRUE(bertctl.ok()) << bertctl.status().message();
  const std::string frozen = work_ / "elastic/config.yaml";
  ASSERT_TRUE(WaitFor([&] { return LatestStep("elastic") >= kEvery; }, 180000)) << Text(options.log_path);
  WriteText(lost, "");
  pid_t victim = 0;
  for (pid_t pid : FindProcesses("bert-worker", frozen)) {
    if (RankOf(pid) == 2) victim = pid;
  }
  ASSERT_NE(victim, 0) << Text(options.log_path);
  ASSERT_LT(LatestStep("elastic"), kSteps) << "the run ended before the loss";
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  const std::optional<int> code = (*bertctl)->Wait(300000);
  const std::string output = Text(options.log_path);
  ASSERT_EQ(code, 0) << output;
  EXPECT_NE(output.find("Restart 1 of 3"), std::string::npos) << output;  // with 3 again: rank 2 fails at once
  EXPECT_NE(output.find("No progress with 3 workers for --replace-timeout-s"), std::string::npos) << output;
  EXPECT_NE(output.find("Continuing with 2 workers (--min-workers 2) from step-000008; the global batch stays 30"),
            std::string::npos)
      << output;
  EXPECT_NE(output.find("run complete"), std::string::npos) << output;

  Result<LoadedCheckpoint> latest = CheckpointStore(work_ / "elastic").LoadLatest();
  ASSERT_TRUE(latest.ok()) << latest.status().message();
  EXPECT_EQ(latest->manifest.step, kSteps);
  EXPECT_EQ(latest->manifest.world_size, 2u);
  const std::vector<float> actual = ReadFloats(work_ / "elastic.params");
  ASSERT_EQ(actual.size(), expected.size());
  double max_diff = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(actual[i] - expected[i])));
  }
  EXPECT_LT(max_diff, 1e-5);
  std::cerr << "[elastic] largest difference from the reference: " << max_diff << "\n";
}

}  // namespace
}  // namespace bert::testing
