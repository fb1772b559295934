// The authenticated control plane (coordinator/SECURITY.md) with real
// bert-coordinator and bert-fake-worker processes on loopback: clients
// without CURVE, or with a key that is not the run's, are refused in the
// handshake and counted; forged messages from them never reach the server;
// tampered messages are rejected; a flood of garbage does not disturb a run;
// a worker that credits without acking gets at most the unacked cap; the
// run's keys are private and reused on resume; the status HTTP is read-only
// and can require a bearer token.
#include <gtest/gtest.h>
#include <httplib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sys/stat.h>
#include <xxhash.h>

#include <random>
#include <thread>

#include "common/curve_keys.h"
#include "common/protocol.h"
#include "coordinator/client.h"
#include "integration/coordinator/coordinator_run.h"
#include "integration/coordinator/garbage_client.h"

namespace bert::testing {
namespace {

std::string Envelope(const proto::Register& request) {
  proto::Envelope envelope = MakeEnvelope();
  *envelope.mutable_registration() = request;
  return envelope.SerializeAsString();
}

int CountOf(const std::string& text, const std::string& part) {
  int count = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++count;
  return count;
}

unsigned Mode(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 ? info.st_mode & 07777 : 0;
}

class SecurityTest : public CoordinatorRunTest {
 protected:
  // Waits for the coordinator's endpoint and status URL.
  void WaitUntilServing(Subprocess& coordinator) {
    ASSERT_TRUE(WaitFor(
        [&] {
          Result<std::string> endpoint = ReadFile(EndpointFile()), url = ReadFile(RunDir() + "/coordinator/http");
          if (!endpoint.ok() || endpoint->empty() || !url.ok() || url->empty()) return false;
          endpoint_ = endpoint->substr(0, endpoint->size() - 1);
          url_ = url->substr(0, url->size() - 2);  // without "/\n"
          return true;
        },
        30000))
        << ReadLog(coordinator);
  }
  WorkerKeys RunKeys() {
    Result<WorkerKeys> keys = LoadWorkerKeys(KeysDir());
    EXPECT_TRUE(keys.ok()) << keys.status().message();
    return keys.ok() ? *keys : WorkerKeys();
  }
  httplib::Result Http(const std::string& method, const std::string& path, const std::string& token = "") {
    httplib::Client client(url_);
    client.set_connection_timeout(std::chrono::seconds(2));
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    if (method == "POST") return client.Post(path.c_str(), headers, "{}", "application/json");
    if (method == "HEAD") return client.Head(path.c_str(), headers);
    return client.Get(path.c_str(), headers);
  }
  // The live "security" section of /status.
  Json Security(const std::string& token = "") {
    httplib::Result result = Http("GET", "/status", token);
    if (!result || result->status != 200) return Json();
    return Json::parse(result->body)["security"];
  }
  std::unique_ptr<Subprocess> StartFakeWorker(uint32_t rank, const std::string& log, std::vector<std::string> auth) {
    std::vector<std::string> argv = {FakeWorker(), "--endpoint", endpoint_, "--run-id", "coordtest", "--rank",
                                     std::to_string(rank), "--world-size", std::to_string(kWorld),
                                     "--register-timeout-ms", "10000"};
    argv.insert(argv.end(), auth.begin(), auth.end());
    return std::make_unique<Subprocess>(argv, work_ / log);
  }

