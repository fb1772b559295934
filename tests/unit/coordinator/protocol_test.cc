// The wire protocol's checks (common/protocol.h): every message type round
// trips; random garbage, bit-flipped and truncated envelopes and oversized
// frames are rejected with the right reason and never crash; field
// validation names the field; RecvMessage bounds the frames it keeps.
#include "common/protocol.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

namespace bert {
namespace {

proto::Envelope ValidRegister() {
  proto::Envelope envelope = MakeEnvelope();
  proto::Register* r = envelope.mutable_registration();
  r->set_run_id("run-1");
  r->set_rank(1);
  r->set_world_size(4);
  r->set_host("node-07.cluster");
  r->set_device("cuda:1");
  r->set_pid(4242);
  r->set_generation(3);
  r->set_protocol_version(kProtocolVersion);
  return envelope;
}

Reject ParseAndValidateFromWorker(std::string_view bytes, std::string* detail) {
  proto::Envelope envelope;
  Reject reason = ParseControlFrame(bytes, &envelope, detail);
  return reason != Reject::kNone ? reason : ValidateFromWorker(envelope, detail);
}

TEST(ProtocolTest, EveryMessageTypeRoundTripsAndIsAcceptedOnlyFromItsSender) {
  std::vector<proto::Envelope> from_worker(4, MakeEnvelope()), from_coordinator(5, MakeEnvelope());
  from_worker[0] = ValidRegister();
  from_worker[1].mutable_credit()->set_credits(3);
  from_worker[2].mutable_ack()->set_step(12);
  from_worker[3].mutable_heartbeat()->set_step(5);
  proto::RegisterReply* reply = from_coordinator[0].mutable_registration_reply();
  reply->set_ok(true);
  reply->set_global_batch_size(32);
  reply->set_micro_batch_size(8);
  reply->set_micro_batches_per_step(2);
  reply->set_world_size(2);
  reply->set_prefetch(4);
  reply->set_heartbeat_interval_ms(500);
  reply->set_heartbeat_timeout_ms(3000);
  reply->set_total_steps(10);
  proto::BatchHeader* header = from_coordinator[1].mutable_batch();
  header->set_num_micro(2);
  header->set_sample_end(8);
  header->set_payload_bytes(100);
  from_coordinator[2].mutable_abort()->set_reason("rank 1 died");
  from_coordinator[3].mutable_done()->set_final_step(10);
  from_coordinator[4].mutable_heartbeat();
  std::string detail;
  for (const proto::Envelope& sent : from_worker) {
    proto::Envelope received;
    ASSERT_EQ(ParseControlFrame(sent.SerializeAsString(), &received, &detail), Reject::kNone) << detail;
    EXPECT_EQ(received.SerializeAsString(), sent.SerializeAsString());
    EXPECT_EQ(ValidateFromWorker(received, &detail), Reject::kNone) << detail;
    const Reject as_coordinator = ValidateFromCoordinator(received, &detail);
    EXPECT_EQ(as_coordinator, received.has_heartbeat() ? Reject::kNone : Reject::kUnexpectedType)
        << received.body_case();  // heartbeats go both ways
  }
  for (const proto::Envelope& sent : from_coordinator) {
    proto::Envelope received;
    ASSERT_EQ(ParseControlFrame(sent.SerializeAsString(), &received, &detail), Reject::kNone) << detail;
    EXPECT_EQ(ValidateFromCoordinator(received, &detail), Reject::kNone) << detail;
    const Reject as_worker = ValidateFromWorker(received, &detail);
    if (received.has_heartbeat()) {
      EXPECT_EQ(as_worker, Reject::kNone);  // heartbeats go both ways
    } else {
      EXPECT_EQ(as_worker, Reject::kUnexpectedType) << received.body_case();
    }
  }
}

TEST(ProtocolTest, RandomGarbageIsRejectedAndNeverCrashes) {
  std::mt19937_64 rng(1);
  std::map<Reject, int> reasons;
  for (int i = 0; i < 20000; ++i) {
    std::string bytes(rng() % 3000, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    std::string detail;
    const Reject reason = ParseAndValidateFromWorker(bytes, &detail);
    ++reasons[reason];
    if (reason != Reject::kNone) {
      EXPECT_FALSE(detail.empty());
    }
  }
  // Random bytes essentially never form a valid message of this protocol.
  EXPECT_EQ(reasons[Reject::kNone], 0);
  EXPECT_GT(reasons[Reject::kMalformed], 15000);
}

TEST(ProtocolTest, BitFlippedEnvelopesNeverCrash) {
  const std::string valid = ValidRegister().SerializeAsString();
  std::mt19937_64 rng(2);
  int rejected = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string bytes = valid;
    for (int flips = 1 + rng() % 4; flips > 0; --flips) bytes[rng() % bytes.size()] ^= static_cast<char>(1 << (rng() % 8));
    std::string detail;
    rejected += ParseAndValidateFromWorker(bytes, &detail) != Reject::kNone;
  }
  // Some flips land in string contents and stay valid; most do not.
  EXPECT_GT(rejected, 5000);
}

TEST(ProtocolTest, EveryTruncationOfARegisterIsRejected) {
  const std::string valid = ValidRegister().SerializeAsString();
  for (size_t length = 0; length < valid.size(); ++length) {
    std::string detail;
    const Reject reason = ParseAndValidateFromWorker(valid.substr(0, length), &detail);
    EXPECT_NE(reason, Reject::kNone) << "prefix of " << length << " bytes";
    EXPECT_TRUE(reason == Reject::kMalformed || reason == Reject::kUnknownType || reason == Reject::kBadVersion)
        << length << ": " << RejectName(reason);
  }
}

TEST(ProtocolTest, OversizedAndEmptyFramesAreRejectedBeforeParsing) {
  std::string detail;
  proto::Envelope envelope;
  EXPECT_EQ(ParseControlFrame(std::string(kMaxControlFrameBytes + 1, 'x'), &envelope, &detail), Reject::kOversized);
  EXPECT_NE(detail.find("65537 bytes exceeds 65536"), std::string::npos) << detail;
  EXPECT_EQ(ParseControlFrame("", &envelope, &detail), Reject::kMalformed);
  // A Register padded with a long host is still within limits up to the frame size...
  proto::Envelope big = ValidRegister();
  big.mutable_registration()->set_host(std::string(kMaxControlFrameBytes - 100, 'h'));
  EXPECT_EQ(ParseControlFrame(big.SerializeAsString(), &envelope, &detail), Reject::kNone);
  // ...but the host field's own limit catches it.
  EXPECT_EQ(ValidateFromWorker(envelope, &detail), Reject::kBadField);
  EXPECT_NE(detail.find("Register.host"), std::string::npos) << detail;
}

TEST(ProtocolTest, VersionAndTypeAreChecked) {
  std::string detail;
  proto::Envelope envelope = ValidRegister();
  envelope.set_protocol_version(kProtocolVersion + 1);
  proto::Envelope parsed;
  EXPECT_EQ(ParseControlFrame(envelope.SerializeAsString(), &parsed, &detail), Reject::kBadVersion);
  proto::Envelope empty = MakeEnvelope();  // valid protobuf, no body: a type this version does not know
  EXPECT_EQ(ParseControlFrame(empty.SerializeAsString(), &parsed, &detail), Reject::kUnknownType);
  envelope = ValidRegister();
  envelope.mutable_registration()->set_protocol_version(7);
  EXPECT_EQ(ValidateFromWorker(envelope, &detail), Reject::kBadVersion);
  EXPECT_NE(detail.find("Register.protocol_version: 7"), std::string::npos) << detail;
}

TEST(ProtocolTest, FieldValidationNamesTheField) {
  struct Case {
    std::function<void(proto::Envelope*)> mutate;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](proto::Envelope* e) { e->mutable_registration()->set_rank(4); }, "Register.rank: 4 is not below world_size 4"},
      {[](proto::Envelope* e) { e->mutable_registration()->set_world_size(0); }, "Register.world_size"},
      {[](proto::Envelope* e) { e->mutable_registration()->set_world_size(70000); }, "Register.world_size"},
      {[](proto::Envelope* e) { e->mutable_registration()->set_run_id(""); }, "Register.run_id"},
      {[](proto::Envelope* e) { e->mutable_registration()->set_run_id("a\nb"); }, "Register.run_id"},
      {[](proto::Envelope* e) { e->mutable_registration()->set_host("bad\x01host"); }, "Register.host"},
      {[](proto::Envelope* e) { e->mutable_registration()->set_device(std::string(65, 'd')); }, "Register.device"},
      {[](proto::Envelope* e) { e->mutable_credit()->set_credits(0); }, "Credit.credits"},
      {[](proto::Envelope* e) { e->mutable_credit()->set_credits(kMaxCreditsPerMessage + 1); }, "Credit.credits"},
      {[](proto::Envelope* e) { e->mutable_ack()->set_step_time_ms(NAN); }, "Ack.step_time_ms"},
      {[](proto::Envelope* e) { e->mutable_ack()->set_data_wait_ms(-1); }, "Ack.data_wait_ms"},
      {[](proto::Envelope* e) { e->mutable_ack()->set_step_time_ms(INFINITY); }, "Ack.step_time_ms"},
  };
  for (const Case& c : cases) {
    proto::Envelope envelope = ValidRegister();
    c.mutate(&envelope);
    std::string detail;
    EXPECT_EQ(ParseAndValidateFromWorker(envelope.SerializeAsString(), &detail), Reject::kBadField) << c.field;
    EXPECT_NE(detail.find(c.field), std::string::npos) << detail;
  }
  // A NaN loss is a training problem, not a protocol one: accepted.
  proto::Envelope ack = MakeEnvelope();
  ack.mutable_ack()->set_loss(NAN);
  std::string detail;
  EXPECT_EQ(ParseAndValidateFromWorker(ack.SerializeAsString(), &detail), Reject::kNone) << detail;
}

