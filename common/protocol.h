// The coordinator <-> worker protocol, in one place (STYLE.md, habit 1).
//
// Transport. ZeroMQ over TCP: the coordinator binds a ROUTER socket, each
// worker connects a DEALER. The connection is CURVE-encrypted and admitted
// only with the run's worker key (common/curve_keys.h, coordinator/SECURITY.md)
// unless both sides run --insecure. A message is a ZeroMQ multipart message:
//
//   [identity]   added and stripped by the ROUTER; the worker never sees it
//   [envelope]   a bert.proto.Envelope (common/protocol.proto), at most
//                kMaxControlFrameBytes
//   [payload]    only after a BatchHeader: the batch codec's bytes
//                (datapipe/batch_codec.h), raw, never inside a protobuf
//
// Session (per worker; arrows are messages):
//
//   worker                                  coordinator
//   Register{run id, rank, W, host, ...} -> validated; refused with a reason
//                                       <- RegisterReply{ok, start_step, geometry,
//                                                        prefetch P, heartbeat timing}
//                                       <- BatchHeader + payload, in (step, micro)
//                                          order from start_step; at most P sent and
//                                          not yet credited back
//   Credit{1}                           -> each time the worker takes a batch off its
//                                          queue, so it holds P batches in steady state
//   Ack{step, micro, metrics}           -> after training on it; recorded in the ledger;
//                                          the last of a step carries StepFigures (monitoring)
//   Heartbeat                          <-> every heartbeat_interval_ms, both ways (a worker's
//                                          carries its last acked step and resident memory)
//                                       <- Done          every step is acknowledged
//                                       <- Abort{reason} a worker died / coordinator stops
//
// Batch assignment (datapipe/dispatch_plan.h): the global batch of step s
// is G consecutive samples of one epoch's order; rank r of W gets the
// contiguous slice RankSlice() of it, cut into micro-batches of
// micro_batch_size samples. A global batch never spans two epochs: epoch e
// gives floor(num_samples(e) / G) steps and its last num_samples(e) mod G
// samples are not used.
//
// Liveness. Any message counts as a sign of life. A peer silent for
// heartbeat_timeout_ms (3 s in the tests) is dead: the coordinator logs the
// rank, host and pid, sends Abort to every other worker and exits with
// kExitAborted; a worker whose coordinator goes silent exits with
// kExitCoordinatorLost.
//
// Robustness. Nothing a peer sends can crash either side. Sockets set
// ZMQ_MAXMSGSIZE (libzmq drops the connection of a peer that sends a bigger
// frame before allocating it; such a frame is not counted, as the
// application never sees it). Every message is then checked here and by
// the receiver: frame count, frame size, protobuf parse, protocol version,
// known message type, field ranges (ValidateFromWorker /
// ValidateFromCoordinator), and then context (registered peer, run id, rank
// < world size, step in range, ack of a batch actually sent). A bad message
// is dropped, counted under its Reject reason and logged (rate-limited); the
// run goes on. A bad Register is answered with ok=false and the reason.
//
// Thread safety: the functions are pure or act on the socket passed in
// (ZeroMQ sockets are not thread-safe: one thread per socket).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

#include "common/exit_codes.h"
#include "common/protocol.pb.h"

