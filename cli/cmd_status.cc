// bertctl status (RUN_DIR|URL) [--watch] [--json]: a run's status in the
// terminal. From the coordinator's /status when it answers (its URL is in
// RUN_DIR/coordinator/http); otherwise the last known state from the run
// directory: coordinator/status.json (rewritten every 2 s and at exit),
// brought up to date with the last line of metrics.jsonl and
// checkpoints/latest when those are newer.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/slurm_job.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/run_config.h"

namespace bert::cli {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// Exit codes (also in --help).
constexpr int kShown = 0;        // live status, or the final state of a finished run
constexpr int kNothing = 1;      // no coordinator answered and the run directory holds no status
constexpr int kUsage = 2;
constexpr int kLastKnown = 3;    // coordinator unreachable, run not finished: last known state shown
constexpr int kPreempted = 4;    // the run stopped for a preemption: a checkpoint is committed, it resumes from it

// States in which the run has ended: its coordinator has exited, and
// nothing changes until someone resumes it.
bool Ended(const std::string& state) { return state == "done" || state == "preempted" || state == "failed"; }

constexpr int kConnectTimeoutMs = 1000, kReadTimeoutMs = 3000;

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

struct StatusArgs {
  std::string target;  // RUN_DIR or http://HOST:PORT/
  bool watch = false;
  double interval_s = 2;
  bool json = false;
  std::string token_file;  // bearer token for a coordinator started with --http-token-file; "": none
  std::string token;       // its first line, read by RunStatus()
};

struct Fetched {
  Json status;             // null when there is none
  bool live = false;       // from the coordinator
  std::string url;         // the coordinator's, if known
  std::string note;        // where the figures came from, when not live
};

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

bool IsUrl(const std::string& target) { return target.rfind("http://", 0) == 0 || target.rfind("https://", 0) == 0; }

// GET URL/status (with the bearer token, if any); null on any failure
// (unreachable, refused, not JSON).
Json FetchLive(const std::string& url, const std::string& token, std::string* error) {
  const size_t scheme = url.find("://");
  const size_t path_at = url.find('/', scheme + 3);
  const std::string base = path_at == std::string::npos ? url : url.substr(0, path_at);
  std::string path = path_at == std::string::npos ? "/" : url.substr(path_at);
  if (path.back() != '/') path += '/';
  httplib::Client client(base);
  client.set_connection_timeout(std::chrono::milliseconds(kConnectTimeoutMs));
  client.set_read_timeout(std::chrono::milliseconds(kReadTimeoutMs));
  httplib::Headers headers;
  if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
  httplib::Result result = client.Get(path + "status", headers);
  if (!result) {
    *error = result.error() == httplib::Error::Connection ? "cannot connect"
             : result.error() == httplib::Error::Read      ? "no answer"
                                                           : "HTTP client error " + httplib::to_string(result.error());
    return nullptr;
  }
  if (result->status != 200) {
    *error = "HTTP " + std::to_string(result->status) +
             (result->status == 401 ? (token.empty() ? " (it requires a token: --token-file)" : " (wrong token)") : "");
    return nullptr;
  }
  Json status = Json::parse(result->body, nullptr, /*allow_exceptions=*/false);
  if (!status.is_object()) *error = "not a status object";
  return status.is_object() ? status : Json(nullptr);
}

Json LastJsonLine(const std::string& path) {
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return nullptr;
  std::istringstream in(*text);
  Json last;
  for (std::string line; std::getline(in, line);) {
    Json parsed = Json::parse(line, nullptr, false);
    if (parsed.is_object()) last = std::move(parsed);
  }
  return last;
}

// The last known state from the run directory (null: none at all).
Json FromRunDir(const std::string& run_dir, std::string* note) {
  Json status;
  Result<std::string> saved = ReadFile(run_dir + "/coordinator/status.json");
  if (saved.ok()) status = Json::parse(*saved, nullptr, false);
  if (!status.is_object()) status = nullptr;
  if (!status.is_null()) {
    const int64_t age_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count() -
        status.value("time_unix_ms", int64_t{0});
    *note = "last known state from " + run_dir + "/coordinator/status.json, written " +
            FormatDuration(static_cast<double>(std::max<int64_t>(0, age_ms)) / 1e3) + " ago";
  }
  // Newer figures than the saved status (a coordinator that died between
  // two writes, or a single-process run with no coordinator at all).
  const Json line = LastJsonLine(run_dir + "/metrics.jsonl");
  if (line.is_object() && line.contains("step") &&
      (status.is_null() || line["step"].get<uint64_t>() > status.value("step", uint64_t{0}))) {
    if (status.is_null()) {
      status = Json{{"run", fs::path(run_dir).filename().string()}, {"state", "unknown"}, {"workers", Json::array()}};
      Result<RunConfig> config = LoadRunConfig(run_dir + "/config.yaml");
      if (config.ok()) {
        status["run"] = config->name;
        status["total_steps"] = config->train.steps;
      }
      *note = "figures from " + run_dir + "/metrics.jsonl (no coordinator status)";
    } else {
      *note += "; step and figures from metrics.jsonl";
    }
    status["step"] = line["step"];
    for (const char* key : {"loss", "mlm_accuracy", "nsp_accuracy", "lr", "grad_norm", "samples_per_s",
                            "tokens_per_s", "mfu", "data_wait_fraction"}) {
      if (line.contains(key)) status[key] = line[key];
    }
    if (status.value("total_steps", 0.0) > 0) {
      status["progress"] = status["step"].get<double>() / status["total_steps"].get<double>();
    }
  }
  Result<std::string> latest = ReadFile(run_dir + "/checkpoints/latest");
  if (latest.ok() && !status.is_null()) {
    const std::string name = Trim(*latest);
    if (name.rfind("step-", 0) == 0 && name > status.value("last_checkpoint", std::string())) {
      status["last_checkpoint"] = name;
      status["last_checkpoint_step"] = std::stoull(name.substr(5));
    }
  }
  return status;
}

Fetched Fetch(const std::string& target, const std::string& token) {
  Fetched fetched;
  std::string run_dir;
  if (IsUrl(target)) {
    fetched.url = target;
  } else {
    run_dir = target;
    Result<std::string> url = ReadFile(run_dir + "/coordinator/http");
    if (url.ok()) fetched.url = Trim(*url);
  }
  std::string error = "no status URL in " + run_dir + "/coordinator/http";
  if (!fetched.url.empty()) {
    fetched.status = FetchLive(fetched.url, token, &error);
    if (!fetched.status.is_null()) {
      fetched.live = true;
      return fetched;
    }
  }
  const std::string unreachable =
      fetched.url.empty() ? "no coordinator status URL" : "coordinator unreachable (" + fetched.url + ": " + error + ")";
  if (!run_dir.empty()) fetched.status = FromRunDir(run_dir, &fetched.note);
  // A run that has ended has no coordinator to ask: not a connection problem.
  const bool ended = fetched.status.is_object() && Ended(fetched.status.value("state", ""));
  const std::string why = ended ? "the run has ended and its coordinator has exited" : unreachable;
  fetched.note = fetched.note.empty() ? why : why + "; " + fetched.note;
  return fetched;
}

std::string Fixed(const Json& value, int digits, const char* suffix = "") {
  if (!value.is_number()) return "-";
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f%s", digits, value.get<double>(), suffix);
  return text;
}

std::string Percent(const Json& value) {
  return value.is_number() ? Fixed(Json(100 * value.get<double>()), 1, "%") : "-";
}

std::string Bytes(const Json& value) {
  if (!value.is_number() || value.get<double>() <= 0) return "-";
  double v = value.get<double>();
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (v >= 1024 && unit < 4) {
    v /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof(text), unit ? "%.1f %s" : "%.0f %s", v, units[unit]);
  return text;
}

std::string Text(const Json& status, const std::string& key) {
  const auto it = status.find(key);
  if (it == status.end() || it->is_null()) return "-";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i] + std::string(width[i] - row[i].size() + (i + 1 < row.size() ? 2 : 0), ' ');
    }
    std::cout << Trim(line) << "\n";
  }
}