TEST(ProtocolTest, RecvMessageKeepsAtMostMaxFramesAndDrainsTheRest) {
  zmq::context_t context;
  zmq::socket_t out(context, zmq::socket_type::pair), in(context, zmq::socket_type::pair);
  in.bind("inproc://frames");
  out.connect("inproc://frames");
  for (int i = 0; i < 9; ++i) out.send(zmq::buffer(std::to_string(i)), zmq::send_flags::sndmore);
  out.send(zmq::buffer(std::string("9")), zmq::send_flags::none);
  out.send(zmq::buffer(std::string("next")), zmq::send_flags::none);
  Frames frames;
  zmq::pollitem_t items[] = {{in.handle(), 0, ZMQ_POLLIN, 0}};
  zmq::poll(items, 1, std::chrono::milliseconds(1000));
  ASSERT_TRUE(RecvMessage(in, 3, &frames));
  ASSERT_EQ(frames.parts.size(), 3u);
  EXPECT_EQ(frames.dropped_frames, 7u);
  EXPECT_EQ(frames.parts[2].to_string(), "2");
  ASSERT_TRUE(RecvMessage(in, 3, &frames));  // the next message starts cleanly
  ASSERT_EQ(frames.parts.size(), 1u);
  EXPECT_EQ(frames.parts[0].to_string(), "next");
  EXPECT_FALSE(RecvMessage(in, 3, &frames));
}

}  // namespace
}  // namespace bert
