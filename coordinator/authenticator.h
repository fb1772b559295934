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
// One thread owns the ZAP and monitor sockets; counters are atomics, so the
// HTTP threads read them while it runs. Start() before the server socket's
// bind(); destroy before closing the context.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
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
  // Counts a refusal and logs it (first few in full, then every 1000th).
  void LogRefusal(std::atomic<uint64_t>& counter, const std::string& what);

  zmq::context_t* context_;
  const AuthenticatorOptions options_;
  SecurityCounters* counters_;
  zmq::socket_t zap_;      // REP on inproc://zeromq.zap.01
  zmq::socket_t monitor_;  // PAIR: the server socket's events
  std::thread thread_;
  std::atomic<bool> stopping_{false};
};

}  // namespace bert
