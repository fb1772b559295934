// The coordinator's monitoring state (coordinator/status_board.h) and its
// renderings (coordinator/status_http.h), with time driven by hand; and the
// protocol's checks of the monitoring fields (StepFigures, Heartbeat).
#include "coordinator/status_board.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>
#include <sstream>

#include "common/file_util.h"
#include "coordinator/authenticator.h"
#include "coordinator/status_http.h"
#include "test_util.h"

namespace bert {
namespace {

using Json = nlohmann::json;

StatusBoardOptions Options(uint32_t world = 2, uint64_t steps = 10) {
  StatusBoardOptions o;
  o.run_id = "board";
  o.total_steps = steps;
  o.world_size = world;
  o.global_batch_size = 32;
  o.checkpoint_every = 4;
  o.log_every_steps = 1;
  o.straggler_factor = 1.5;
  o.straggler_steps = 3;
  return o;
}

WorkerInfo Info(uint32_t rank) {
  WorkerInfo info;
  info.rank = rank;
  info.host = "node" + std::to_string(rank);
  info.device = "cpu";
  info.pid = 100 + rank;
  return info;
}

proto::Ack Ack(uint64_t step, float step_ms, float wait_ms, std::optional<float> compute_ms, float mlm = 0.25f) {
  proto::Ack ack;
  ack.set_step(step);
  ack.set_micro(0);
  ack.set_loss(10.0f - step);
  ack.set_step_time_ms(step_ms);
  ack.set_data_wait_ms(wait_ms);
  if (compute_ms) {
    proto::StepFigures* f = ack.mutable_figures();
    f->set_mlm_accuracy(mlm);
    f->set_nsp_accuracy(0.5f);
    f->set_lr(1e-3 * (step + 1));
    f->set_grad_norm(2.0f);
    f->set_samples(32);
    f->set_tokens(1000);
    f->set_masked(100);
    f->set_model_flops(1e9);
    f->set_peak_flops(1e11);
    f->set_compute_ms(*compute_ms);
    f->set_data_wait_ms(wait_ms);
  }
  return ack;
}

// Both ranks ack `step` (one micro-batch each); rank r reports compute_ms[r].
void AckStep(StatusBoard& board, uint64_t step, int64_t now_ms, std::vector<float> compute_ms = {50, 50}) {
  for (uint32_t rank = 0; rank < compute_ms.size(); ++rank) {
    const uint64_t cursor = rank + 1 == compute_ms.size() ? step + 1 : step;
    board.OnAck(rank, Ack(step, 100, 1, compute_ms[rank]), cursor, now_ms);
  }
}

TEST(StatusBoardTest, StatesFollowRegistrationStepsCheckpointsAndTheEnd) {
  StatusBoard board(Options(), 0);
  EXPECT_EQ(board.Snapshot(0)["state"], "starting");
  board.OnRegister(Info(0), 10);
  EXPECT_EQ(board.Snapshot(10)["state"], "starting");
  board.OnRegister(Info(1), 20);
  EXPECT_EQ(board.Snapshot(20)["state"], "running");
  for (uint64_t step = 0; step < 3; ++step) AckStep(board, step, 100 * (step + 1));
  EXPECT_EQ(board.Snapshot(300)["state"], "running");
  AckStep(board, 3, 400);  // step 4 done: a checkpoint step (every 4)
  EXPECT_EQ(board.Snapshot(400)["state"], "checkpointing");
  board.OnShardReported(4);
  board.OnCheckpointCommitted(4, "step-000004");
  Json status = board.Snapshot(410);
  EXPECT_EQ(status["state"], "running");
  EXPECT_EQ(status["last_checkpoint"], "step-000004");
  EXPECT_EQ(status["last_checkpoint_step"], 4);
  board.OnFinish(kExitAborted, "rank 1 (host node1) is dead", 1, 5000);
  status = board.Snapshot(9000);
  EXPECT_EQ(status["state"], "failed");
  EXPECT_EQ(status["exit_code"], kExitAborted);
  EXPECT_EQ(status["workers"][1]["state"], "dead");
  EXPECT_EQ(status["workers"][0]["state"], "aborted");
  EXPECT_DOUBLE_EQ(status["elapsed_s"].get<double>(), 5.0) << "time stops at the end";
}

// A clean preemption (SIGUSR1: checkpoint committed, the run resumes from
// it) is not a failure: its own state in /status and /metrics, workers
// stopped (not aborted), and no ETA of 0 s.
TEST(StatusBoardTest, APreemptedRunIsPreemptedNotFailed) {
  StatusBoard board(Options(), 0);
  board.OnRegister(Info(0), 0);
  board.OnRegister(Info(1), 0);
  for (uint64_t step = 0; step < 5; ++step) AckStep(board, step, 100 * (step + 1));
  EXPECT_TRUE(board.Snapshot(500)["eta_s"].is_number());
  board.OnShardReported(5);
  board.OnCheckpointCommitted(5, "step-000005");
  board.OnFinish(kExitPreempted, "checkpoint-and-stop (SIGUSR1): checkpoint of step 5 committed", -1, 600);
  const Json status = board.Snapshot(900);
  EXPECT_EQ(status["state"], "preempted");
  EXPECT_EQ(status["exit_code"], kExitPreempted);
  EXPECT_EQ(status["workers"][0]["state"], "stopped");
  EXPECT_EQ(status["workers"][1]["state"], "stopped");
  EXPECT_TRUE(status["eta_s"].is_null()) << status.dump();
  EXPECT_EQ(status["last_checkpoint"], "step-000005");
  const std::string text = PrometheusText(status);
  EXPECT_NE(text.find("bert_run_state{run=\"board\",state=\"preempted\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("bert_run_state{run=\"board\",state=\"failed\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("state=\"stopped\"} 1"), std::string::npos) << text;
}

TEST(StatusBoardTest, AResumedRunIsRecoveringUntilItsFirstStep) {
  StatusBoardOptions options = Options();
  options.start_step = 4;
  options.resumed_from = "step-000004";
  options.restarts = 1;
  StatusBoard board(options, 0);
  board.OnRegister(Info(0), 0);
  board.OnRegister(Info(1), 0);
  Json status = board.Snapshot(0);
  EXPECT_EQ(status["state"], "recovering");
  EXPECT_EQ(status["step"], 4);
  EXPECT_EQ(status["restarts"], 1);
  EXPECT_EQ(status["last_checkpoint"], "step-000004");
  AckStep(board, 4, 100);
  EXPECT_EQ(board.Snapshot(100)["state"], "running");
  EXPECT_EQ(board.Snapshot(100)["samples_seen"], 5 * 32);
}

TEST(StatusBoardTest, WorkersAreLateThenDeadByTheirSilence) {
  StatusBoard board(Options(), 0);
  board.OnRegister(Info(0), 0);
  board.OnRegister(Info(1), 0);
  proto::Heartbeat heartbeat;
  heartbeat.set_rss_bytes(123456789);
  heartbeat.set_has_activity(true);
  heartbeat.set_phase(static_cast<uint32_t>(WorkerPhase::kBackward));
  board.OnHeartbeat(1, heartbeat);
  board.OnSeen(0, 3000);
  Json status = board.Snapshot(3400);
  EXPECT_EQ(status["workers"][0]["state"], "alive");
  EXPECT_EQ(status["workers"][1]["state"], "dead");  // silent 3.4 s > 3 s
  EXPECT_DOUBLE_EQ(status["workers"][1]["heartbeat_age_s"].get<double>(), 3.4);
  EXPECT_EQ(status["workers"][1]["rss_bytes"], 123456789);
  EXPECT_EQ(status["workers"][1]["phase"], "backward");  // what it was doing when last heard of
  EXPECT_TRUE(status["workers"][0]["phase"].is_null()) << "no activity reported";
  EXPECT_EQ(board.Snapshot(4100)["workers"][0]["state"], "late");  // 1.1 s > 2 intervals
  EXPECT_EQ(status["workers"][1]["host"], "node1");
}

TEST(StatusBoardTest, FiguresAveragesRatesAndEta) {
  StatusBoard board(Options(2, 10), 0);
  board.OnRegister(Info(0), 0);
  board.OnRegister(Info(1), 0);
  for (uint64_t step = 0; step < 4; ++step) AckStep(board, step, 200 * (step + 1));
  const Json s = board.Snapshot(800);
  EXPECT_EQ(s["step"], 4);
  EXPECT_DOUBLE_EQ(s["progress"].get<double>(), 0.4);
  EXPECT_FLOAT_EQ(s["loss"].get<float>(), 7.0f);
  EXPECT_FLOAT_EQ(s["loss_avg"].get<float>(), 8.5f);  // mean of 10, 9, 8, 7
  EXPECT_NEAR(s["mlm_accuracy_avg"].get<double>(), 0.25, 1e-6);
  EXPECT_NEAR(s["lr"].get<double>(), 4e-3, 1e-12);
  // 32 samples, 1000 tokens, 1e9 FLOPs per 0.1 s step; peak 1e11 FLOP/s.
  EXPECT_DOUBLE_EQ(s["samples_per_s"].get<double>(), 320);
  EXPECT_DOUBLE_EQ(s["tokens_per_s"].get<double>(), 10000);
  EXPECT_NEAR(s["mfu"].get<double>(), 0.1, 1e-9);
  EXPECT_NEAR(s["data_wait_fraction"].get<double>(), 0.01, 1e-9);
  // Steps completed every 0.2 s of wall time: 6 to go -> 1.2 s.
  EXPECT_NEAR(s["eta_s"].get<double>(), 1.2, 1e-9);
  EXPECT_EQ(s["workers"][1]["step"], 4);
  EXPECT_DOUBLE_EQ(s["workers"][1]["compute_ms"].get<double>(), 50);
  const Json h = board.History();
  EXPECT_EQ(h["step"], Json({1, 2, 3, 4}));
  EXPECT_EQ(h["loss"].size(), 4u);
}

TEST(StatusBoardTest, UnderATimeBudgetProgressAndEtaFollowTheTimeSpent) {
  StatusBoardOptions options = Options(2, 100000);  // train.steps is only a cap
  options.time_budget_s = 10;
  options.budget_used_s = 2;  // an earlier session's
  StatusBoard board(options, 0);
  board.OnRegister(Info(0), 0);
  board.OnRegister(Info(1), 0);
  for (uint64_t step = 0; step < 4; ++step) AckStep(board, step, 1000 * (step + 1));
  const Json s = board.Snapshot(4000);
  EXPECT_EQ(s["time_budget_s"], 10);
  EXPECT_DOUBLE_EQ(s["progress"].get<double>(), 0.6);  // (2 + 4) of 10 s, not 4 of 100000 steps
  EXPECT_DOUBLE_EQ(s["eta_s"].get<double>(), 4.0);
  EXPECT_DOUBLE_EQ(board.Snapshot(20000)["progress"].get<double>(), 1.0);
}

TEST(StatusBoardTest, WritesOneMetricsLinePerLogIntervalAndAtTheLastStep) {
  testing::TempDir dir;
  StatusBoardOptions options = Options(2, 5);
  options.log_every_steps = 2;
  options.metrics_path = dir / "metrics.jsonl";
  StatusBoard board(options, 0);
  ASSERT_TRUE(board.OpenMetricsFile().ok());
  board.OnRegister(Info(0), 0);
  board.OnRegister(Info(1), 0);
  // Rank 1's ack of step 0 comes late: nothing is written before it.
  board.OnAck(0, Ack(0, 100, 1, 50.0f, 0.2f), 0, 100);
  board.OnAck(0, Ack(1, 100, 1, 50.0f, 0.4f), 0, 200);
  EXPECT_FALSE(ReadFile(dir / "metrics.jsonl").ok() && !ReadFile(dir / "metrics.jsonl")->empty());
  board.OnAck(1, Ack(0, 120, 3, 70.0f, 0.2f), 0, 210);
  board.OnAck(1, Ack(1, 120, 3, 70.0f, 0.4f), 2, 220);  // the cursor jumps over steps 0 and 1
  for (uint64_t step = 2; step < 5; ++step) AckStep(board, step, 300 + step);
  Result<std::string> text = ReadFile(dir / "metrics.jsonl");
  ASSERT_TRUE(text.ok());
  std::vector<Json> lines;
  std::istringstream in(*text);
  for (std::string line; std::getline(in, line);) lines.push_back(Json::parse(line));
  ASSERT_EQ(lines.size(), 3u);  // steps 2, 4 and the last, 5
  EXPECT_EQ(lines[0]["step"], 2);
  EXPECT_EQ(lines[1]["step"], 4);
  EXPECT_EQ(lines[2]["step"], 5);
  for (const char* key : {"loss", "mlm_accuracy", "nsp_accuracy", "lr", "grad_norm", "samples_per_s", "tokens_per_s",
                          "tokens", "mfu", "data_wait_fraction", "elapsed_s", "worker_step_ms", "worker_compute_ms",
                          "worker_data_wait_ms"}) {
    EXPECT_TRUE(lines[0].contains(key)) << key;
  }
  EXPECT_FLOAT_EQ(lines[0]["loss"].get<float>(), 9.5f);          // mean of 10 and 9
  EXPECT_NEAR(lines[0]["mlm_accuracy"].get<double>(), 0.3, 1e-6);  // (0.2 * 100 + 0.4 * 100) / 200
  EXPECT_NEAR(lines[0]["samples_per_s"].get<double>(), 64 / 0.24, 1e-6);  // the slower rank's 120 ms steps
  EXPECT_EQ(lines[0]["worker_step_ms"], Json({100.0, 120.0}));
  EXPECT_EQ(lines[0]["worker_compute_ms"], Json({50.0, 70.0}));
  EXPECT_EQ(lines[0]["worker_data_wait_ms"], Json({1.0, 3.0}));
  EXPECT_DOUBLE_EQ(lines[0]["elapsed_s"].get<double>(), 0.22);
  // Tokens trained in each line's window: 1000 a step, summed over the ranks.
  EXPECT_EQ(lines[0]["tokens"], 2000);
  EXPECT_EQ(lines[1]["tokens"], 2000);
  EXPECT_EQ(lines[2]["tokens"], 1000);
}

TEST(StatusBoardTest, AWorkerIsAStragglerAfterEnoughSlowStepsInARowAndNotBefore) {
  StatusBoard board(Options(3, 100), 0);
  for (uint32_t rank = 0; rank < 3; ++rank) board.OnRegister(Info(rank), 0);
  uint64_t step = 0;
  // 1.4x the median is under the 1.5 factor.
  for (; step < 5; ++step) AckStep(board, step, step, {50, 70, 50});
  EXPECT_TRUE(board.Stragglers().empty());
  // Rank 1 at 3x: flagged on the third slow step in a row.
  AckStep(board, step++, 0, {50, 150, 50});
  AckStep(board, step++, 0, {50, 150, 50});
  EXPECT_TRUE(board.Stragglers().empty());
  AckStep(board, step++, 0, {50, 150, 50});
  EXPECT_EQ(board.Stragglers(), std::vector<uint32_t>{1});
  Json s = board.Snapshot(0);
  EXPECT_EQ(s["stragglers"], Json({1}));
  EXPECT_TRUE(s["workers"][1]["straggler"].get<bool>());
  EXPECT_NEAR(s["workers"][1]["slowness"].get<double>(), 151.0 / 51.0, 1e-9);  // busy = compute + 1 ms wait
  EXPECT_NE(PrometheusText(s).find("bert_worker_straggler{run=\"board\",rank=\"1\",host=\"node1\"} 1"),
            std::string::npos);
  // One normal step clears it.
  AckStep(board, step++, 0, {50, 50, 50});
  EXPECT_TRUE(board.Stragglers().empty());
  // With two workers the slow one is compared with the fast one.
  StatusBoard pair(Options(2, 100), 0);
  pair.OnRegister(Info(0), 0);
  pair.OnRegister(Info(1), 0);
  for (uint64_t k = 0; k < 3; ++k) AckStep(pair, k, 0, {200, 50});
  EXPECT_EQ(pair.Stragglers(), std::vector<uint32_t>{0});
}

TEST(StatusBoardTest, AcksWithoutFiguresStillGiveStepTimesLossAndStragglers) {
  StatusBoard board(Options(2, 100), 0);
  board.OnRegister(Info(0), 0);
  board.OnRegister(Info(1), 0);
  for (uint64_t step = 0; step < 3; ++step) {
    board.OnAck(0, Ack(step, 20, 0, std::nullopt), step, 0);
    board.OnAck(1, Ack(step, 80, 0, std::nullopt), step + 1, 0);
  }
  const Json s = board.Snapshot(0);
  EXPECT_EQ(s["stragglers"], Json({1}));
  EXPECT_TRUE(s["mlm_accuracy"].is_null());
  EXPECT_TRUE(s["tokens_per_s"].is_null());
  EXPECT_FLOAT_EQ(s["loss"].get<float>(), 8.0f);
  EXPECT_DOUBLE_EQ(s["samples_per_s"].get<double>(), 32 / 0.08);
  EXPECT_DOUBLE_EQ(s["workers"][1]["step_time_ms"].get<double>(), 80);
}

// Every family has HELP and TYPE before its samples, names are Prometheus
// style, label values are escaped and unknown values are left out.
TEST(PrometheusTextTest, FamiliesHaveHelpAndTypeAndLabelsAreEscaped) {
  StatusBoard board(Options(), 0);
  WorkerInfo odd = Info(0);
  odd.host = "a\"b\\c";
  board.OnRegister(odd, 0);
  board.OnRegister(Info(1), 0);
  AckStep(board, 0, 100);
  Json status = board.Snapshot(100);
  SecurityCounters security;
  security.connections_accepted = 5;
  security.handshake_failed = 2;
  security.refused_key = 1;
  status["security"] = security.ToJson();
  const std::string text = PrometheusText(status);
  std::istringstream in(text);
  std::set<std::string> described, typed;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# HELP ", 0) == 0) {
      described.insert(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      typed.insert(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    const std::string name = line.substr(0, line.find('{'));
    EXPECT_TRUE(described.count(name) && typed.count(name)) << "no HELP/TYPE before " << line;
    EXPECT_EQ(name.find_first_not_of("abcdefghijklmnopqrstuvwxyz_"), std::string::npos) << name;
  }
  EXPECT_NE(text.find("bert_run_state{run=\"board\",state=\"running\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("bert_step{run=\"board\"} 1\n"), std::string::npos) << text;
  // The security counters /status has, for alerts on refusals.
  EXPECT_NE(text.find("bert_security_connections_accepted_total{run=\"board\"} 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("bert_security_refused_total{run=\"board\",reason=\"handshake\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("bert_security_refused_total{run=\"board\",reason=\"key\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("bert_security_rejected_messages_total{run=\"board\",reason="), std::string::npos);
  EXPECT_NE(text.find("bert_worker_step_time_seconds{run=\"board\",rank=\"0\",host=\"a\\\"b\\\\c\"} 0.1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("bert_samples_seen_total{run=\"board\"} 32\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("bert_worker_resident_memory_bytes"), std::string::npos) << "unknown: left out";
}

TEST(ParseHttpBindTest, AcceptsHostPortAndRefusesTheRest) {
  EXPECT_EQ(*ParseHttpBind("127.0.0.1:0"), std::make_pair(std::string("127.0.0.1"), 0));
  EXPECT_EQ(*ParseHttpBind("0.0.0.0:8080"), std::make_pair(std::string("0.0.0.0"), 8080));
  EXPECT_EQ(*ParseHttpBind("[::1]:9"), std::make_pair(std::string("::1"), 9));
  for (const char* bad : {"", "8080", ":80", "host:", "host:http", "host:70000", "host:-1"}) {
    EXPECT_FALSE(ParseHttpBind(bad).ok()) << bad;
  }
}

TEST(ProtocolMonitoringTest, StepFiguresAndHeartbeatMemoryAreChecked) {
  auto check = [](const proto::Ack& ack) {
    proto::Envelope envelope = MakeEnvelope();
    *envelope.mutable_ack() = ack;
    std::string detail;
    return ValidateFromWorker(envelope, &detail);
  };
  EXPECT_EQ(check(Ack(0, 1, 0, 5.0f)), Reject::kNone);
  EXPECT_EQ(check(Ack(0, 1, 0, std::nullopt)), Reject::kNone);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(check(Ack(0, 1, 0, -1.0f)), Reject::kBadField);
  EXPECT_EQ(check(Ack(0, 1, 0, nan)), Reject::kBadField);
  EXPECT_EQ(check(Ack(0, 1, 0, 5.0f, 1.5f)), Reject::kBadField);
  EXPECT_EQ(check(Ack(0, 1, 0, 5.0f, nan)), Reject::kBadField);
  proto::Ack ack = Ack(0, 1, 0, 5.0f);
  ack.mutable_figures()->set_grad_norm(inf);  // a diverging run reports it
  EXPECT_EQ(check(ack), Reject::kNone);
  ack.mutable_figures()->set_grad_norm(-1);
  EXPECT_EQ(check(ack), Reject::kBadField);
  ack = Ack(0, 1, 0, 5.0f);
  ack.mutable_figures()->set_lr(std::nan(""));
  EXPECT_EQ(check(ack), Reject::kBadField);
  ack = Ack(0, 1, 0, 5.0f);
  ack.mutable_figures()->set_tokens(uint64_t{1} << 60);
  EXPECT_EQ(check(ack), Reject::kBadField);
  ack = Ack(0, 1, 0, 5.0f);
  ack.mutable_figures()->set_model_flops(-1);
  EXPECT_EQ(check(ack), Reject::kBadField);

  proto::Envelope heartbeat = MakeEnvelope();
  heartbeat.mutable_heartbeat()->set_rss_bytes(uint64_t{1} << 33);
  std::string detail;
  EXPECT_EQ(ValidateFromWorker(heartbeat, &detail), Reject::kNone);
  heartbeat.mutable_heartbeat()->set_rss_bytes(uint64_t{1} << 50);
  EXPECT_EQ(ValidateFromWorker(heartbeat, &detail), Reject::kBadField);
  EXPECT_NE(detail.find("Heartbeat.rss_bytes"), std::string::npos) << detail;
  heartbeat.mutable_heartbeat()->set_rss_bytes(1);
  heartbeat.mutable_heartbeat()->set_phase(static_cast<uint32_t>(WorkerPhase::kCount));
  EXPECT_EQ(ValidateFromWorker(heartbeat, &detail), Reject::kBadField);
  EXPECT_NE(detail.find("Heartbeat.phase: 7 is no phase"), std::string::npos) << detail;
  heartbeat.mutable_heartbeat()->set_phase(static_cast<uint32_t>(WorkerPhase::kBackward));
  heartbeat.mutable_heartbeat()->set_phase_ms(uint64_t{1} << 40);
  EXPECT_EQ(ValidateFromWorker(heartbeat, &detail), Reject::kBadField);
  EXPECT_NE(detail.find("Heartbeat.phase_ms"), std::string::npos) << detail;
}

}  // namespace
}  // namespace bert
