#include "common/protocol.h"
#include "common/worker_activity.h"

#include <google/protobuf/stubs/logging.h>
#include <glog/logging.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>

namespace bert {
namespace {

// protobuf logs an ERROR for every string field with invalid UTF-8 it
// parses; a peer spewing garbage would flood the log with them. Our own
// reject counter reports those messages (rate-limited), so protobuf's
// non-fatal messages go to verbose logging only. Fatal ones still abort.
void QuietProtobufLog(google::protobuf::LogLevel level, const char* filename, int line, const std::string& message) {
  if (level == google::protobuf::LOGLEVEL_FATAL) {
    LOG(FATAL) << "protobuf " << filename << ":" << line << ": " << message;
  }
  VLOG(1) << "protobuf " << filename << ":" << line << ": " << message;
}

void InstallProtobufLogFilter() {
  static std::once_flag once;
  std::call_once(once, [] { google::protobuf::SetLogHandler(&QuietProtobufLog); });
}

Reject Fail(Reject reason, std::string* detail, std::string what) {
  *detail = std::move(what);
  return reason;
}

bool NonNegativeFinite(float value) { return std::isfinite(value) && value >= 0; }

Reject ValidateRegister(const proto::Register& r, std::string* detail) {
  if (r.protocol_version() != kProtocolVersion) {
    return Fail(Reject::kBadVersion, detail,
                "Register.protocol_version: " + std::to_string(r.protocol_version()) + ", this coordinator speaks " +
                    std::to_string(kProtocolVersion));
  }
  if (r.run_id().empty() || !IsPrintableField(r.run_id(), kMaxRunIdBytes)) {
    return Fail(Reject::kBadField, detail, "Register.run_id: must be 1-128 printable ASCII characters");
  }
  if (r.world_size() < 1 || r.world_size() > kMaxWorldSize) {
    return Fail(Reject::kBadField, detail,
                "Register.world_size: must be in [1, 65536], got " + std::to_string(r.world_size()));
  }
  if (r.rank() >= r.world_size()) {
    return Fail(Reject::kBadField, detail,
                "Register.rank: " + std::to_string(r.rank()) + " is not below world_size " +
                    std::to_string(r.world_size()));
  }
  if (!IsPrintableField(r.host(), kMaxHostBytes)) {
    return Fail(Reject::kBadField, detail, "Register.host: must be at most 255 printable ASCII characters");
  }
  if (!IsPrintableField(r.device(), kMaxDeviceBytes)) {
    return Fail(Reject::kBadField, detail, "Register.device: must be at most 64 printable ASCII characters");
  }
  return Reject::kNone;
}

bool Fraction(float value) { return std::isfinite(value) && value >= 0 && value <= 1; }
bool NonNegativeFinite(double value) { return std::isfinite(value) && value >= 0; }

Reject ValidateFigures(const proto::StepFigures& f, std::string* detail) {
  // Counts far beyond any real step are garbage (and would overflow sums).
  constexpr uint64_t kMaxCount = uint64_t{1} << 48;
  if (!Fraction(f.mlm_accuracy())) return Fail(Reject::kBadField, detail, "Ack.figures.mlm_accuracy: not in [0, 1]");
  if (!Fraction(f.nsp_accuracy())) return Fail(Reject::kBadField, detail, "Ack.figures.nsp_accuracy: not in [0, 1]");
  if (!NonNegativeFinite(f.lr())) return Fail(Reject::kBadField, detail, "Ack.figures.lr: must be finite and >= 0");
  if (f.grad_norm() < 0) return Fail(Reject::kBadField, detail, "Ack.figures.grad_norm: negative");
  if (f.samples() > kMaxCount || f.tokens() > kMaxCount || f.masked() > kMaxCount) {
    return Fail(Reject::kBadField, detail, "Ack.figures: samples, tokens or masked over 2^48");
  }
  if (!NonNegativeFinite(f.model_flops())) {
    return Fail(Reject::kBadField, detail, "Ack.figures.model_flops: must be finite and >= 0");
  }
  if (!NonNegativeFinite(f.peak_flops())) {
    return Fail(Reject::kBadField, detail, "Ack.figures.peak_flops: must be finite and >= 0");
  }
  if (!NonNegativeFinite(f.compute_ms())) {
    return Fail(Reject::kBadField, detail, "Ack.figures.compute_ms: must be finite and >= 0");
  }
  if (!NonNegativeFinite(f.data_wait_ms())) {
    return Fail(Reject::kBadField, detail, "Ack.figures.data_wait_ms: must be finite and >= 0");
  }
  return Reject::kNone;
}

Reject ValidateAck(const proto::Ack& ack, std::string* detail) {
  if (!NonNegativeFinite(ack.step_time_ms())) {
    return Fail(Reject::kBadField, detail, "Ack.step_time_ms: must be finite and >= 0");
  }
  if (!NonNegativeFinite(ack.data_wait_ms())) {
    return Fail(Reject::kBadField, detail, "Ack.data_wait_ms: must be finite and >= 0");
  }
  return ack.has_figures() ? ValidateFigures(ack.figures(), detail) : Reject::kNone;
}

Reject ValidateWorkerHeartbeat(const proto::Heartbeat& heartbeat, std::string* detail) {
  if (heartbeat.phase() >= static_cast<uint32_t>(WorkerPhase::kCount)) {
    return Fail(Reject::kBadField, detail, "Heartbeat.phase: " + std::to_string(heartbeat.phase()) + " is no phase");
  }
  if (heartbeat.phase_ms() >= uint64_t{1} << 40) {
    return Fail(Reject::kBadField, detail, "Heartbeat.phase_ms: 2^40 or more");
  }
  if (heartbeat.rss_bytes() >= uint64_t{1} << 50) {
    return Fail(Reject::kBadField, detail, "Heartbeat.rss_bytes: 2^50 or more");
  }
  return Reject::kNone;
}

Reject ValidateReply(const proto::RegisterReply& r, std::string* detail) {
  if (r.reason().size() > kMaxReasonBytes) return Fail(Reject::kBadField, detail, "RegisterReply.reason: too long");
  if (r.checkpoint().size() > 64) return Fail(Reject::kBadField, detail, "RegisterReply.checkpoint: too long");
  if (!r.ok()) return Reject::kNone;
  if (r.global_batch_size() < 1 || r.micro_batch_size() < 1 || r.micro_batches_per_step() < 1 ||
      r.world_size() < 1 || r.prefetch() < 1) {
    return Fail(Reject::kBadField, detail, "RegisterReply: batch geometry and prefetch must be >= 1");
  }
  if (r.heartbeat_interval_ms() < 1 || r.heartbeat_timeout_ms() <= r.heartbeat_interval_ms()) {
    return Fail(Reject::kBadField, detail, "RegisterReply: heartbeat timeout must exceed the interval");
  }
  if (r.start_step() > r.total_steps()) {
    return Fail(Reject::kBadField, detail, "RegisterReply.start_step: beyond total_steps");
  }
  return Reject::kNone;
}

Reject ValidateBatchHeader(const proto::BatchHeader& b, std::string* detail) {
  if (b.micro() >= b.num_micro()) return Fail(Reject::kBadField, detail, "BatchHeader.micro: not below num_micro");
  if (b.sample_end() <= b.sample_begin()) {
    return Fail(Reject::kBadField, detail, "BatchHeader: empty sample range");
  }
  if (b.payload_bytes() == 0) return Fail(Reject::kBadField, detail, "BatchHeader.payload_bytes: 0");
  return Reject::kNone;
}

}  // namespace

const char* RejectName(Reject reason) {
  switch (reason) {
    case Reject::kNone: return "none";
    case Reject::kTooManyFrames: return "too_many_frames";
    case Reject::kOversized: return "oversized";
    case Reject::kMalformed: return "malformed";
    case Reject::kBadVersion: return "bad_version";
    case Reject::kUnknownType: return "unknown_type";
    case Reject::kUnexpectedType: return "unexpected_type";
    case Reject::kBadField: return "bad_field";
    case Reject::kWrongRunId: return "wrong_run_id";
    case Reject::kWorldSizeMismatch: return "world_size_mismatch";
    case Reject::kDuplicateRank: return "duplicate_rank";
    case Reject::kStaleGeneration: return "stale_generation";
    case Reject::kUnregisteredPeer: return "unregistered_peer";
    case Reject::kUnexpectedAck: return "unexpected_ack";
    case Reject::kExcessCredit: return "excess_credit";
    case Reject::kCount: break;
  }
  return "unknown";
}

bool RecvMessage(zmq::socket_t& socket, size_t max_frames, Frames* out) {
  out->parts.clear();
  out->dropped_frames = 0;
  zmq::message_t part;
  if (!socket.recv(part, zmq::recv_flags::dontwait)) return false;
  // The remaining parts of a multipart message are already queued: ZeroMQ
  // delivers a message whole or not at all, so these reads do not block.
  while (true) {
    const bool more = part.more();
    if (out->parts.size() < max_frames) {
      out->parts.push_back(std::move(part));
    } else {
      ++out->dropped_frames;
    }
    if (!more) return true;
    part = zmq::message_t();
    if (!socket.recv(part, zmq::recv_flags::none)) return true;
  }
}

Reject ParseControlFrame(std::string_view frame, proto::Envelope* envelope, std::string* detail) {
  InstallProtobufLogFilter();
  if (frame.size() > kMaxControlFrameBytes) {
    return Fail(Reject::kOversized, detail,
                "control frame of " + std::to_string(frame.size()) + " bytes exceeds " +
                    std::to_string(kMaxControlFrameBytes));
  }
  if (frame.empty() || !envelope->ParseFromArray(frame.data(), static_cast<int>(frame.size()))) {
    return Fail(Reject::kMalformed, detail,
                "control frame of " + std::to_string(frame.size()) + " bytes is not a protocol Envelope");
  }
  if (envelope->protocol_version() != kProtocolVersion) {
    return Fail(Reject::kBadVersion, detail,
                "protocol_version " + std::to_string(envelope->protocol_version()) + ", expected " +
                    std::to_string(kProtocolVersion));
  }
  if (envelope->body_case() == proto::Envelope::BODY_NOT_SET) {
    return Fail(Reject::kUnknownType, detail, "Envelope carries no known message type");
  }
  return Reject::kNone;
}

namespace {

bool IsHex16(const std::string& text) {
  return text.size() == 16 && text.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// A shard file name: "shard-RRRRR-of-WWWWW.bin", no path.
bool IsShardFileName(const std::string& name) {
  return name.size() <= 64 && name.rfind("shard-", 0) == 0 && name.size() > 10 &&
         name.compare(name.size() - 4, 4, ".bin") == 0 &&
         name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-.") == std::string::npos &&
         name.find("..") == std::string::npos;
}

Reject ValidateShardDurable(const proto::ShardDurable& m, std::string* detail) {
  if (m.step() < 1) return Fail(Reject::kBadField, detail, "ShardDurable.step: must be >= 1");
  if (!IsShardFileName(m.file())) {
    return Fail(Reject::kBadField, detail, "ShardDurable.file: not a shard file name (shard-RRRRR-of-WWWWW.bin)");
  }
  if (m.end() < m.begin()) return Fail(Reject::kBadField, detail, "ShardDurable.end: below begin");
  if (!IsHex16(m.xxh3())) return Fail(Reject::kBadField, detail, "ShardDurable.xxh3: must be 16 lower-case hex digits");
  if (m.rank_state_json().size() > kMaxRankStateBytes) {
    return Fail(Reject::kBadField, detail, "ShardDurable.rank_state_json: over 4096 bytes");
  }
  return Reject::kNone;
}

}  // namespace

Reject ValidateFromWorker(const proto::Envelope& envelope, std::string* detail) {
  switch (envelope.body_case()) {
    case proto::Envelope::kRegistration: return ValidateRegister(envelope.registration(), detail);
    case proto::Envelope::kCredit:
      if (envelope.credit().credits() < 1 || envelope.credit().credits() > kMaxCreditsPerMessage) {
        return Fail(Reject::kBadField, detail,
                    "Credit.credits: must be in [1, 1024], got " + std::to_string(envelope.credit().credits()));
      }
      return Reject::kNone;
    case proto::Envelope::kAck: return ValidateAck(envelope.ack(), detail);
    case proto::Envelope::kShardDurable: return ValidateShardDurable(envelope.shard_durable(), detail);
    case proto::Envelope::kHeartbeat: return ValidateWorkerHeartbeat(envelope.heartbeat(), detail);
    case proto::Envelope::BODY_NOT_SET: return Fail(Reject::kUnknownType, detail, "no message type");
    default:
      return Fail(Reject::kUnexpectedType, detail,
                  "message type " + std::to_string(envelope.body_case()) + " is not sent by workers");
  }
}

Reject ValidateFromCoordinator(const proto::Envelope& envelope, std::string* detail) {
  switch (envelope.body_case()) {
    case proto::Envelope::kRegistrationReply: return ValidateReply(envelope.registration_reply(), detail);
    case proto::Envelope::kBatch: return ValidateBatchHeader(envelope.batch(), detail);
    case proto::Envelope::kAbort:
      if (envelope.abort().reason().size() > kMaxReasonBytes) {
        return Fail(Reject::kBadField, detail, "Abort.reason: too long");
      }
      return Reject::kNone;
    case proto::Envelope::kCheckpointCommitted:
      if (envelope.checkpoint_committed().name().size() > 64) {
        return Fail(Reject::kBadField, detail, "CheckpointCommitted.name: too long");
      }
      return Reject::kNone;
    case proto::Envelope::kHeartbeat:
    case proto::Envelope::kCheckpointRequest:
    case proto::Envelope::kDone: return Reject::kNone;
    case proto::Envelope::BODY_NOT_SET: return Fail(Reject::kUnknownType, detail, "no message type");
    default:
      return Fail(Reject::kUnexpectedType, detail,
                  "message type " + std::to_string(envelope.body_case()) + " is not sent by coordinators");
  }
}

bool IsRetryableExit(int code) {
  switch (code) {
    case kExitOk:
    case kExitUsage:
    case kExitBadData:
    case kExitInterrupted:
    case kExitDiverged:
    case kExitPreempted: return false;  // stopped on purpose; resumed by whoever preempted it
    default: return true;  // kExitError, kExitRollback, kExitAborted, kExitCoordinatorLost, kExitRegistration, signals
  }
}

proto::Envelope MakeEnvelope() {
  proto::Envelope envelope;
  envelope.set_protocol_version(kProtocolVersion);
  return envelope;
}

bool SendEnvelope(zmq::socket_t& socket, const std::string& identity, const proto::Envelope& envelope,
                  std::string* payload) {
  try {
    if (!identity.empty()) {
      if (!socket.send(zmq::buffer(identity), zmq::send_flags::dontwait | zmq::send_flags::sndmore)) return false;
    }
    const std::string bytes = envelope.SerializeAsString();
    const auto flags = payload ? zmq::send_flags::dontwait | zmq::send_flags::sndmore : zmq::send_flags::dontwait;
    if (!socket.send(zmq::buffer(bytes), flags)) return false;
    if (payload == nullptr) return true;
    // Zero copy: ZeroMQ owns the string until its I/O thread has sent it and
    // then calls the free function.
    auto owned = std::make_unique<std::string>(std::move(*payload));
    zmq::message_t message(
        owned->data(), owned->size(), [](void*, void* hint) { delete static_cast<std::string*>(hint); }, owned.get());
    owned.release();  // now owned by `message`
    // Parts after the first of a multipart message are always accepted.
    return socket.send(message, zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t& e) {
    // EHOSTUNREACH: a ROUTER with ZMQ_ROUTER_MANDATORY and a peer that is gone.
    VLOG(1) << "send failed: " << e.what();
    return false;
  }
}

int PollSockets(zmq::pollitem_t* items, size_t count, int timeout_ms) {
  try {
    return zmq::poll(items, count, std::chrono::milliseconds(timeout_ms));
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return 0;
    throw;  // EFAULT / ETERM: a broken invariant, not bad input
  }
}

void ConfigureSocket(zmq::socket_t& socket, int64_t max_message_bytes, int linger_ms) {
  socket.set(zmq::sockopt::maxmsgsize, max_message_bytes);
  socket.set(zmq::sockopt::linger, linger_ms);
  socket.set(zmq::sockopt::sndhwm, 100000);
  socket.set(zmq::sockopt::rcvhwm, 100000);
}

bool IsPrintableField(std::string_view text, size_t max_bytes) {
  if (text.size() > max_bytes) return false;
  for (char c : text) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

int64_t MonotonicMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace bert