  std::string endpoint_, url_;
};

TEST_F(SecurityTest, AClientWithoutCurveIsRefusedAndItsForgedMessagesNeverArrive) {
  auto coordinator = StartCoordinator(WriteConfig(20), "coordinator.log");
  WaitUntilServing(*coordinator);
  GarbageClient plain(endpoint_);
  EXPECT_EQ(plain.Register(ValidRegister(0), 1500), "no reply");
  // Valid messages, as a replay of a worker's would be: none reaches the server.
  zmq::socket_t socket = plain.Connect();
  proto::Envelope ack = MakeEnvelope();
  ack.mutable_ack()->set_step(0);
  for (int i = 0; i < 100; ++i) GarbageClient::Send(socket, {ack.SerializeAsString()});
  // A worker started --insecure against it says why it cannot register.
  auto worker = StartFakeWorker(0, "insecure.log", {"--insecure"});
  EXPECT_EQ(worker->Wait(15000), kExitRegistration) << ReadLog(*worker);
  EXPECT_NE(ReadLog(*worker).find("--insecure on the other"), std::string::npos)
      << ReadLog(*worker);
  // Control: the same Register with the run's keys is answered.
  GarbageClient insider(endpoint_, RunKeys());
  proto::Register wrong_run = ValidRegister(0);
  wrong_run.set_run_id("another-run");
  EXPECT_NE(insider.Register(wrong_run).find("is not this coordinator's run"), std::string::npos);
  Json security;
  ASSERT_TRUE(WaitFor([&] { return (security = Security()).value("handshake_failed", 0) >= 3; }, 5000))
      << security.dump() << ReadLog(*coordinator);
  EXPECT_EQ(security["rejects"]["unregistered_peer"], 0) << security.dump();  // the 100 Acks
  EXPECT_EQ(security["rejects_total"], 1) << security.dump();                 // only the insider's
  EXPECT_NE(ReadLog(*coordinator).find("failed the handshake"), std::string::npos);
}

TEST_F(SecurityTest, TheServerKeyWithAnotherClientKeyIsRefusedNamingThePeer) {
  auto coordinator = StartCoordinator(WriteConfig(20), "coordinator.log");
  WaitUntilServing(*coordinator);
  WorkerKeys stranger = RunKeys();  // the right server key ...
  Result<CurveKeyPair> other = NewCurveKeyPair();
  ASSERT_TRUE(other.ok());
  stranger.worker = *other;  // ... and a client key of its own
  GarbageClient client(endpoint_, stranger);
  EXPECT_EQ(client.Register(ValidRegister(0), 1500), "no reply");
  // A worker given another run's worker key fails at once, saying why.
  const std::string other_keys = work_ / "other-keys";
  fs::create_directories(other_keys);
  fs::copy_file(KeysDir() + "/server.pub", other_keys + "/server.pub");
  WriteText(other_keys + "/worker.secret", other->secret_z85 + "\n");
  fs::permissions(other_keys + "/worker.secret", fs::perms::owner_read | fs::perms::owner_write);
  auto worker = StartFakeWorker(0, "stranger.log", {"--keys", other_keys});
  EXPECT_EQ(worker->Wait(15000), kExitRegistration) << ReadLog(*worker);
  EXPECT_NE(ReadLog(*worker).find("refused this worker's credentials (ZAP status 400)"), std::string::npos)
      << ReadLog(*worker);
  Json security;
  ASSERT_TRUE(WaitFor([&] { return (security = Security()).value("refused_key", 0) >= 2; }, 5000))
      << security.dump();
  EXPECT_EQ(security["rejects_total"], 0) << security.dump();
  const std::string log = ReadLog(*coordinator);
  EXPECT_NE(log.find("refused a CURVE client from 127.0.0.1: public key " + KeyTag(other->public_z85)),
            std::string::npos)
      << log;
}

// Bytes that are not ZeroMQ at all (random bytes, an HTTP request, 0xff and
// garbage) from a peer that keeps its connection open: each is counted as a
// failed handshake as soon as libzmq drops the connection (not at the
// handshake timeout). The refusal of a ZeroMQ client without CURVE names
// the peer's address, not the coordinator's. (libzmq drops raw bytes
// before the monitor can read their peer's address; those lines say so.)
TEST_F(SecurityTest, BytesThatAreNotZeroMqAreCountedAtOnceNamingThePeer) {
  auto coordinator = StartCoordinator(WriteConfig(20), "coordinator.log");
  WaitUntilServing(*coordinator);
  const int port = std::stoi(endpoint_.substr(endpoint_.rfind(':') + 1));
  std::mt19937_64 rng(11);
  std::string random_bytes(64, '\0');
  for (char& c : random_bytes) c = static_cast<char>(rng());
  random_bytes[0] = 0x01;  // not 0xff: libzmq takes it for the ZMTP 1.0 that CURVE refuses
  const std::vector<std::string> payloads = {random_bytes, "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                                             "\xff" + std::string(63, 'z')};
  uint64_t counted = 0;
  for (const std::string& payload : payloads) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    ASSERT_EQ(::send(fd, payload.data(), payload.size(), 0), static_cast<ssize_t>(payload.size()));
    Json security;
    // Within 3 s; libzmq's handshake timeout is 30 s.
    EXPECT_TRUE(WaitFor([&] { return (security = Security()).value("handshake_failed", uint64_t{0}) > counted; }, 3000))
        << "not counted: " << ::testing::PrintToString(payload) << "\n" << security.dump() << ReadLog(*coordinator);
    counted = security.value("handshake_failed", counted);
    ::close(fd);
  }
  // A ZeroMQ client without CURVE: refused in the handshake, the peer named
  // (its port, not the coordinator's). The name is read from the socket when
  // the monitor sees the accept; when libzmq has already closed it (a loaded
  // machine, a sanitizer build) the log says the address is unknown, so a
  // few clients are tried and one of them must be named.
  bool named = false;
  for (int attempt = 0; attempt < 5 && !named; ++attempt) {
    GarbageClient plain(endpoint_);
    EXPECT_EQ(plain.Register(ValidRegister(0), 1500), "no reply");
    Json security;
    EXPECT_TRUE(WaitFor([&] { return (security = Security()).value("handshake_failed", uint64_t{0}) > counted; },
                        3000))
        << security.dump();
    counted = security.value("handshake_failed", counted);
    named = WaitFor([&] { return ReadLog(*coordinator).find("a connection from 127.0.0.1:") != std::string::npos; },
                    1000);
  }
  const std::string log = ReadLog(*coordinator);
  EXPECT_EQ(log.find("a connection from " + endpoint_.substr(6)), std::string::npos)
      << "names the coordinator's own address\n" << log;
  EXPECT_TRUE(named) << "no refused client was named by its address\n" << log;
  EXPECT_EQ(CountOf(ReadLog(*coordinator), "closed before completing a ZeroMQ handshake"), 3) << ReadLog(*coordinator);
}

// A worker that holds the run's worker key but another server key (it
// would talk to an impostor) gets no session, and says why.
TEST_F(SecurityTest, AWorkerWithAnotherServerKeyFailsTheHandshakeSayingSo) {
  auto coordinator = StartCoordinator(WriteConfig(20), "coordinator.log");
  WaitUntilServing(*coordinator);
  Result<CurveKeyPair> impostor = NewCurveKeyPair();
  ASSERT_TRUE(impostor.ok());
  const std::string keys = work_ / "impostor-keys";
  fs::create_directories(keys);
  WriteText(keys + "/server.pub", impostor->public_z85 + "\n");
  fs::copy_file(KeysDir() + "/worker.secret", keys + "/worker.secret");
  auto worker = StartFakeWorker(0, "impostor.log", {"--keys", keys});
  EXPECT_EQ(worker->Wait(15000), kExitRegistration) << ReadLog(*worker);
  EXPECT_NE(ReadLog(*worker).find("handshake failed"), std::string::npos) << ReadLog(*worker);
  Json security;
  EXPECT_TRUE(WaitFor([&] { return (security = Security()).value("handshake_failed", 0) >= 1; }, 5000))
      << security.dump();
  EXPECT_EQ(security["rejects_total"], 0) << security.dump();
}

TEST_F(SecurityTest, ATamperedRegisterIsRejectedAndCounted) {
  auto coordinator = StartCoordinator(WriteConfig(20), "coordinator.log");
  WaitUntilServing(*coordinator);
  // An insider's Register with one byte of the run id altered in transit.
  std::string bytes = Envelope(ValidRegister(0));
  const size_t at = bytes.find("coordtest");
  ASSERT_NE(at, std::string::npos);
  bytes[at + 4] = '\x01';
  GarbageClient insider(endpoint_, RunKeys());
  zmq::socket_t socket = insider.Connect();
  GarbageClient::Send(socket, {bytes});
  zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}};
  ASSERT_EQ(zmq::poll(items, 1, std::chrono::milliseconds(5000)), 1);
  zmq::message_t reply;
  ASSERT_TRUE(socket.recv(reply));
  proto::Envelope parsed;
  ASSERT_TRUE(parsed.ParseFromArray(reply.data(), static_cast<int>(reply.size())));
  EXPECT_FALSE(parsed.registration_reply().ok());
  EXPECT_NE(parsed.registration_reply().reason().find("Register.run_id"), std::string::npos);
  // Truncated in transit: not a protocol message at all.
  GarbageClient::Send(socket, {Envelope(ValidRegister(1)).substr(0, 7)});
  Json security;
  ASSERT_TRUE(WaitFor([&] { return (security = Security()).value("rejects_total", 0) >= 2; }, 5000))
      << security.dump();
  EXPECT_EQ(security["rejects"]["bad_field"], 1) << security.dump();
  EXPECT_EQ(security["rejects"]["malformed"], 1) << security.dump();
}