void PrintView(const Fetched& fetched) {
  const Json& s = fetched.status;
  const std::string state = Text(s, "state") + (fetched.live || Ended(Text(s, "state")) ? "" : " (last known)");
  std::cout << "run " << Text(s, "run") << " | " << state << " | step " << Text(s, "step") << "/"
            << Text(s, "total_steps") << " (" << Percent(s.value("progress", Json())) << ") | epoch "
            << Text(s, "epoch") << " | " << Text(s, "samples_seen") << " samples\n";
  std::cout << "loss " << Fixed(s.value("loss", Json()), 4) << " (avg " << Fixed(s.value("loss_avg", Json()), 4)
            << ") | MLM acc " << Fixed(s.value("mlm_accuracy", Json()), 3) << " | NSP acc "
            << Fixed(s.value("nsp_accuracy", Json()), 3) << " | lr "
            << (s.value("lr", Json()).is_number() ? [&] {
                 char text[32];
                 std::snprintf(text, sizeof(text), "%.2e", s["lr"].get<double>());
                 return std::string(text);
               }()
                                                : std::string("-"))
            << "\n";
  const Json eta = s.value("eta_s", Json());
  std::cout << Fixed(s.value("samples_per_s", Json()), 1) << " samples/s | "
            << Fixed(s.value("tokens_per_s", Json()), 0) << " tokens/s | MFU " << Percent(s.value("mfu", Json()))
            << " | data wait " << Percent(s.value("data_wait_fraction", Json())) << " | ETA "
            << (eta.is_number() ? FormatDuration(eta.get<double>()) : "-") << "\n";
  const std::string checkpoint = s.value("last_checkpoint", std::string());
  std::string stragglers;
  for (const Json& rank : s.value("stragglers", Json::array())) stragglers += (stragglers.empty() ? "" : ",") + rank.dump();
  std::cout << "checkpoint " << (checkpoint.empty() ? "none" : checkpoint) << " | restarts " << Text(s, "restarts")
            << " | stragglers " << (stragglers.empty() ? "none" : stragglers) << "\n";
  if (s.value("state", "") == "failed") std::cout << "failed: " << Text(s, "exit_reason") << "\n";
  if (s.value("state", "") == "preempted") {
    std::cout << "preempted: " << Text(s, "exit_reason") << "; resume with the same bertctl pretrain command or "
              << "bertctl resume RUN_DIR (Slurm requeues it by itself)\n";
  }
  std::cout << (fetched.live ? "coordinator " + fetched.url : fetched.note) << "\n";
  const Json workers = s.value("workers", Json::array());
  if (workers.empty()) return;
  std::vector<std::vector<std::string>> rows = {{"rank", "host", "device", "state", "heartbeat", "step", "step ms",
                                                 "compute ms", "data wait", "memory", "straggler"}};
  for (const Json& w : workers) {
    const Json age = w.value("heartbeat_age_s", Json());
    rows.push_back({Text(w, "rank"), Text(w, "host"), Text(w, "device"), Text(w, "state"),
                    age.is_number() ? Fixed(age, 1, " s") : "-", Text(w, "step"),
                    Fixed(w.value("step_time_ms", Json()), 1), Fixed(w.value("compute_ms", Json()), 1),
                    Percent(w.value("data_wait_fraction", Json())), Bytes(w.value("rss_bytes", Json())),
                    w.value("straggler", false) ? "yes (" + Fixed(w.value("slowness", Json()), 2, "x") + ")" : ""});
  }
  std::cout << "\n";
  PrintTable(rows);
}

