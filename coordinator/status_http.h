// StatusService: serves a StatusBoard over HTTP (cpp-httplib) and keeps
// RUN_DIR/coordinator/status.json current, for the people and tools that
// watch a run. Read-only: every route is a GET (or HEAD) and changes
// nothing; any other method gets 405. With a bearer token set
// (--http-token-file), every route answers 401 unless the request carries
// "Authorization: Bearer TOKEN" or "?token=TOKEN" (the form a browser can
// open; the dashboard's own requests then send the header).
//
//   GET /status    the board's JSON snapshot (StatusBoard::Snapshot), with
//                  "time_unix_ms" and "url" added
//   GET /metrics   the same figures in the Prometheus text exposition format
//                  0.0.4 (PrometheusText), labels rank and host per worker
//   GET /history   the dashboard's series (StatusBoard::History)
//   GET /          the dashboard: one self-contained HTML page (no external
//                  assets) that polls /status and /history and draws charts
//
// With SetSecurityCounters(), /status and status.json carry "security":
// SecurityCounters::ToJson() (refused handshakes, dropped messages).
//
// The HTTP server runs on its own threads (httplib's listener plus a small
// pool); a writer thread rewrites status.json (atomically, temp + rename)
// every write_every_ms, and Stop() writes it a last time, so `bertctl
// status` can report the last known state once the coordinator is gone.
// Start() and Stop() from one thread; the board must outlive the service.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "coordinator/authenticator.h"
#include "coordinator/status_board.h"

namespace httplib {
class Server;
}

namespace bert {

// The board's snapshot as Prometheus text: HELP and TYPE lines for every
// family, one sample per value that is known (nulls are left out), worker
// families labelled {rank, host}. Pure.
std::string PrometheusText(const nlohmann::json& status);

// The dashboard page (HTML with inline CSS, JavaScript and SVG charts).
// After drawing it sets <body data-points="N" data-step="S"> and the title
// "bert RUN: step S/T", which tests read from the DOM.
const char* DashboardHtml();

// "HOST:PORT" (port 0: any free one) -> host and port. Fails naming the flag.
Result<std::pair<std::string, int>> ParseHttpBind(const std::string& bind);

// A bearer token from a file: its first line, trimmed. Fails naming the file
// when it is unreadable, empty, shorter than 16 characters or not printable
// ASCII without spaces.
Result<std::string> ReadBearerToken(const std::string& path);

class StatusService {
 public:
  // status_path: where status.json goes ("" for none).
  StatusService(const StatusBoard* board, std::string status_path, int write_every_ms = 2000);
  ~StatusService();  // Stop()
  StatusService(const StatusService&) = delete;
  StatusService& operator=(const StatusService&) = delete;

  // Before Start(): requests must carry "Authorization: Bearer TOKEN".
  void SetBearerToken(std::string token) { bearer_token_ = std::move(token); }
  // Before Start(): adds "security" to the snapshot; must outlive the service.
  void SetSecurityCounters(const SecurityCounters* counters) { security_ = counters; }
  // Binds HOST:PORT and starts serving; returns the URL ("http://HOST:PORT/",
  // with this machine's name for a wildcard host). An empty bind serves no
  // HTTP (status.json is still written). Fails naming the address.
  Result<std::string> Start(const std::string& bind);
  // Stops serving and writes status.json a last time. Idempotent.
  void Stop();
  // The snapshot as served: the board's plus time_unix_ms and url.
  nlohmann::json Current() const;
  // Writes status.json now (also done every write_every_ms and by Stop()).
  void WriteStatusFile() const;

 private:
  void WriteLoop();
  // 405 for methods other than GET/HEAD, 401 without the token; true if answered.
  bool Refuse(const std::string& method, const std::string& authorization, int* status_code) const;

  const StatusBoard* board_;
  std::string bearer_token_;                    // "": no token required
  const SecurityCounters* security_ = nullptr;  // null: no "security" in the snapshot
  const std::string status_path_;
  const int write_every_ms_;
  std::string url_;
  std::unique_ptr<httplib::Server> http_;
  std::thread listener_, writer_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool stopped_ = false;
};

}  // namespace bert
