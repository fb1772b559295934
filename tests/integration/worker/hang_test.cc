// The hang diagnosis end to end: bert-coordinator and 3 real bert-workers on
// loopback, one of them stopped (SIGSTOP) in the middle of its training. The
// other two wait in a collective it never enters; once they have waited
// --collective-timeout-ms the coordinator names the stopped rank, says what
// it was doing (its step and phase), and aborts the run. /status
// (RUN_DIR/coordinator/status.json) keeps the report, and shows each rank's
// phase while the run is live.
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <thread>

#include "integration/worker/pretrain_run.h"

namespace bert::testing {
namespace {

constexpr int kCollectiveTimeoutMs = 1500;

class HangTest : public PretrainRunTest {};

TEST_F(HangTest, AStoppedRankIsNamedWithWhatItWasDoingWithinTheTimeoutPlusTwoSeconds) {
  // 3 ranks: 30 samples a step, 2 micro-batches of 5 per rank.
  const std::string config = WriteRun("hang", 5, 100000);
  SetGlobalBatch(config, 30);
  // The heartbeat timeout is longer than the collective's, so that the
  // report comes from the collective, not from the stopped rank's silence.
  Run run = Start("hang", config, 3, Flags("hang"),
                  {"--collective-timeout-ms", std::to_string(kCollectiveTimeoutMs), "--heartbeat-timeout-ms", "20000",
                   "--http-bind", "127.0.0.1:0"});
  ASSERT_TRUE(WaitFor([&] { return ReadJsonLines(work_ / "hang/metrics.jsonl").size() >= 10 || run.coordinator->Wait(0).has_value(); },
                      180000));
  ASSERT_FALSE(run.coordinator->Wait(0).has_value())
      << ReadLog(*run.workers) << ReadLog(*run.coordinator);
  // Live: every rank's phase.
  const std::string url = StatusUrl("hang");
  ASSERT_FALSE(url.empty());
  CommandResult live = RunCommand(Bertctl() + " status " + url + " --json 2>/dev/null");
  const Json status = Json::parse(live.output, nullptr, false);
  ASSERT_TRUE(status.is_object()) << live.output;
  for (const Json& worker : status["workers"]) EXPECT_TRUE(worker["phase"].is_string()) << worker.dump();

  std::vector<pid_t> workers = ChildrenOf(run.workers->pid());
  ASSERT_EQ(workers.size(), 3u);
  pid_t stopped = 0;
  for (pid_t pid : workers) {
    if (RankOf(pid) == 1) stopped = pid;
  }
  ASSERT_NE(stopped, 0);
  const auto stop_time = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(stopped, SIGSTOP), 0);
  const std::optional<int> coordinator = run.coordinator->Wait(kCollectiveTimeoutMs + 15000);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - stop_time).count();
  ::kill(stopped, SIGKILL);
  ::kill(stopped, SIGCONT);
  const std::string log = ReadLog(*run.coordinator);
  EXPECT_EQ(coordinator, static_cast<int>(kExitAborted)) << log;
  EXPECT_LT(seconds, kCollectiveTimeoutMs / 1000.0 + 2.0) << log;
  EXPECT_TRUE(run.workers->Wait(30000).has_value()) << ReadLog(*run.workers);

  // The report: the collective, who waits, who never came, and what it was doing.
  const std::string expected = "have waited in it for ";
  EXPECT_NE(log.find("hung collective #"), std::string::npos) << log;
  EXPECT_NE(log.find("ranks 0, 2 " + expected), std::string::npos) << log;
  EXPECT_NE(log.find("rank 1 (host "), std::string::npos) << log;
  const std::string at = "never entered it: it is at step ";
  ASSERT_NE(log.find(at), std::string::npos) << log;
  // Its step as of its last heartbeat (at most an interval before the stop, after 10 steps).
  EXPECT_GE(std::stoull(log.substr(log.find(at) + at.size())), 3u) << log;
  EXPECT_EQ(log.find("is dead: no message"), std::string::npos) << "the silence, not the collective, was reported\n"
                                                                   << log;
  const Json saved = Json::parse(*ReadFile(work_ / "hang/coordinator/status.json"));
  const std::string reason = saved.value("exit_reason", "");
  EXPECT_NE(reason.find("rank 1 (host "), std::string::npos) << saved.dump();
  EXPECT_NE(reason.find("never entered it"), std::string::npos) << saved.dump();
  std::cerr << "[hang] reported " << seconds << " s after SIGSTOP: " << reason << "\n";
}

}  // namespace
}  // namespace bert::testing