// Prints the status once; returns the exit code. *final: nothing more will
// change (the run is done, or failed and its coordinator is gone).
int ShowOnce(const StatusArgs& args, bool clear, bool* final) {
  const Fetched fetched = Fetch(args.target, args.token);
  const std::string state = fetched.status.is_object() ? fetched.status.value("state", "") : "";
  *final = state == "done" || (Ended(state) && !fetched.live);
  // A submitted run (bertctl submit): its Slurm job's state comes first.
  const std::optional<RunJobStatus> slurm = IsUrl(args.target) ? std::nullopt : RunSlurmStatus(args.target);
  const int code = fetched.status.is_null()          ? (slurm ? kShown : kNothing)
                   : state == "preempted"            ? kPreempted
                   : fetched.live || state == "done" ? kShown
                                                     : kLastKnown;
  if (args.json) {
    Json out = fetched.status.is_null() ? Json::object() : fetched.status;
    if (slurm) {
      out["slurm"] = {{"job_id", slurm->job_id}, {"job_name", slurm->job_name}, {"state", slurm->job.state},
                      {"reason", slurm->job.reason}, {"source", slurm->job.source}, {"error", slurm->error}};
    }
    out["source"] = fetched.live ? "coordinator" : fetched.status.is_null() ? "none" : "run_dir";
    out["coordinator_reachable"] = fetched.live;
    if (!fetched.live) out["note"] = fetched.note;
    std::cout << out.dump() << std::endl;
    return code;
  }
  if (clear) std::cout << "\033[H\033[2J";
  if (slurm) {
    std::cout << "slurm job " << (slurm->job_id.empty() ? "?" : slurm->job_id) << " (" << slurm->job_name << "): "
              << (!slurm->error.empty()          ? "unknown: " + slurm->error
                  : slurm->job.state.empty()     ? std::string("unknown to Slurm (finished and forgotten)")
                  : slurm->job.reason.empty()    ? slurm->job.state
                                                 : slurm->job.state + " (" + slurm->job.reason + ")")
              << "\n";
  }
  if (fetched.status.is_null()) {
    std::cout << "bertctl status: " << fetched.note << "; nothing to show for " << args.target << std::endl;
  } else {
    PrintView(fetched);
  }
  std::cout.flush();
  return code;
}

