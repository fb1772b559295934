// A client that speaks garbage to a bert-coordinator, for the robustness
// and security tests. With WorkerKeys it is authenticated (it holds the
// run's worker key: an insider that misbehaves); without, it connects plain
// (no CURVE), which a coordinator that is not --insecure refuses in the
// handshake. Each Send* and Register uses its own connection.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include "common/curve_keys.h"
#include "common/protocol.h"
#include "integration/coordinator/coordinator_run.h"

namespace bert::testing {

// A well-formed Register for the tests' run (CoordinatorRunTest's
// "coordtest", kWorld ranks), as a stranger or a misbehaving client sends it.
inline proto::Register ValidRegister(uint32_t rank) {
  proto::Register r;
  r.set_run_id("coordtest");
  r.set_rank(rank);
  r.set_world_size(kWorld);
  r.set_host("intruder");
  r.set_protocol_version(kProtocolVersion);
  return r;
}

class GarbageClient {
 public:
  explicit GarbageClient(std::string endpoint, std::optional<WorkerKeys> keys = std::nullopt)
      : endpoint_(std::move(endpoint)), keys_(std::move(keys)) {}

  zmq::socket_t Connect() {
    zmq::socket_t socket(context_, zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, 2000);
    if (keys_) SetCurveClient(socket, *keys_);
    socket.connect(endpoint_);
    return socket;
  }
  static void Send(zmq::socket_t& socket, const std::vector<std::string>& frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      socket.send(zmq::buffer(frames[i]), i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  void SendFrames(const std::vector<std::string>& frames) {
    zmq::socket_t socket = Connect();
    Send(socket, frames);
  }
  // Sends a Register and returns the reply's reason ("" when accepted;
  // "no reply" when none came within timeout_ms).
  std::string Register(const proto::Register& request, int timeout_ms = 5000) {
    zmq::socket_t socket = Connect();
    proto::Envelope envelope = MakeEnvelope();
    *envelope.mutable_registration() = request;
    socket.send(zmq::buffer(envelope.SerializeAsString()), zmq::send_flags::none);
    zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}};
    if (zmq::poll(items, 1, std::chrono::milliseconds(timeout_ms)) == 0) return "no reply";
    zmq::message_t reply;
    (void)socket.recv(reply);
    proto::Envelope parsed;
    if (!parsed.ParseFromArray(reply.data(), static_cast<int>(reply.size()))) return "unparseable reply";
    return parsed.registration_reply().ok() ? "" : parsed.registration_reply().reason();
  }

 private:
  std::string endpoint_;
  std::optional<WorkerKeys> keys_;
  zmq::context_t context_;
};

}  // namespace bert::testing
