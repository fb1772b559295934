// bert-coordinator with bert-fake-worker processes on loopback, on a real
// corpus: exactly the planned samples are dispatched (per the ledger, per
// what the workers received, and byte for byte against `bertctl samples`);
// a worker that dies or hangs is declared dead within the heartbeat timeout
// and the other worker aborts with its distinct exit code; malformed,
// oversized and wrong-run messages are counted and the run completes; a
// killed coordinator restarts from its ledger.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <random>

#include "common/protocol.h"
#include "integration/coordinator/coordinator_run.h"
#include "integration/coordinator/garbage_client.h"

namespace bert::testing {
namespace {

using Clock = std::chrono::steady_clock;
double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// XXH3 of the batch `bertctl samples --format binary` writes for the range.
uint64_t ReferenceChecksum(const std::string& db, uint64_t epoch, uint64_t begin, uint64_t count, TempDir& work) {
  const std::string out = work / "reference.bin";
  CommandResult r = RunCommand(Bertctl() + " samples --db " + db + " --seed " + std::to_string(kSeed) +
                               " --max-seq-len 64 --max-predictions 10 --epoch " + std::to_string(epoch) +
                               " --start " + std::to_string(begin) + " --count " + std::to_string(count) +
                               " --format binary --batch-size " + std::to_string(count) +
                               " --pad-to-multiple 8 --output " + out);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  Result<std::string> bytes = ReadFile(out);
  if (!bytes.ok() || bytes->size() < 8) return 0;
  return XXH3_64bits(bytes->data() + 8, bytes->size() - 8);  // after the stream's size prefix
}

TEST_F(CoordinatorRunTest, ExactlyThePlannedSamplesAreDispatchedOnce) {
  const uint64_t steps = EpochSamples(0) / kGlobalBatch + 6;  // into epoch 1
  auto coordinator = StartCoordinator(WriteConfig(steps), "coordinator.log");
  auto w0 = StartWorker(0, "w0.jsonl", 0);
  auto w1 = StartWorker(1, "w1.jsonl", 0);
  ASSERT_EQ(coordinator->Wait(30000), kExitOk) << ReadLog(*coordinator);
  EXPECT_EQ(w0->Wait(10000), kExitOk) << ReadLog(*w0);
  EXPECT_EQ(w1->Wait(10000), kExitOk) << ReadLog(*w1);
  const std::vector<Json> dump = DumpLedger();
  ExpectExactlyThePlannedSamples(dump, steps);
  EXPECT_EQ(dump[0]["session"], 1);

  // What the workers received is what the ledger says was sent.
  std::map<std::tuple<uint64_t, uint64_t, uint64_t>, std::string> sent, received;
  for (const Json& e : dump) {
    if (e["type"] == "batch") sent[{e["step"], e["rank"], e["micro"]}] = e["checksum"];
  }
  for (const char* file : {"w0.jsonl", "w1.jsonl"}) {
    for (const Json& r : ReadJsonLines(work_ / file)) {
      EXPECT_TRUE(r["indices_ok"].get<bool>()) << r.dump();
      EXPECT_EQ(r["samples"], kMicroBatch);
      ASSERT_TRUE(received.emplace(std::make_tuple(r["step"], r["rank"], r["micro"]), r["checksum"]).second)
          << "received twice: " << r.dump();
    }
  }
  EXPECT_EQ(received, sent);

  // Byte for byte what `bertctl samples` makes of the same ranges: the first
  // batch, the first of epoch 1 and the last.
  std::vector<Json> batches;
  for (const Json& e : dump) {
    if (e["type"] == "batch") batches.push_back(e);
  }
  const auto first_of_epoch1 = std::find_if(batches.begin(), batches.end(), [](const Json& e) { return e["epoch"] == 1; });
  ASSERT_NE(first_of_epoch1, batches.end());
  for (const Json& e : {batches.front(), *first_of_epoch1, batches.back()}) {
    EXPECT_EQ(Hex64(ReferenceChecksum(Db(), e["epoch"], e["begin"], kMicroBatch, work_)), e["checksum"]) << e.dump();
  }
  const Json stats = Stats();
  EXPECT_EQ(stats["rejects_total"], 0);
  EXPECT_EQ(stats["batches_sent"], steps * kWorld * kMicroBatches);
  EXPECT_NE(ReadLog(*coordinator).find("samples/s"), std::string::npos);  // progress lines carry rates
}

class DeadWorkerTest : public CoordinatorRunTest, public ::testing::WithParamInterface<int> {};

// SIGKILL: the process and its connection are gone. SIGSTOP: the process
// hangs with its connection open, so only the missing heartbeats tell.
TEST_P(DeadWorkerTest, ASilentWorkerIsDeclaredDeadAndTheOtherAborts) {
  auto coordinator = StartCoordinator(WriteConfig(100000), "coordinator.log");
  auto w0 = StartWorker(0, "w0.jsonl", 20);
  auto w1 = StartWorker(1, "w1.jsonl", 20);
  ASSERT_TRUE(WaitFor([&] { return CountLines(work_ / "w0.jsonl") >= 5 && CountLines(work_ / "w1.jsonl") >= 5; },
                      20000))
      << ReadLog(*coordinator);
  w1->Signal(GetParam());
  const auto silenced = Clock::now();

  const std::optional<int> worker_exit = w0->Wait(10000);
  const double worker_s = SecondsSince(silenced);
  EXPECT_EQ(worker_exit, kExitAborted) << ReadLog(*w0);
  EXPECT_LT(worker_s, 10.0);
  const std::optional<int> coordinator_exit = coordinator->Wait(5000);
  const double coordinator_s = SecondsSince(silenced);
  ASSERT_EQ(coordinator_exit, kExitAborted) << ReadLog(*coordinator);
  // Declared after the 3 s timeout (its last message came at most 0.5 s
  // before the signal), and not much later.
  EXPECT_GE(coordinator_s, 2.4);
  EXPECT_LE(coordinator_s, 6.0);

  const std::string log = ReadLog(*coordinator);
  EXPECT_NE(log.find("rank 1 (host "), std::string::npos) << log;
  EXPECT_NE(log.find("pid " + std::to_string(w1->pid()) + ", cpu) is dead"), std::string::npos) << log;
  EXPECT_NE(log.find("told the other workers to abort"), std::string::npos) << log;
  EXPECT_EQ(Stats()["dead_rank"], 1);
  EXPECT_EQ(Stats()["exit_code"], kExitAborted);
  const std::string worker_log = ReadLog(*w0);
  EXPECT_NE(worker_log.find("aborted by coordinator"), std::string::npos) << worker_log;
  EXPECT_NE(worker_log.find("rank 1"), std::string::npos) << worker_log;
}

INSTANTIATE_TEST_SUITE_P(Signals, DeadWorkerTest, ::testing::Values(SIGKILL, SIGSTOP),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return info.param == SIGKILL ? "Killed" : "Hung";
                         });

TEST_F(CoordinatorRunTest, BadMessagesAreCountedAndTheRunGoesOn) {
  const uint64_t steps = EpochSamples(0) / kGlobalBatch + 6;
  // One connection per bad message, many open at once (lingering): above
  // the default peer cap (2 x W + 16), which would refuse some of them.
  auto coordinator = StartCoordinator(WriteConfig(steps), "coordinator.log", {"--max-peers", "200"});
  // Slow enough (~1.4 s) that all the garbage arrives while the run is on.
  auto w0 = StartWorker(0, "w0.jsonl", 40);
  auto w1 = StartWorker(1, "w1.jsonl", 40);
  ASSERT_TRUE(WaitFor([&] { return CountLines(work_ / "w0.jsonl") >= 1 && CountLines(work_ / "w1.jsonl") >= 1; },
                      20000));
  Result<std::string> endpoint = ReadFile(EndpointFile());
  ASSERT_TRUE(endpoint.ok());
  // An insider: it holds the run's worker key, so it passes the handshake.
  Result<WorkerKeys> keys = LoadWorkerKeys(KeysDir());
  ASSERT_TRUE(keys.ok()) << keys.status().message();
  GarbageClient garbage(endpoint->substr(0, endpoint->size() - 1), *keys);

  // Random frames; what each should be rejected as is computed here.
  std::map<std::string, uint64_t> expected;
  std::mt19937_64 rng(11);
  for (int i = 0; i < 50; ++i) {
    std::string frame(1 + rng() % 2000, '\0');
    for (char& c : frame) c = static_cast<char>(rng());
    proto::Envelope envelope;
    std::string detail;
    Reject reason = ParseControlFrame(frame, &envelope, &detail);
    if (reason == Reject::kNone) reason = ValidateFromWorker(envelope, &detail);
    ASSERT_NE(reason, Reject::kNone);
    ++expected[RejectName(reason)];
    garbage.SendFrames({frame});
  }
  proto::Envelope full = MakeEnvelope();
  *full.mutable_registration() = ValidRegister(0);
  const std::string bytes = full.SerializeAsString();
  garbage.SendFrames({bytes.substr(0, bytes.size() / 2)});  // truncated protobuf
  ++expected["malformed"];
  garbage.SendFrames({std::string(100 << 10, 'x')});  // over the 64 KiB control frame limit
  ++expected["oversized"];
  garbage.SendFrames({"a", "b"});  // a payload frame from a worker
  ++expected["too_many_frames"];
  proto::Envelope other_version = full;
  other_version.set_protocol_version(99);
  garbage.SendFrames({other_version.SerializeAsString()});
  ++expected["bad_version"];
  proto::Envelope header = MakeEnvelope();
  header.mutable_batch()->set_step(1);
  garbage.SendFrames({header.SerializeAsString()});  // only coordinators send batches
  ++expected["unexpected_type"];
  proto::Envelope ack = MakeEnvelope();
  ack.mutable_ack()->set_step(0);
  garbage.SendFrames({ack.SerializeAsString()});  // not registered
  ++expected["unregistered_peer"];
  // Over ZMQ_MAXMSGSIZE (1 MiB): libzmq drops that connection unread.
  garbage.SendFrames({std::string(4 << 20, 'y')});

  proto::Register wrong_run = ValidRegister(1);
  wrong_run.set_run_id("another-run");
  EXPECT_NE(garbage.Register(wrong_run).find("run_id 'another-run' is not this coordinator's run 'coordtest'"),
            std::string::npos);
  ++expected["wrong_run_id"];
  proto::Register wrong_world = ValidRegister(1);
  wrong_world.set_world_size(3);
  EXPECT_NE(garbage.Register(wrong_world).find("world_size 3 differs"), std::string::npos);
  ++expected["world_size_mismatch"];
  EXPECT_NE(garbage.Register(ValidRegister(0)).find("rank 0 is already held by rank 0"), std::string::npos);
  ++expected["duplicate_rank"];
  proto::Register bad_rank = ValidRegister(7);
  EXPECT_NE(garbage.Register(bad_rank).find("Register.rank: 7 is not below world_size 2"), std::string::npos);
  ++expected["bad_field"];

  ASSERT_EQ(coordinator->Wait(30000), kExitOk) << ReadLog(*coordinator);
  EXPECT_EQ(w0->Wait(10000), kExitOk) << ReadLog(*w0);
  EXPECT_EQ(w1->Wait(10000), kExitOk) << ReadLog(*w1);
  const Json stats = Stats();
  uint64_t total = 0;
  for (const auto& [name, count] : stats["rejects"].items()) {
    EXPECT_EQ(count.get<uint64_t>(), expected[name]) << name << "\n" << ReadLog(*coordinator);
    total += count.get<uint64_t>();
  }
  EXPECT_EQ(stats["rejects_total"], total);
  EXPECT_GE(total, 60u);
  ExpectExactlyThePlannedSamples(DumpLedger(), steps);
  EXPECT_NE(ReadLog(*coordinator).find("dropped " + std::to_string(total) + " bad messages"), std::string::npos);
}

TEST_F(CoordinatorRunTest, ARestartedCoordinatorResumesFromTheLedger) {
  const uint64_t steps = EpochSamples(0) / kGlobalBatch + 6;
  const std::string config = WriteConfig(steps);
  auto first = StartCoordinator(config, "coordinator-1.log");
  auto w0 = StartWorker(0, "w0-gen0.jsonl", 20);
  auto w1 = StartWorker(1, "w1-gen0.jsonl", 20);
  ASSERT_TRUE(WaitFor([&] { return CountLines(work_ / "w0-gen0.jsonl") >= 10; }, 20000));
  first->Signal(SIGKILL);
  ASSERT_EQ(first->Wait(5000), 128 + SIGKILL);
  const auto killed = Clock::now();
  // Both workers notice the silence and exit with "coordinator lost".
  EXPECT_EQ(w0->Wait(10000), kExitCoordinatorLost) << ReadLog(*w0);
  EXPECT_EQ(w1->Wait(10000), kExitCoordinatorLost) << ReadLog(*w1);
  EXPECT_LT(SecondsSince(killed), 8.0);

  const std::vector<Json> before = DumpLedger();
  ASSERT_FALSE(before.empty());
  const uint64_t cursor = before[0]["cursor"];
  EXPECT_EQ(before[0]["session"], 1);
  EXPECT_GT(cursor, 0u);
  EXPECT_LT(cursor, steps);

  fs::remove(EndpointFile());  // the relaunched workers must find the new coordinator's
  auto second = StartCoordinator(config, "coordinator-2.log");
  auto v0 = StartWorker(0, "w0-gen1.jsonl", 0, /*generation=*/1);
  auto v1 = StartWorker(1, "w1-gen1.jsonl", 0, /*generation=*/1);
  ASSERT_EQ(second->Wait(30000), kExitOk) << ReadLog(*second);
  EXPECT_EQ(v0->Wait(10000), kExitOk) << ReadLog(*v0);
  EXPECT_EQ(v1->Wait(10000), kExitOk) << ReadLog(*v1);
  EXPECT_NE(ReadLog(*second).find("session 2: step " + std::to_string(cursor) + " of " + std::to_string(steps)),
            std::string::npos)
      << ReadLog(*second);

  const std::vector<Json> after = DumpLedger();
  ExpectExactlyThePlannedSamples(after, steps);
  EXPECT_EQ(after[0]["session"], 2);
  for (const Json& e : after) {
    if (e["type"] == "batch") {
      EXPECT_EQ(e["session"], e["step"].get<uint64_t>() < cursor ? 1 : 2) << e.dump();
    }
  }
  // The relaunched workers started exactly at the cursor.
  for (const char* file : {"w0-gen1.jsonl", "w1-gen1.jsonl"}) {
    const std::vector<Json> records = ReadJsonLines(work_ / file);
    ASSERT_FALSE(records.empty());
    EXPECT_EQ(records.front()["step"], cursor);
    EXPECT_EQ(records.size(), (steps - cursor) * kMicroBatches);
  }
}

}  // namespace
}  // namespace bert::testing