int RunStatus(StatusArgs args) {
  if (!IsUrl(args.target) && !fs::is_directory(args.target)) {
    std::cerr << "bertctl status: " << args.target << " is neither a run directory nor an http:// URL\n";
    return kUsage;
  }
  if (!args.token_file.empty()) {
    Result<std::string> text = ReadFile(args.token_file);
    args.token = text.ok() ? Trim(text->substr(0, text->find('\n'))) : "";
    if (args.token.empty()) {
      std::cerr << "bertctl status: --token-file " << args.token_file << ": "
                << (text.ok() ? "line 1 holds no token" : text.status().message()) << "\n";
      return kUsage;
    }
  }
  bool final = false;
  if (!args.watch) return ShowOnce(args, false, &final);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  int code = kShown;
  while (!g_stop.load()) {
    code = ShowOnce(args, !args.json && ::isatty(STDOUT_FILENO), &final);
    if (final) break;
    for (double waited = 0; waited < args.interval_s && !g_stop.load(); waited += 0.05) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return code;
}

std::function<int()> SetupStatus(CLI::App& app) {
  auto args = std::make_shared<StatusArgs>();
  CLI::App* cmd = app.add_subcommand("status", "Show a run's progress, rates, checkpoints and workers");
  cmd->footer(
      "TARGET is a run directory (its coordinator's URL is read from RUN_DIR/coordinator/http) or the\n"
      "coordinator's URL (http://HOST:PORT/). When the coordinator does not answer, the last known state is\n"
      "read from RUN_DIR/coordinator/status.json, metrics.jsonl and checkpoints/latest.\n"
      "Exit codes: 0 status shown (live, or the final state of a finished run), 1 nothing to show\n"
      "(coordinator unreachable and no status in the run directory), 2 bad usage, 3 coordinator\n"
      "unreachable and the run not finished (or failed): the last known state was shown, 4 the run was\n"
      "preempted (SIGUSR1): a checkpoint is committed and the run resumes from it.\n"
      "Run states: starting, recovering, running, checkpointing, done, preempted, failed.");
  cmd->add_option("target", args->target, "Run directory or coordinator URL")->required();
  cmd->add_flag("--watch", args->watch, "Refresh until the run ends (Ctrl-C to stop)");
  cmd->add_option("--interval", args->interval_s, "Seconds between refreshes with --watch")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  cmd->add_flag("--json", args->json, "Print the status JSON (one line per refresh) instead of the view");
  cmd->add_option("--token-file", args->token_file,
                  "Send 'Authorization: Bearer TOKEN' (TOKEN: this file's first line), for a coordinator started "
                  "with --http-token-file");
  return [args] { return RunStatus(*args); };
}

}  // namespace

BERT_REGISTER_COMMAND(SetupStatus);

}  // namespace bert::cli
