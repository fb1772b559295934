// The server and the client library in one process over TCP loopback, on a
// synthetic corpus: every worker receives exactly the samples the plan
// gives its rank (compared with samples generated independently), across an
// epoch boundary; credits bound what is in flight; a refused registration
// and an abort reach the client as their end reasons.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "coordinator/client.h"
#include "coordinator/server.h"
#include "test_util.h"
#include "unit/synthetic_corpus.h"

namespace bert {
namespace {

class ServerLoopbackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto index = CorpusIndex::FromDocuments(testing::SyntheticDocuments(5, 40), testing::kVocabSize);
    ASSERT_TRUE(index.ok());
    data_.index = std::move(index).value();
    data_.vocab = std::make_shared<const MaskingVocab>(testing::SyntheticVocab());
    data_.options.max_seq_len = 64;
    data_.options.masking.max_predictions = 10;
    data_.fingerprint = "synthetic";
    auto plan = EpochPlan::Build(data_.index, nullptr, data_.vocab, data_.options, 0, 1);
    ASSERT_TRUE(plan.ok());
    epoch0_samples_ = (*plan)->num_samples();
  }

  // Starts a server for `steps` steps of G = 16 over 2 ranks x 2 micro-batches.
  void StartServer(uint64_t steps, uint32_t prefetch = 3, int timeout_ms = 3000, int64_t register_timeout_ms = 60000) {
    auto geometry = DispatchGeometry::Make(16, 2, 4);
    ASSERT_TRUE(geometry.ok());
    LedgerMeta meta;
    meta.run_id = "loop";
    meta.global_batch_size = 16;
    auto ledger = Ledger::Open(LedgerDir(dir_.path()), meta);
    ASSERT_TRUE(ledger.ok()) << ledger.status().message();
    ledger_ = std::move(ledger).value();
    ServerOptions options;
    options.run_id = "loop";
    options.total_steps = steps;
    options.prefetch = prefetch;
    options.heartbeat_interval_ms = 100;
    options.heartbeat_timeout_ms = timeout_ms;
    options.register_timeout_ms = register_timeout_ms;
    options.progress_every_s = 1e9;
    options.linger_ms = 500;
    options.stop = &stop_;
    server_ = std::make_unique<Server>(options, data_, *geometry, ledger_.get());
    auto endpoint = server_->Bind();
    ASSERT_TRUE(endpoint.ok()) << endpoint.status().message();
    endpoint_ = *endpoint;
    server_thread_ = std::thread([this] { exit_code_ = server_->Run(); });
  }
  void TearDown() override {
    stop_ = true;
    if (server_thread_.joinable()) server_thread_.join();
  }
  ClientOptions Client(uint32_t rank, const std::string& run_id = "loop") {
    ClientOptions options;
    options.endpoint = endpoint_;
    options.run_id = run_id;
    options.rank = rank;
    options.world_size = 2;
    options.register_timeout_ms = 5000;
    return options;
  }
  uint64_t LedgerEntries(uint32_t rank) {
    uint64_t n = 0;
    EXPECT_TRUE(ledger_
                    ->ForEach([&](const BatchKey& key, const LedgerEntry&) {
                      n += key.rank == rank;
                      return Status::Ok();
                    })
                    .ok());
    return n;
  }

  testing::TempDir dir_;
  DataSource data_;
  uint64_t epoch0_samples_ = 0;
  std::unique_ptr<Ledger> ledger_;
  std::unique_ptr<Server> server_;
  std::string endpoint_;
  std::thread server_thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> exit_code_{-1};
};

TEST_F(ServerLoopbackTest, WorkersReceiveExactlyThePlannedSamplesAcrossAnEpochBoundary) {
  const uint64_t steps_in_epoch0 = epoch0_samples_ / 16;
  const uint64_t steps = steps_in_epoch0 + 3;
  StartServer(steps);
  std::vector<std::vector<WorkerBatch>> received(2);
  std::vector<std::thread> workers;
  for (uint32_t rank = 0; rank < 2; ++rank) {
    workers.emplace_back([&, rank] {
      CoordinatorClient client(Client(rank));
      auto run = client.Register();
      ASSERT_TRUE(run.ok()) << run.status().message();
      EXPECT_EQ(run->start_step, 0u);
      EXPECT_EQ(run->micro_batches_per_step, 2u);
      while (true) {
        auto next = client.NextBatch();
        ASSERT_TRUE(next.ok()) << next.status().message();
        if (!next->has_value()) break;
        client.Ack((*next)->step, (*next)->micro, 1.0f, 0, 0);
        received[rank].push_back(std::move(**next));
      }
      EXPECT_EQ(client.end_reason(), EndReason::kDone);
    });
  }
  for (std::thread& t : workers) t.join();
  server_thread_.join();
  EXPECT_EQ(exit_code_, kExitOk);
  EXPECT_EQ(ledger_->cursor(), steps);
  // Independently generated samples of both epochs.
  std::vector<std::unique_ptr<EpochPlan>> plans;
  for (uint64_t e = 0; e < 2; ++e) {
    auto plan = EpochPlan::Build(data_.index, nullptr, data_.vocab, data_.options, e, 1);
    ASSERT_TRUE(plan.ok());
    plans.push_back(std::move(plan).value());
  }
  for (uint32_t rank = 0; rank < 2; ++rank) {
    ASSERT_EQ(received[rank].size(), steps * 2);
    for (size_t i = 0; i < received[rank].size(); ++i) {
      const WorkerBatch& b = received[rank][i];
      const uint64_t step = i / 2, micro = i % 2;
      ASSERT_EQ(b.step, step);
      ASSERT_EQ(b.micro, micro);
      const uint64_t epoch = step < steps_in_epoch0 ? 0 : 1;
      const uint64_t k = epoch == 0 ? step : step - steps_in_epoch0;
      ASSERT_EQ(b.epoch, epoch);
      ASSERT_EQ(b.sample_begin, k * 16 + rank * 8 + micro * 4) << "step " << step;
      std::vector<TrainingSample> expected;
      ASSERT_TRUE(GenerateSamples(*plans[epoch], b.sample_begin, 4, 1, &expected).ok());
      ASSERT_EQ(b.batch.samples, expected) << "step " << step << " rank " << rank;
    }
  }
}