// The worker's side: a batch whose payload was altered after the header
// was made fails the checksum and ends the worker with a protocol error.
TEST(WorkerSecurityTest, ATamperedBatchPayloadFailsTheChecksum) {
  Result<CurveKeyPair> server = NewCurveKeyPair(), worker = NewCurveKeyPair();
  ASSERT_TRUE(server.ok() && worker.ok());
  zmq::context_t context;
  zmq::socket_t router(context, zmq::socket_type::router);
  SetCurveServer(router, ServerKeys{*server, worker->public_z85});
  router.bind("tcp://127.0.0.1:*");
  ClientOptions options;
  options.endpoint = router.get(zmq::sockopt::last_endpoint);
  options.run_id = "coordtest";
  options.register_timeout_ms = 5000;
  options.keys = WorkerKeys{server->public_z85, *worker};
  CoordinatorClient client(options);
  std::thread fake_coordinator([&] {
    Frames frames;
    zmq::pollitem_t items[] = {{router.handle(), 0, ZMQ_POLLIN, 0}};
    if (zmq::poll(items, 1, std::chrono::milliseconds(5000)) != 1 || !RecvMessage(router, 3, &frames)) return;
    const std::string identity(static_cast<const char*>(frames.parts[0].data()), frames.parts[0].size());
    proto::Envelope reply = MakeEnvelope();
    proto::RegisterReply* r = reply.mutable_registration_reply();
    r->set_ok(true);
    r->set_run_id("coordtest");
    r->set_total_steps(1);
    r->set_global_batch_size(1);
    r->set_micro_batch_size(1);
    r->set_micro_batches_per_step(1);
    r->set_world_size(1);
    r->set_prefetch(1);
    r->set_heartbeat_interval_ms(500);
    r->set_heartbeat_timeout_ms(3000);
    SendEnvelope(router, identity, reply);
    std::string payload(256, 'p');
    proto::Envelope header = MakeEnvelope();
    header.mutable_batch()->set_num_micro(1);
    header.mutable_batch()->set_sample_end(1);
    header.mutable_batch()->set_payload_bytes(payload.size());
    header.mutable_batch()->set_checksum(XXH3_64bits(payload.data(), payload.size()));
    payload[100] ^= 1;  // one bit flipped in transit
    SendEnvelope(router, identity, header, &payload);
  });
  Result<RunInfo> run = client.Register();
  fake_coordinator.join();
  ASSERT_TRUE(run.ok()) << run.status().message();
  Result<std::optional<WorkerBatch>> batch = client.NextBatch();
  ASSERT_FALSE(batch.ok());
  EXPECT_EQ(client.end_reason(), EndReason::kProtocolError);
  EXPECT_NE(batch.status().message().find("payload checksum mismatch"), std::string::npos)
      << batch.status().message();
}