namespace bert {

constexpr uint32_t kProtocolVersion = 1;
// Envelopes are small (a Register is < 1 KiB); anything bigger is garbage.
constexpr size_t kMaxControlFrameBytes = 64 << 10;
// identity + envelope + payload on the ROUTER side.
constexpr size_t kMaxFramesPerMessage = 3;
// Field limits enforced by Validate*().
constexpr size_t kMaxRunIdBytes = 128;
constexpr size_t kMaxHostBytes = 255;
constexpr size_t kMaxDeviceBytes = 64;
constexpr size_t kMaxReasonBytes = 1024;
constexpr uint32_t kMaxWorldSize = 65536;
constexpr uint32_t kMaxCreditsPerMessage = 1024;
constexpr size_t kMaxRankStateBytes = 4096;

// Whether a launcher should restart the run after this exit code (from
// the latest checkpoint): a dead peer, a lost coordinator, a crash or a
// kill are worth a retry; a bad flag, config or corrupt data are fatal.
// (128 + N: killed by signal N.)
bool IsRetryableExit(int code);

// Why a message was dropped. Counted per reason by the receiver.
enum class Reject : int {
  kNone = 0,
  kTooManyFrames,      // more frames than the message type allows
  kOversized,          // a control frame over kMaxControlFrameBytes, or a payload over the limit
  kMalformed,          // not a parseable Envelope
  kBadVersion,         // protocol_version != kProtocolVersion
  kUnknownType,        // no known body set (a newer peer, or garbage that parsed)
  kUnexpectedType,     // a known type this side never receives (e.g. a worker sending a BatchHeader)
  kBadField,           // a field out of its range or format
  kWrongRunId,         // Register for another run
  kWorldSizeMismatch,  // Register with another world size
  kDuplicateRank,      // Register for a rank another live worker holds
  kStaleGeneration,    // Register from another launcher generation than the registered workers'
  kUnregisteredPeer,   // anything but Register from a peer that has not registered
  kUnexpectedAck,      // Ack of a batch not sent to this peer, or acked twice
  kExcessCredit,       // Credit for more batches than were sent and not yet credited (the prefetch cap)
  kCount,
};
const char* RejectName(Reject reason);

// One received message with its frames; `dropped_frames` counts frames past
// kMaxFramesPerMessage that were received and discarded.
struct Frames {
  std::vector<zmq::message_t> parts;
  size_t dropped_frames = 0;
};

// Receives the next whole message without blocking: false when none is
// waiting. Keeps at most max_frames frames (the rest are read and dropped,
// so a hostile multipart message cannot make us allocate without bound).
bool RecvMessage(zmq::socket_t& socket, size_t max_frames, Frames* out);

// Parses a control frame: size, protobuf, version, known type. On success
// returns kNone and fills *envelope; otherwise returns the reason and sets
// *detail to a one-line explanation.
Reject ParseControlFrame(std::string_view frame, proto::Envelope* envelope, std::string* detail);

// Field checks that need no context, for messages a worker sends
// (Register, Credit, Ack, Heartbeat, ShardDurable) and a coordinator sends (the rest).
// kUnexpectedType when the body is not one this side receives.
Reject ValidateFromWorker(const proto::Envelope& envelope, std::string* detail);
Reject ValidateFromCoordinator(const proto::Envelope& envelope, std::string* detail);

// A fresh envelope with the protocol version set.
proto::Envelope MakeEnvelope();

// Sends [identity] + envelope + [payload] without blocking. `identity` is
// empty on a DEALER. The payload is moved into ZeroMQ without a copy.
// Returns false when ZeroMQ cannot take it now (peer gone, queue full).
bool SendEnvelope(zmq::socket_t& socket, const std::string& identity, const proto::Envelope& envelope,
                  std::string* payload = nullptr);

// zmq::poll that returns 0 (nothing ready) when a signal interrupts it,
// instead of throwing: the caller's loop then checks its stop flag.
int PollSockets(zmq::pollitem_t* items, size_t count, int timeout_ms);

// Socket options both sides use: ZMQ_MAXMSGSIZE (bytes; -1 none), linger
// (so that a final Abort or Done leaves before the process exits), and
// high-water marks large enough that credits, not ZeroMQ, bound the queues.
void ConfigureSocket(zmq::socket_t& socket, int64_t max_message_bytes, int linger_ms);

// Printable ASCII of at most max_bytes (run ids, hosts, devices). Pure.
bool IsPrintableField(std::string_view text, size_t max_bytes);

// Milliseconds on a monotonic clock (liveness) and since the Unix epoch (logs).
int64_t MonotonicMs();
int64_t UnixMs();

}  // namespace bert
