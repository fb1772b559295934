#include "coordinator/authenticator.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include <glog/logging.h>
#include <zmq.h>

#include "common/curve_keys.h"

namespace bert {
namespace {

// RFC 27: libzmq asks whoever serves this endpoint on the socket's context.
constexpr char kZapEndpoint[] = "inproc://zeromq.zap.01";
constexpr char kMonitorEndpoint[] = "inproc://bert-coordinator-monitor";
constexpr int kPollMs = 50;
constexpr uint64_t kRefusalsLoggedInFull = 5;  // per kind; then every 1000th
constexpr int kMonitoredEvents = ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                 ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                                 ZMQ_EVENT_HANDSHAKE_SUCCEEDED;

// The peer of an accepted TCP connection: {"IP:PORT", "IP"}, or why not.
std::pair<std::string, std::string> PeerOf(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  char ip[INET6_ADDRSTRLEN] = {0};
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return {"a peer whose address is unknown (libzmq closed the connection before the monitor could read it)", ""};
  }
  if (address.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&address);
    ::inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof(ip));
    return {std::string(ip) + ":" + std::to_string(ntohs(v4->sin_port)), ip};
  }
  if (address.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof(ip));
    return {"[" + std::string(ip) + "]:" + std::to_string(ntohs(v6->sin6_port)), ip};
  }
  return {"a non-IP peer", ""};
}

// What a failure event says about the cause.
std::string FailureText(uint16_t id, uint32_t value) {
  if (id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
    switch (value) {
      case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "failed the handshake (another security mechanism: a client without CURVE, or --insecure)";
      case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
      case ZMQ_PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE:
        return "failed the handshake (CURVE failed: the client has another server key)";
      default: {
        char code[16];
        std::snprintf(code, sizeof(code), "0x%08x", value);
        return std::string("failed the handshake (ZMTP protocol error ") + code + ": not a ZeroMQ peer of this run)";
      }
    }
  }
  return "failed the handshake (" + std::string(value != 0 ? zmq_strerror(static_cast<int>(value)) : "no detail") +
         ": it timed out or the peer left during it)";
}

std::string Text(const zmq::message_t& m) { return std::string(static_cast<const char*>(m.data()), m.size()); }

// Reads the frames of one message (all already queued).
std::vector<zmq::message_t> ReadMultipart(zmq::socket_t& socket) {
  std::vector<zmq::message_t> parts;
  zmq::message_t part;
  if (!socket.recv(part, zmq::recv_flags::dontwait)) return parts;
  while (true) {
    const bool more = part.more();
    parts.push_back(std::move(part));
    if (!more) return parts;
    part = zmq::message_t();
    if (!socket.recv(part, zmq::recv_flags::none)) return parts;
  }
}

}  // namespace

uint64_t SecurityCounters::total_rejects() const {
  uint64_t total = 0;
  for (const auto& n : rejects) total += n.load();
  return total;
}

nlohmann::json SecurityCounters::ToJson() const {
  nlohmann::json reject_counts = nlohmann::json::object();
  for (size_t i = 1; i < rejects.size(); ++i) {
    reject_counts[RejectName(static_cast<Reject>(i))] = rejects[i].load();
  }
  return {{"connections_accepted", connections_accepted.load()},
          {"connections_open", connections_open.load()},
          {"handshakes_admitted", handshakes_admitted.load()},
          {"refused_key", refused_key.load()},
          {"refused_peer_cap", refused_peer_cap.load()},
          {"handshake_failed", handshake_failed.load()},
          {"rejects", reject_counts},
          {"rejects_total", total_rejects()}};
}

Authenticator::Authenticator(zmq::context_t* context, AuthenticatorOptions options, SecurityCounters* counters)
    : context_(context),
      options_(std::move(options)),
      counters_(counters),
      zap_(*context, zmq::socket_type::rep),
      monitor_(*context, zmq::socket_type::pair) {}

Authenticator::~Authenticator() {
  stopping_.store(true);
  if (thread_.joinable()) thread_.join();
  zap_.set(zmq::sockopt::linger, 0);
  monitor_.set(zmq::sockopt::linger, 0);
  zap_.close();
  monitor_.close();
}