TEST_F(ServerLoopbackTest, CreditsBoundTheBatchesInFlight) {
  StartServer(50, /*prefetch=*/3);
  CoordinatorClient client(Client(0));
  ASSERT_TRUE(client.Register().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(LedgerEntries(0), 3u);  // the prefetch, and no more until a batch is taken
  auto next = client.NextBatch();
  ASSERT_TRUE(next.ok() && next->has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(LedgerEntries(0), 4u);
  EXPECT_EQ(LedgerEntries(1), 0u);  // rank 1 never registered
}

TEST_F(ServerLoopbackTest, RefusalAndAbortReachTheClientAsEndReasons) {
  StartServer(50, 3, /*timeout_ms=*/600);
  CoordinatorClient wrong_run(Client(1, "another-run"));
  auto refused = wrong_run.Register();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(wrong_run.end_reason(), EndReason::kRefused);
  EXPECT_EQ(ExitCodeFor(wrong_run.end_reason()), kExitRegistration);
  EXPECT_NE(refused.status().message().find("run_id 'another-run'"), std::string::npos) << refused.status().message();

  std::atomic<int> callbacks{0};
  CoordinatorClient survivor(Client(0));
  survivor.SetAbortCallback([&](EndReason reason, const std::string&) { callbacks += reason == EndReason::kAborted; });
  ASSERT_TRUE(survivor.Register().ok());
  {
    // Rank 1 registers and then its process "dies": the client goes away
    // without a word, so its heartbeats stop.
    CoordinatorClient doomed(Client(1));
    ASSERT_TRUE(doomed.Register().ok());
  }
  // The survivor keeps taking batches until the abort arrives.
  Result<std::optional<WorkerBatch>> next = survivor.NextBatch();
  while (next.ok() && next->has_value()) {
    survivor.Ack((*next)->step, (*next)->micro, 1, 0, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    next = survivor.NextBatch();
  }
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(survivor.end_reason(), EndReason::kAborted);
  EXPECT_EQ(ExitCodeFor(survivor.end_reason()), kExitAborted);
  EXPECT_EQ(callbacks, 1);
  EXPECT_NE(next.status().message().find("rank 1"), std::string::npos) << next.status().message();
  server_thread_.join();
  EXPECT_EQ(exit_code_, kExitAborted);
  EXPECT_EQ(server_->stats().dead_rank, 1);
  EXPECT_EQ(server_->stats().rejects[static_cast<size_t>(Reject::kWrongRunId)], 1u);
}

TEST_F(ServerLoopbackTest, MissingRanksAndAStopEndTheRunWithTheirCodesAndAbortTheWorkers) {
  StartServer(50, 3, 3000, /*register_timeout_ms=*/400);
  CoordinatorClient only(Client(0));
  ASSERT_TRUE(only.Register().ok());
  Result<std::optional<WorkerBatch>> next = only.NextBatch();
  while (next.ok()) next = only.NextBatch();  // rank 1 never comes
  EXPECT_EQ(only.end_reason(), EndReason::kAborted);
  EXPECT_NE(next.status().message().find("rank(s) 1 did not register within 400 ms"), std::string::npos)
      << next.status().message();
  server_thread_.join();
  EXPECT_EQ(exit_code_, kExitRegistration);

  // A second server on the same ledger: the signal handler's flag stops it.
  server_.reset();
  ledger_.reset();
  stop_ = false;
  exit_code_ = -1;
  StartServer(50);
  CoordinatorClient worker(Client(1));
  ASSERT_TRUE(worker.Register().ok());
  ASSERT_TRUE(worker.NextBatch().ok());
  stop_ = true;
  next = worker.NextBatch();
  while (next.ok()) next = worker.NextBatch();
  EXPECT_EQ(worker.end_reason(), EndReason::kAborted);
  EXPECT_NE(next.status().message().find("interrupted"), std::string::npos) << next.status().message();
  server_thread_.join();
  EXPECT_EQ(exit_code_, kExitInterrupted);
  EXPECT_EQ(ledger_->meta().session, 2u);
}

}  // namespace
}  // namespace bert