// 10k malformed messages from an insider and handshakes from outsiders
// while two workers run: the run completes with exactly the planned samples
// and every piece of garbage is counted in the status.
TEST_F(SecurityTest, AFloodOfGarbageDoesNotDisturbTheRun) {
  constexpr int kInsiderMessages = 10000, kOutsiderConnections = 40, kRawConnections = 20;
  const uint64_t steps = EpochSamples(0) / kGlobalBatch + 6;
  auto coordinator = StartCoordinator(WriteConfig(steps), "coordinator.log", {"--http-linger-ms", "0"});
  WaitUntilServing(*coordinator);
  auto w0 = StartWorker(0, "w0.jsonl", 60);
  auto w1 = StartWorker(1, "w1.jsonl", 60);
  ASSERT_TRUE(WaitFor([&] { return CountLines(work_ / "w0.jsonl") >= 1 && CountLines(work_ / "w1.jsonl") >= 1; },
                      20000));
  // The insider connects first: the outsiders' connections may fill the
  // peer cap (2 x W + 16) while they linger.
  GarbageClient insider(endpoint_, RunKeys());
  zmq::socket_t socket = insider.Connect();
  GarbageClient::Send(socket, {Envelope(ValidRegister(0))});  // answered: rank 0 is held
  zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}};
  ASSERT_EQ(zmq::poll(items, 1, std::chrono::milliseconds(5000)), 1);
  std::thread outsiders([&] {
    GarbageClient plain(endpoint_);
    for (int i = 0; i < kOutsiderConnections; ++i) plain.SendFrames({"forged", "frames"});
    // Bytes that are not ZeroMQ at all, straight to the port.
    const int port = std::stoi(endpoint_.substr(endpoint_.rfind(':') + 1));
    for (int i = 0; i < kRawConnections; ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_port = htons(static_cast<uint16_t>(port));
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
        const std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n" + std::string(100, '\xff');
        (void)::send(fd, junk.data(), junk.size(), 0);
      }
      ::close(fd);
    }
  });
  std::mt19937_64 rng(5);
  for (int i = 1; i < kInsiderMessages; ++i) {  // the Register was the first
    std::string frame(1 + rng() % 64, '\0');
    for (char& c : frame) c = static_cast<char>(rng());
    GarbageClient::Send(socket, {frame});
  }
  outsiders.join();
  Json security;
  EXPECT_TRUE(WaitFor([&] { return (security = Security()).value("rejects_total", 0) >= kInsiderMessages; }, 10000))
      << security.dump();
  ASSERT_EQ(coordinator->Wait(60000), kExitOk) << ReadLog(*coordinator);
  EXPECT_EQ(w0->Wait(10000), kExitOk) << ReadLog(*w0);
  EXPECT_EQ(w1->Wait(10000), kExitOk) << ReadLog(*w1);
  ExpectExactlyThePlannedSamples(DumpLedger(), steps);
  const Json stats = Stats();
  EXPECT_EQ(stats["rejects_total"], kInsiderMessages) << stats.dump();
  // The final status (status.json) counts the garbage too.
  Result<std::string> status_text = ReadFile(RunDir() + "/coordinator/status.json");
  ASSERT_TRUE(status_text.ok());
  const Json final_security = Json::parse(*status_text)["security"];
  EXPECT_EQ(final_security["rejects_total"], kInsiderMessages) << final_security.dump();
  // Every outsider: the ZeroMQ ones without CURVE and the raw bytes.
  EXPECT_GE(final_security["handshake_failed"].get<uint64_t>(), uint64_t{kOutsiderConnections + kRawConnections})
      << final_security.dump();
  EXPECT_GE(final_security["connections_accepted"].get<uint64_t>(),
            uint64_t{kOutsiderConnections + kRawConnections + 3});
}