Status Authenticator::Start(zmq::socket_t& server_socket) {
  try {
    zap_.bind(kZapEndpoint);
  } catch (const zmq::error_t& e) {
    return Status::Internal(std::string(kZapEndpoint) + ": cannot bind the ZAP handler: " + e.what());
  }
  if (zmq_socket_monitor(server_socket.handle(), kMonitorEndpoint, kMonitoredEvents) != 0) {
    return Status::Internal(std::string("zmq_socket_monitor: ") + zmq_strerror(zmq_errno()));
  }
  monitor_.connect(kMonitorEndpoint);
  // Sockets made here and used only by the thread from now on: starting a
  // thread orders the two, as ZeroMQ requires when a socket changes threads.
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void Authenticator::Loop() {
  while (!stopping_.load()) {
    zmq::pollitem_t items[] = {{zap_.handle(), 0, ZMQ_POLLIN, 0}, {monitor_.handle(), 0, ZMQ_POLLIN, 0}};
    PollSockets(items, 2, kPollMs);
    // Events first, so the open-connection count is current when a ZAP
    // request of a newly accepted connection is decided.
    DrainMonitor();
    if (items[0].revents & ZMQ_POLLIN) HandleZapRequest();
  }
}

void Authenticator::DrainMonitor() {
  while (true) {
    std::vector<zmq::message_t> event = ReadMultipart(monitor_);
    if (event.empty()) return;
    if (event.size() < 2 || event[0].size() < 6) continue;
    uint16_t id = 0;
    uint32_t value = 0;
    std::memcpy(&id, event[0].data(), sizeof(id));
    std::memcpy(&value, static_cast<const char*>(event[0].data()) + sizeof(id), sizeof(value));
    OnEvent(id, value);
  }
}

void Authenticator::OnEvent(uint16_t id, uint32_t value) {
  // A failure event's DISCONNECTED comes next; anything else first means
  // the descriptor is not known (it is logged without the peer).
  if (id != ZMQ_EVENT_DISCONNECTED) FlushPendingFailure();
  const int fd = static_cast<int>(value);
  switch (id) {
    case ZMQ_EVENT_ACCEPTED: {
      ++counters_->connections_accepted;
      ++counters_->connections_open;
      auto [peer, ip] = PeerOf(fd);
      connections_[fd] = Connection{std::move(peer), std::move(ip), ++accepted_, false};
      break;
    }
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: {  // ZAP decided it (a refusal is counted and logged there)
      const std::string ip = zap_decided_ips_.empty() ? "" : zap_decided_ips_.front();
      if (!zap_decided_ips_.empty()) zap_decided_ips_.pop_front();
      Connection* oldest = nullptr;
      for (int pass = 0; pass < 2 && oldest == nullptr; ++pass) {  // that address first, then any
        for (auto& [descriptor, connection] : connections_) {
          if (connection.settled || (pass == 0 && connection.ip != ip)) continue;
          if (oldest == nullptr || connection.order < oldest->order) oldest = &connection;
        }
      }
      if (oldest != nullptr) oldest->settled = true;
      break;
    }
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL: pending_failure_ = FailureText(id, value); break;
    case ZMQ_EVENT_DISCONNECTED: {
      --counters_->connections_open;
      auto it = connections_.find(fd);
      const bool known = it != connections_.end();
      const std::string peer = known ? it->second.peer : "a peer accepted before the monitor started";
      if (!pending_failure_.empty()) {
        LogRefusal(counters_->handshake_failed, "a connection from " + peer + " " + pending_failure_);
      } else if (known && !it->second.settled) {
        // No event for it: bytes that do not start like ZMTP end the
        // connection without one.
        LogRefusal(counters_->handshake_failed,
                   "a connection from " + peer +
                       " closed before completing a ZeroMQ handshake (not ZeroMQ, or a protocol error)");
      }
      pending_failure_.clear();
      if (known) connections_.erase(it);
      break;
    }
    default: break;
  }
}

void Authenticator::FlushPendingFailure() {
  if (!pending_failure_.empty()) {
    LogRefusal(counters_->handshake_failed, "a connection from an unknown peer " + pending_failure_);
  }
  pending_failure_.clear();
}

void Authenticator::HandleZapRequest() {
  // RFC 27 request: version, request id, domain, address, routing id,
  // mechanism, credentials...
  std::vector<zmq::message_t> request = ReadMultipart(zap_);
  if (request.empty()) return;
  std::string status_code = "400", status_text;
  const std::string request_id = request.size() > 1 ? Text(request[1]) : "";
  const std::string address = request.size() > 3 ? Text(request[3]) : "?";
  const std::string mechanism = request.size() > 5 ? Text(request[5]) : "";
  const bool curve = !options_.worker_public_z85.empty();
  if (request.size() < 6 || Text(request[0]) != "1.0") {
    status_code = "500";
    status_text = "malformed ZAP request";
  } else if (counters_->connections_open.load() > options_.max_peers) {
    status_text = "too many peers";
    LogRefusal(counters_->refused_peer_cap, "refused a handshake from " + address + ": " +
                                                std::to_string(counters_->connections_open.load()) +
                                                " connections open, the cap is " +
                                                std::to_string(options_.max_peers) + " (--max-peers)");
  } else if (curve && (mechanism != "CURVE" || request.size() < 7 || request[6].size() != 32)) {
    status_text = "CURVE required";
    LogRefusal(counters_->refused_key, "refused a " + mechanism + " handshake from " + address + ": CURVE required");
  } else if (curve) {
    char client_z85[41] = {0};
    zmq_z85_encode(client_z85, static_cast<const uint8_t*>(request[6].data()), 32);
    if (options_.worker_public_z85 == client_z85) {
      status_code = "200";
      status_text = "OK";
    } else {
      status_text = "unknown client key";
      LogRefusal(counters_->refused_key, "refused a CURVE client from " + address + ": public key " +
                                             KeyTag(client_z85) + "... is not the run's worker key " +
                                             KeyTag(options_.worker_public_z85) + "... (RUN_DIR/keys/worker.pub)");
    }
  } else {
    status_code = "200";  // --insecure: any NULL handshake within the cap
    status_text = "OK";
  }
  if (status_code == "200") ++counters_->handshakes_admitted;
  // Settles its connection at HANDSHAKE_SUCCEEDED or HANDSHAKE_FAILED_AUTH.
  zap_decided_ips_.push_back(address);
  if (zap_decided_ips_.size() > 4096) zap_decided_ips_.pop_front();
  // RFC 27 reply: version, request id, status code, status text, user id, metadata.
  const std::string reply[] = {"1.0", request_id, status_code, status_text, status_code == "200" ? "worker" : "", ""};
  for (size_t i = 0; i < 6; ++i) {
    zap_.send(zmq::buffer(reply[i]), i + 1 < 6 ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
}

void Authenticator::LogRefusal(std::atomic<uint64_t>& counter, const std::string& what) {
  const uint64_t count = ++counter;
  if (count <= kRefusalsLoggedInFull || count % 1000 == 0) {
    LOG(WARNING) << "[coord] " << what << " (" << count << " so far)";
  }
}

}  // namespace bert
