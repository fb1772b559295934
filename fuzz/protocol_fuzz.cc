// libFuzzer target: a control frame as it arrives off the wire
// (common/protocol.h: ParseControlFrame, then ValidateFromWorker and
// ValidateFromCoordinator). Properties: nothing crashes; a rejection carries
// a one-line detail; an accepted envelope re-serializes to a frame that
// parses again to the same message and the same verdicts.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/protocol.h"
#include "fuzz/fuzz_util.h"

namespace {

bool OneLine(const std::string& text) { return !text.empty() && text.find('\n') == std::string::npos; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using bert::Reject;
  bert::proto::Envelope envelope;
  std::string detail;
  const Reject parsed = bert::ParseControlFrame(bert::fuzz::AsView(data, size), &envelope, &detail);
  if (parsed != Reject::kNone) {
    FUZZ_CHECK(OneLine(detail), "parse rejection without a one-line detail: " + detail);
    return 0;
  }
  std::string from_worker_detail, from_coordinator_detail;
  const Reject from_worker = bert::ValidateFromWorker(envelope, &from_worker_detail);
  const Reject from_coordinator = bert::ValidateFromCoordinator(envelope, &from_coordinator_detail);
  if (from_worker != Reject::kNone) FUZZ_CHECK(OneLine(from_worker_detail), from_worker_detail);
  if (from_coordinator != Reject::kNone) FUZZ_CHECK(OneLine(from_coordinator_detail), from_coordinator_detail);
  // Every known type but Heartbeat is received by exactly one side.
  if (envelope.body_case() != bert::proto::Envelope::kHeartbeat) {
    FUZZ_CHECK(from_worker == Reject::kUnexpectedType || from_coordinator == Reject::kUnexpectedType,
               std::string("a type both sides receive: ") + std::to_string(envelope.body_case()));
  }

  std::string frame;
  FUZZ_CHECK(envelope.SerializeToString(&frame), "an accepted envelope does not serialize");
  if (frame.size() > bert::kMaxControlFrameBytes) return 0;  // unknown fields may have grown it
  bert::proto::Envelope again;
  std::string again_detail;
  FUZZ_CHECK(bert::ParseControlFrame(frame, &again, &again_detail) == Reject::kNone, again_detail);
  std::string frame_again;
  FUZZ_CHECK(again.SerializeToString(&frame_again) && frame_again == frame, "re-serialized envelope differs");
  std::string unused;
  FUZZ_CHECK(bert::ValidateFromWorker(again, &unused) == from_worker, "worker verdict changed after a round trip");
  FUZZ_CHECK(bert::ValidateFromCoordinator(again, &unused) == from_coordinator,
             "coordinator verdict changed after a round trip");
  return 0;
}
