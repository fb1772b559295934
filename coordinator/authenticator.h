// Authenticator: the coordinator's ZAP handler (ZeroMQ RFC 27) and
// connection monitor; see coordinator/SECURITY.md.
//
// CURVE on a socket only encrypts: without a ZAP handler libzmq admits every
// client key. This one serves inproc://zeromq.zap.01 on the server's context
// and admits a CURVE handshake only when the client's public key is the
// run's worker key (common/curve_keys.h). With CURVE off (--insecure) it
// admits every NULL handshake. Either way it refuses new handshakes while
// more than max_peers connections are open.
//
// A monitor on the server's socket counts open connections and the
// handshakes that fail before ZAP (a client without CURVE, one that does not
// know the server key, bytes that are not ZMTP). Every refusal is counted in
// SecurityCounters and logged, rate-limited, naming the peer's address.
//
// libzmq's events name the listening endpoint, not the peer, and some
// failures have no event at all (bytes that do not start like ZMTP only end
// the connection), so the monitor follows each connection by its file
// descriptor: ACCEPTED(fd) looks the peer up (getpeername), a handshake
// failure event is followed at once by that connection's DISCONNECTED(fd)
// (one I/O thread emits both), and a connection that disconnects without a
// handshake that succeeded or failed by an event is counted as failed then.
// HANDSHAKE_SUCCEEDED and HANDSHAKE_FAILED_AUTH carry no descriptor: each
// settles the oldest connection still in its handshake from the address
// ZAP just decided on.
//
// One thread owns the ZAP and monitor sockets; counters are atomics, so the
// HTTP threads read them while it runs. Start() before the server socket's
// bind(); destroy before closing the context.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "common/protocol.h"
#include "common/status.h"

namespace bert {

// The control plane's defence counters: written by the server thread and the
// authenticator thread, read by anyone (status HTTP, stats.json).
struct SecurityCounters {
  std::atomic<uint64_t> connections_accepted{0};  // TCP connections the server socket accepted
  std::atomic<int64_t> connections_open{0};       // accepted and not yet disconnected
  std::atomic<uint64_t> handshakes_admitted{0};   // handshakes the ZAP handler let in
  std::atomic<uint64_t> refused_key{0};           // CURVE handshakes with a key that is not the run's worker key
  std::atomic<uint64_t> refused_peer_cap{0};      // handshakes refused because max_peers connections were open
  std::atomic<uint64_t> handshake_failed{0};      // connections dropped in the handshake: no CURVE, wrong server
                                                  // key, or not ZMTP at all
  std::array<std::atomic<uint64_t>, static_cast<size_t>(Reject::kCount)> rejects{};  // messages the server
                                                  // dropped, per Reject reason (common/protocol.h)
  uint64_t total_rejects() const;
  // {"connections_accepted": .., ..., "rejects": {"malformed": N, ...}, "rejects_total": N}
  nlohmann::json ToJson() const;
};

struct AuthenticatorOptions {
  std::string worker_public_z85;  // the one client key admitted; empty: CURVE is off, NULL handshakes admitted
  int64_t max_peers = 64;         // with this many connections open, new handshakes are refused
};

class Authenticator {
 public:
  // `context` is the server socket's; `counters` must outlive this object.
  Authenticator(zmq::context_t* context, AuthenticatorOptions options, SecurityCounters* counters);
  ~Authenticator();  // stops the thread and closes its sockets
  Authenticator(const Authenticator&) = delete;
  Authenticator& operator=(const Authenticator&) = delete;

  // Binds the ZAP endpoint, starts monitoring `server_socket` and starts the
  // thread. Call before server_socket.bind(), from the socket's thread.
  // Fails when another ZAP handler is bound on this context.
  Status Start(zmq::socket_t& server_socket);

 private:
  void Loop();
  void HandleZapRequest();
  void DrainMonitor();
  // One monitor event: its id and value (a descriptor for ACCEPTED and
  // DISCONNECTED, an error code for failures).
  void OnEvent(uint16_t id, uint32_t value);
  // Logs a failure event that no DISCONNECTED named the peer of.
  void FlushPendingFailure();
  // Counts a refusal and logs it (first few in full, then every 1000th).
  void LogRefusal(std::atomic<uint64_t>& counter, const std::string& what);

  zmq::context_t* context_;
  const AuthenticatorOptions options_;
  SecurityCounters* counters_;
  zmq::socket_t zap_;      // REP on inproc://zeromq.zap.01
  zmq::socket_t monitor_;  // PAIR: the server socket's events
  // Connections from ACCEPTED to DISCONNECTED, by descriptor (the thread's own).
  struct Connection {
    std::string peer;       // "IP:PORT", or why it is not known
    std::string ip;         // as ZAP names it
    uint64_t order = 0;     // accept order
    bool settled = false;   // its handshake succeeded, or its failure is counted
  };
  std::map<int, Connection> connections_;
  uint64_t accepted_ = 0;
  std::deque<std::string> zap_decided_ips_;  // ZAP decisions whose SUCCEEDED / FAILED_AUTH has not come yet
  std::string pending_failure_;              // a failure event's text, until its DISCONNECTED names the peer
  std::thread thread_;
  std::atomic<bool> stopping_{false};
};

}  // namespace bert
