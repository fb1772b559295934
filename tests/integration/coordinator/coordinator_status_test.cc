// The coordinator's monitoring with bert-fake-worker processes on loopback
// (coordinator_run.h): a worker that stays slower than the others is
// flagged as a straggler in /status, /metrics and the log; a model-less
// worker's Acks (no StepFigures) still give step times and metrics.jsonl
// lines; bad --http-bind values are refused naming the flag.
#include <gtest/gtest.h>
#include <httplib.h>

#include "common/protocol.h"
#include "integration/coordinator/coordinator_run.h"

namespace bert::testing {
namespace {

std::string HttpGet(const std::string& url, const std::string& path) {
  std::string base = url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  httplib::Client client(base);
  client.set_connection_timeout(std::chrono::seconds(2));
  httplib::Result result = client.Get(path);
  return result && result->status == 200 ? result->body : std::string();
}

TEST_F(CoordinatorRunTest, ASlowWorkerIsFlaggedAsAStragglerInStatusMetricsAndTheLog) {
  constexpr uint64_t kSteps = 30;
  auto coordinator = StartCoordinator(WriteConfig(kSteps), "coordinator.log",
                                      {"--straggler-factor", "2", "--straggler-steps", "3", "--http-linger-ms", "3000"});
  auto w0 = StartWorker(0, "w0.jsonl", 5);
  auto w1 = StartWorker(1, "w1.jsonl", 60);  // 12x slower per micro-batch
  std::string url;
  ASSERT_TRUE(WaitFor(
      [&] {
        Result<std::string> text = ReadFile(RunDir() + "/coordinator/http");
        if (text.ok() && !text->empty()) url = text->substr(0, text->size() - 1);
        return !url.empty();
      },
      30000))
      << ReadLog(*coordinator);
  Json status;
  ASSERT_TRUE(WaitFor(
      [&] {
        status = Json::parse(HttpGet(url, "/status"), nullptr, false);
        return status.is_object() && !status["stragglers"].empty();
      },
      30000))
      << status.dump(2) << ReadLog(*coordinator);
  EXPECT_EQ(status["stragglers"], Json({1}));
  EXPECT_TRUE(status["workers"][1]["straggler"].get<bool>());
  EXPECT_FALSE(status["workers"][0]["straggler"].get<bool>());
  EXPECT_GT(status["workers"][1]["slowness"].get<double>(), 2.0);
  EXPECT_GE(status["step"].get<uint64_t>(), 3u) << "three slow steps in a row first";
  const std::string metrics = HttpGet(url, "/metrics");
  EXPECT_NE(metrics.find("bert_worker_straggler{run=\"coordtest\",rank=\"1\",host=\""), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("bert_stragglers{run=\"coordtest\"} 1\n"), std::string::npos) << metrics;

  ASSERT_EQ(coordinator->Wait(30000), kExitOk) << ReadLog(*coordinator);
  EXPECT_EQ(w0->Wait(10000), kExitOk);
  EXPECT_EQ(w1->Wait(10000), kExitOk);
  EXPECT_NE(ReadLog(*coordinator).find("straggler: rank 1"), std::string::npos) << ReadLog(*coordinator);
  const Json saved = Json::parse(*ReadFile(RunDir() + "/coordinator/status.json"));
  EXPECT_EQ(saved["state"], "done");
  EXPECT_EQ(saved["step"], kSteps);
  EXPECT_EQ(saved["workers"][0]["state"], "done");
  // No StepFigures from these workers: step times and loss, accuracies null.
  // One line per log.every_steps (10 by default).
  const std::vector<Json> lines = ReadJsonLines(RunDir() + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), kSteps / 10);
  EXPECT_EQ(lines.back()["step"], kSteps);
  EXPECT_TRUE(lines.back()["mlm_accuracy"].is_null());
  double mean_loss = 0;  // the fake worker's loss is 10 / (1 + step)
  for (uint64_t step = kSteps - 10; step < kSteps; ++step) mean_loss += 10.0f / (1 + step) / 10.0;
  EXPECT_NEAR(lines.back()["loss"].get<double>(), mean_loss, 1e-6);
  EXPECT_DOUBLE_EQ(lines.back()["worker_step_ms"][0].get<double>(), 5);
  EXPECT_DOUBLE_EQ(lines.back()["worker_step_ms"][1].get<double>(), 60);
}

TEST_F(CoordinatorRunTest, BadHttpBindIsRefusedNamingTheFlag) {
  const std::string config = WriteConfig(4);
  for (const char* bad : {"localhost", "127.0.0.1:http", "127.0.0.1:70000"}) {
    auto coordinator = StartCoordinator(config, "bad.log", {"--http-bind", bad});
    EXPECT_EQ(coordinator->Wait(10000), kExitUsage) << bad;
    EXPECT_NE(ReadLog(*coordinator).find("--http-bind"), std::string::npos) << ReadLog(*coordinator);
  }
  // A port in use: an I/O error naming the address.
  httplib::Server holder;
  const int port = holder.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  auto coordinator = StartCoordinator(config, "busy.log", {"--http-bind", "127.0.0.1:" + std::to_string(port)});
  EXPECT_EQ(coordinator->Wait(20000), kExitError);
  EXPECT_NE(ReadLog(*coordinator).find("--http-bind 127.0.0.1:" + std::to_string(port)), std::string::npos)
      << ReadLog(*coordinator);
}

}  // namespace
}  // namespace bert::testing