// A worker that takes batches (credits) without acknowledging them gets at
// most --max-unacked; credits beyond what it was sent are counted.
TEST_F(SecurityTest, AWorkerThatNeverAcksGetsAtMostTheUnackedCap) {
  auto coordinator = StartCoordinator(WriteConfig(100), "coordinator.log", {"--max-unacked", "6"});
  WaitUntilServing(*coordinator);
  GarbageClient insider(endpoint_, RunKeys());
  zmq::socket_t socket = insider.Connect();
  GarbageClient::Send(socket, {Envelope(ValidRegister(0))});
  proto::Envelope credit = MakeEnvelope();
  credit.mutable_credit()->set_credits(1);
  int batches = 0;
  bool registered = false;
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(2000);
  while (std::chrono::steady_clock::now() < until) {
    zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 1, std::chrono::milliseconds(50));
    Frames frames;
    while (RecvMessage(socket, 2, &frames)) {
      proto::Envelope envelope;
      ASSERT_TRUE(envelope.ParseFromArray(frames.parts[0].data(), static_cast<int>(frames.parts[0].size())));
      if (envelope.has_registration_reply()) registered = envelope.registration_reply().ok();
      if (!envelope.has_batch()) continue;
      ++batches;
      GarbageClient::Send(socket, {credit.SerializeAsString()});  // takes it, never acks
    }
  }
  ASSERT_TRUE(registered);
  EXPECT_EQ(batches, 6);
  credit.mutable_credit()->set_credits(100);
  GarbageClient::Send(socket, {credit.SerializeAsString()});
  Json security;
  EXPECT_TRUE(WaitFor([&] { return (security = Security())["rejects"].value("excess_credit", 0) == 1; }, 3000))
      << security.dump();
}

