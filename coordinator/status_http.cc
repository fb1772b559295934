#include "coordinator/status_http.h"

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include <glog/logging.h>
#include <httplib.h>

#include "common/file_util.h"
#include "common/protocol.h"

namespace bert {
namespace {

constexpr int kHttpThreads = 2;          // a dashboard, a scraper and `bertctl status` at once
constexpr int kStartWaitMs = 5000;       // for the listener to come up
constexpr time_t kKeepAliveSeconds = 1;  // so that Stop() is not held up by an idle connection
constexpr size_t kMaxRequestBodyBytes = 4096;  // no route takes a body
constexpr size_t kMinTokenChars = 16;

std::string Hostname() {
  char name[256] = {0};
  return ::gethostname(name, sizeof(name) - 1) == 0 && name[0] != 0 ? std::string(name) : std::string("localhost");
}

}  // namespace

Result<std::pair<std::string, int>> ParseHttpBind(const std::string& bind) {
  const size_t colon = bind.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == bind.size()) {
    return Status::InvalidArgument("--http-bind '" + bind + "': expected HOST:PORT, e.g. 127.0.0.1:0 (0: any free port)");
  }
  std::string host = bind.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port_text = bind.substr(colon + 1);
  if (port_text.find_first_not_of("0123456789") != std::string::npos || port_text.size() > 5 ||
      std::stoi(port_text) > 65535) {
    return Status::InvalidArgument("--http-bind '" + bind + "': port must be a number in [0, 65535]");
  }
  return std::make_pair(host, std::stoi(port_text));
}

Result<std::string> ReadBearerToken(const std::string& path) {
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return Status::InvalidArgument("--http-token-file " + text.status().message());
  std::string token = text->substr(0, text->find('\n'));
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ' || token.back() == '\t')) token.pop_back();
  if (token.size() < kMinTokenChars) {
    return Status::InvalidArgument(path + ": line 1: the token must be at least 16 characters");
  }
  for (char c : token) {
    if (c <= 0x20 || c > 0x7e) {
      return Status::InvalidArgument(path + ": line 1: the token must be printable ASCII without spaces");
    }
  }
  return token;
}

bool StatusService::Refuse(const std::string& method, const std::string& authorization, int* status_code) const {
  if (method != "GET" && method != "HEAD") {
    *status_code = 405;
    return true;
  }
  if (bearer_token_.empty()) return false;
  // Constant time in the token's contents, so timing tells nothing about it.
  const std::string expected = "Bearer " + bearer_token_;
  unsigned char differ = authorization.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    differ |= static_cast<unsigned char>(expected[i] ^ (i < authorization.size() ? authorization[i] : 0));
  }
  if (differ == 0) return false;
  *status_code = 401;
  return true;
}

StatusService::StatusService(const StatusBoard* board, std::string status_path, int write_every_ms)
    : board_(board), status_path_(std::move(status_path)), write_every_ms_(std::max(100, write_every_ms)) {}

StatusService::~StatusService() { Stop(); }

nlohmann::json StatusService::Current() const {
  nlohmann::json status = board_->Snapshot(MonotonicMs());
  status["time_unix_ms"] = UnixMs();
  status["url"] = url_;
  if (security_ != nullptr) status["security"] = security_->ToJson();
  return status;
}

Result<std::string> StatusService::Start(const std::string& bind) {
  if (!bind.empty()) {
    Result<std::pair<std::string, int>> address = ParseHttpBind(bind);
    if (!address.ok()) return address.status();
    const auto& [host, port] = *address;
    http_ = std::make_unique<httplib::Server>();
    http_->new_task_queue = [] { return new httplib::ThreadPool(kHttpThreads); };
    http_->set_keep_alive_timeout(kKeepAliveSeconds);
    http_->set_payload_max_length(kMaxRequestBodyBytes);
    http_->set_pre_routing_handler([this](const httplib::Request& request, httplib::Response& response) {
      int code = 0;
      // A browser cannot add a header to the page it opens: the dashboard's
      // address may carry the token as ?token=, and the page's own requests
      // then send it as the header.
      std::string authorization = request.get_header_value("Authorization");
      if (authorization.empty() && request.has_param("token")) {
        authorization = "Bearer " + request.get_param_value("token");
      }
      if (!Refuse(request.method, authorization, &code)) {
        return httplib::Server::HandlerResponse::Unhandled;
      }
      response.status = code;
      if (code == 405) response.set_header("Allow", "GET, HEAD");
      if (code == 401) response.set_header("WWW-Authenticate", "Bearer realm=\"bert-coordinator\"");
      response.set_content(code == 405 ? "read-only: GET or HEAD\n" : "bearer token required\n", "text/plain");
      return httplib::Server::HandlerResponse::Handled;
    });
    // httplib's default adds SO_REUSEPORT, with which a second coordinator
    // could bind the same port and take half the requests. SO_REUSEADDR
    // alone still lets a restarted coordinator rebind its port at once.
    http_->set_socket_options([](int socket) {
      const int yes = 1;
      ::setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    http_->Get("/status", [this](const httplib::Request&, httplib::Response& response) {
      response.set_content(Current().dump(), "application/json");
    });
    http_->Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
      response.set_content(PrometheusText(Current()), "text/plain; version=0.0.4; charset=utf-8");
    });
    http_->Get("/history", [this](const httplib::Request&, httplib::Response& response) {
      response.set_content(board_->History().dump(), "application/json");
    });
    http_->Get("/", [](const httplib::Request&, httplib::Response& response) {
      response.set_content(DashboardHtml(), "text/html; charset=utf-8");
    });
    int bound = port;
    if (port == 0) {
      bound = http_->bind_to_any_port(host);
    } else if (!http_->bind_to_port(host, port)) {
      bound = -1;
    }
    if (bound <= 0) {
      http_.reset();
      return Status::IoError("--http-bind " + bind + ": cannot listen there (address in use or not local?)");
    }
    listener_ = std::thread([this] { http_->listen_after_bind(); });
    // Stop() before the listener runs would not wake it: wait for it.
    for (int waited = 0; !http_->is_running() && waited < kStartWaitMs; waited += 5) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const bool wildcard = host.empty() || host == "0.0.0.0" || host == "::";
    const std::string shown = wildcard ? Hostname() : host.find(':') != std::string::npos ? "[" + host + "]" : host;
    url_ = "http://" + shown + ":" + std::to_string(bound) + "/";
  }
  if (!status_path_.empty()) writer_ = std::thread([this] { WriteLoop(); });
  return url_;
}

void StatusService::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopped_) return;
    stopped_ = stopping_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (http_) http_->stop();
  if (listener_.joinable()) listener_.join();
  WriteStatusFile();
}

void StatusService::WriteLoop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    WriteStatusFile();
    lock.lock();
    wake_.wait_for(lock, std::chrono::milliseconds(write_every_ms_), [this] { return stopping_; });
  }
}

void StatusService::WriteStatusFile() const {
  if (status_path_.empty()) return;
  const bert::Status written = WriteFileAtomic(status_path_, Current().dump(2) + "\n");
  if (!written.ok()) {
    LOG_EVERY_N(WARNING, 30) << "[coord] " << written.message();
  }
}

}  // namespace bert