TEST_F(SecurityTest, KeyFilesArePrivateAndReusedOnResume) {
  const std::string config = WriteConfig(20);
  auto first = StartCoordinator(config, "coordinator-1.log");
  WaitUntilServing(*first);
  std::map<std::string, std::string> keys;
  for (const char* name : {"server.secret", "server.pub", "worker.secret", "worker.pub"}) {
    EXPECT_EQ(Mode(KeysDir() + "/" + name), 0600u) << name;
    Result<std::string> text = ReadFile(KeysDir() + "/" + name);
    ASSERT_TRUE(text.ok()) << name;
    EXPECT_EQ(text->size(), 41u) << name;  // Z85 + newline
    keys[name] = *text;
  }
  EXPECT_EQ(Mode(KeysDir()), 0700u);
  EXPECT_FALSE(fs::exists(KeysDir() + "/server.secret.tmp"));
  EXPECT_NE(ReadLog(*first).find("generated the run's keys"), std::string::npos);
  first->Signal(SIGTERM);
  EXPECT_EQ(first->Wait(10000), kExitInterrupted);

  fs::remove(EndpointFile());
  auto second = StartCoordinator(config, "coordinator-2.log");
  WaitUntilServing(*second);
  EXPECT_NE(ReadLog(*second).find("reusing the run's keys"), std::string::npos) << ReadLog(*second);
  for (const auto& [name, text] : keys) EXPECT_EQ(ReadFile(KeysDir() + "/" + name).value(), text) << name;
  // A worker with those keys still registers with the resumed coordinator.
  GarbageClient insider(endpoint_, RunKeys());
  proto::Register wrong_world = ValidRegister(0);
  wrong_world.set_world_size(3);
  EXPECT_NE(insider.Register(wrong_world).find("world_size 3 differs"), std::string::npos);
  second->Signal(SIGTERM);
  EXPECT_EQ(second->Wait(10000), kExitInterrupted);

  // A secret others can read is refused, naming the file, before the run
  // is touched: the ledger keeps its sessions, and no status is written.
  const std::vector<Json> before = DumpLedger();
  ASSERT_FALSE(before.empty());
  fs::remove(RunDir() + "/coordinator/status.json");
  fs::permissions(KeysDir() + "/worker.secret", fs::perms::group_read | fs::perms::others_read, fs::perm_options::add);
  auto third = StartCoordinator(config, "coordinator-3.log");
  EXPECT_EQ(third->Wait(30000), kExitUsage);
  EXPECT_NE(ReadLog(*third).find("keys/worker.secret: mode 0644"), std::string::npos) << ReadLog(*third);
  const std::vector<Json> after = DumpLedger();
  ASSERT_FALSE(after.empty());
  EXPECT_EQ(after[0].dump(), before[0].dump()) << "the refused start changed the ledger's meta (its session)";
  EXPECT_FALSE(fs::exists(RunDir() + "/coordinator/status.json"));
}

// Without authentication only when asked for, on both sides, with a warning.
TEST_F(SecurityTest, InsecureModeIsExplicitOnBothSidesAndWarns) {
  auto coordinator = StartCoordinator(WriteConfig(3), "coordinator.log", {"--insecure"});
  WaitUntilServing(*coordinator);
  auto unsure = StartFakeWorker(0, "unsure.log", {});
  EXPECT_EQ(unsure->Wait(10000), kExitUsage);
  EXPECT_NE(ReadLog(*unsure).find("exactly one of --keys DIR and --insecure"), std::string::npos);
  auto w0 = StartFakeWorker(0, "w0.log", {"--insecure"});
  auto w1 = StartFakeWorker(1, "w1.log", {"--insecure"});
  ASSERT_EQ(coordinator->Wait(30000), kExitOk) << ReadLog(*coordinator);
  EXPECT_EQ(w0->Wait(10000), kExitOk) << ReadLog(*w0);
  EXPECT_EQ(w1->Wait(10000), kExitOk) << ReadLog(*w1);
  EXPECT_NE(ReadLog(*coordinator).find("--insecure: workers are not authenticated"), std::string::npos);
  EXPECT_FALSE(fs::exists(KeysDir()));
  EXPECT_EQ(Stats()["security"]["handshakes_admitted"], 2) << Stats().dump();
}

TEST_F(SecurityTest, TheStatusHttpIsReadOnlyAndRequiresTheTokenWhenSet) {
  const std::string token = "s3cret-token-0123456789";
  WriteText(work_ / "token", token + "\n");
  auto coordinator = StartCoordinator(WriteConfig(20), "coordinator.log", {"--http-token-file", work_ / "token"});
  WaitUntilServing(*coordinator);
  for (const char* path : {"/status", "/metrics", "/history", "/"}) {
    httplib::Result none = Http("GET", path), wrong = Http("GET", path, token + "x"), right = Http("GET", path, token);
    ASSERT_TRUE(none && wrong && right) << path;
    EXPECT_EQ(none->status, 401) << path;
    EXPECT_EQ(none->get_header_value("WWW-Authenticate").rfind("Bearer", 0), 0u) << path;
    EXPECT_EQ(wrong->status, 401) << path;
    EXPECT_EQ(right->status, 200) << path;
    // The query form, for a browser opening the dashboard.
    httplib::Result query = Http("GET", std::string(path) + "?token=" + token);
    httplib::Result wrong_query = Http("GET", std::string(path) + "?token=" + token + "x");
    ASSERT_TRUE(query && wrong_query) << path;
    EXPECT_EQ(query->status, 200) << path;
    EXPECT_EQ(wrong_query->status, 401) << path;
  }
  httplib::Result post = Http("POST", "/status", token), head = Http("HEAD", "/status", token);
  ASSERT_TRUE(post && head);
  EXPECT_EQ(post->status, 405);
  EXPECT_EQ(post->get_header_value("Allow"), "GET, HEAD");
  EXPECT_EQ(head->status, 200);
  // A browser opens the dashboard with the token in its address; the page's
  // own requests carry it (the DOM after its scripts ran shows the status).
  CommandResult page = RunCommand("chromium --headless --no-sandbox --disable-gpu --user-data-dir=" +
                                  (work_ / "chromium") + " --virtual-time-budget=3000 --dump-dom '" + url_ +
                                  "/?token=" + token + "' 2>" + (work_ / "chromium.log"));
  ASSERT_EQ(page.exit_code, 0) << page.output;
  EXPECT_NE(page.output.find("data-step=\"0\""), std::string::npos) << page.output;
  EXPECT_NE(page.output.find("<div id=\"banner\"></div>"), std::string::npos) << "no error shown: " << page.output;
  // bertctl status passes the token from a file.
  CommandResult without = RunCommand(Bertctl() + " status " + url_ + "/ --json");
  EXPECT_NE(without.output.find("401"), std::string::npos) << without.output;
  CommandResult with = RunCommand(Bertctl() + " status " + url_ + "/ --json --token-file " + (work_ / "token"));
  EXPECT_EQ(with.exit_code, 0) << with.output;
  EXPECT_NE(with.output.find("\"coordinator_reachable\":true"), std::string::npos) << with.output;

  // A token too short to be one is refused at startup, naming the file.
  coordinator->Signal(SIGTERM);
  coordinator->Wait(10000);
  WriteText(work_ / "short", "abc\n");
  auto refused = StartCoordinator(WriteConfig(20), "short.log", {"--http-token-file", work_ / "short"});
  EXPECT_EQ(refused->Wait(30000), kExitUsage);
  EXPECT_NE(ReadLog(*refused).find(work_ / "short" + ": line 1"), std::string::npos) << ReadLog(*refused);
}

}  // namespace
}  // namespace bert::testing
