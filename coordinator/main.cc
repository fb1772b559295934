// bert-coordinator: serves MLM/NSP batches to the workers of one run over
// ZeroMQ and records every dispatch and acknowledgement in the run's ledger.
// The protocol is in common/protocol.h; exit codes are ExitCode there.
#include <chrono>
#include <cmath>
#include <csignal>
#include <thread>
#include <filesystem>
#include <iostream>

#include <CLI/CLI.hpp>

#include "common/curve_keys.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/protocol.h"
#include "common/run_config.h"
#include "datapipe/data_source.h"
#include "checkpoint/checkpoint.h"
#include "coordinator/checkpoint_committer.h"
#include "coordinator/ledger.h"
#include "coordinator/server.h"
#include "coordinator/status_board.h"
#include "coordinator/status_http.h"
#include "interop/pretrained.h"

namespace {

// Set by SIGINT/SIGTERM; the server loop polls it (a handler only sets a flag).
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }
// Set by SIGUSR1 (a launcher's preemption notice): checkpoint, then stop.
std::atomic<bool> g_checkpoint_and_stop{false};
void OnCheckpointSignal(int) { g_checkpoint_and_stop.store(true); }

struct Args {
  std::string config_path;
  std::string run_dir;            // default: the config's run_dir
  std::string run_id;             // default: the config's name
  uint32_t world_size = 1;
  uint64_t resident_mb = 8192;
  std::string dump_ledger;        // RUN_DIR: print the ledger and exit
  bool without_checkpoints = false;  // data-only consumers: resume from the ledger, no commits
  std::string http_bind = "127.0.0.1:0";  // status HTTP (HOST:PORT, port 0: any free one; "off": none)
  int http_linger_ms = 0;            // keep serving status this long after the run ended
  std::string keys_dir;              // CURVE keys; default: RUN_DIR/keys (generated on first start)
  bool insecure = false;             // no CURVE: any host that reaches --bind may join
  std::string http_token_file;       // bearer token the status HTTP requires; "": none
  double straggler_factor = 1.5;     // busy time over this x the median ...
  int straggler_steps = 5;           // ... for this many steps in a row: a straggler
  bert::ServerOptions server;
};

int ExitCodeFor(const bert::Status& status) {
  return status.code() == bert::Status::Code::kInvalidArgument ||
                 status.code() == bert::Status::Code::kFailedPrecondition
             ? bert::kExitUsage
             : bert::kExitError;
}

int Fail(const bert::Status& status) {
  LOG(ERROR) << "[coord] " << status.message();
  return ExitCodeFor(status);
}

// A new run with train.init_from: the weights must fit the run's model and
// the corpus's vocabulary, checked before any worker starts.
bert::Status CheckInitFrom(const bert::RunConfig& config, const std::string& corpus_vocab_checksum) {
  const std::string& path = config.train.init_from;
  bert::Result<bert::PretrainedModel> init = bert::LoadPretrained(path, /*with_weights=*/false);
  if (!init.ok()) return bert::Status::InvalidArgument("train.init_from: " + init.status().message());
  if (init->vocab_checksum != corpus_vocab_checksum) {
    return bert::Status::InvalidArgument(
        "train.init_from: " + init->path + " was trained with another vocabulary (" +
        std::to_string(init->vocab.size()) + " tokens, checksum " + init->vocab_checksum +
        ") than the corpus's (checksum " + corpus_vocab_checksum + "); prepare the corpus with its vocab.txt");
  }
  if (init->do_lower_case != config.lower_case) {
    return bert::Status::InvalidArgument("train.init_from: " + init->path + " is " +
                                         (init->do_lower_case ? "uncased" : "cased") + " but lower_case is " +
                                         (config.lower_case ? "true" : "false"));
  }
  bert::Result<std::string> model_text = bert::ReadFile(config.model);
  if (!model_text.ok()) return model_text.status();
  nlohmann::json model_json = nlohmann::json::parse(*model_text, nullptr, /*allow_exceptions=*/false);
  bert::Result<bert::BertShapes> want = bert::BertShapesFromConfig(model_json, config.model);
  if (!want.ok()) return want.status();
  bert::Result<bert::BertShapes> have = bert::BertShapesFromConfig(init->config, init->path);
  if (!have.ok()) return have.status();
  const std::pair<const char*, std::pair<int64_t, int64_t>> keys[] = {
      {"vocab_size", {want->vocab_size, have->vocab_size}},
      {"hidden_size", {want->hidden_size, have->hidden_size}},
      {"num_hidden_layers", {want->num_hidden_layers, have->num_hidden_layers}},
      {"num_attention_heads", {want->num_attention_heads, have->num_attention_heads}},
      {"intermediate_size", {want->intermediate_size, have->intermediate_size}},
      {"max_position_embeddings", {want->max_position_embeddings, have->max_position_embeddings}},
      {"type_vocab_size", {want->type_vocab_size, have->type_vocab_size}}};
  for (const auto& [key, values] : keys) {
    if (values.first != values.second) {
      return bert::Status::InvalidArgument("train.init_from: " + init->path + " has " + key + " " +
                                           std::to_string(values.second) + " but the run's model " + config.model +
                                           " has " + std::to_string(values.first) +
                                           " (set `model:` to the config it was trained with)");
    }
  }
  LOG(INFO) << "[coord] a new run: the workers start from the weights of " << init->path;
  return bert::Status::Ok();
}

int DumpLedger(const std::string& run_dir) {
  auto ledger = bert::Ledger::OpenReadOnly(bert::LedgerDir(run_dir));
  if (!ledger.ok()) return Fail(ledger.status());
  bert::Status dumped = (*ledger)->DumpJsonLines(std::cout);
  std::cout.flush();
  return dumped.ok() ? bert::kExitOk : Fail(dumped);
}

bert::Status CheckArgs(const Args& args) {
  const bert::ServerOptions& s = args.server;
  if (args.world_size < 1 || args.world_size > bert::kMaxWorldSize) {
    return bert::Status::InvalidArgument("--world-size: must be in [1, 65536]");
  }
  if (s.prefetch < 1 || s.prefetch > 1024) return bert::Status::InvalidArgument("--prefetch: must be in [1, 1024]");
  if (s.builder.num_threads < 1 || s.builder.num_threads > 256) {
    return bert::Status::InvalidArgument("--build-threads: must be in [1, 256]");
  }
  if (s.heartbeat_interval_ms < 10) return bert::Status::InvalidArgument("--heartbeat-interval-ms: must be >= 10");
  if (s.heartbeat_timeout_ms < 2 * s.heartbeat_interval_ms) {
    return bert::Status::InvalidArgument("--heartbeat-timeout-ms: must be at least twice --heartbeat-interval-ms");
  }
  if (s.max_message_bytes < int64_t{bert::kMaxControlFrameBytes}) {
    return bert::Status::InvalidArgument("--max-message-bytes: must be >= 65536 (the largest control frame)");
  }
  if (s.builder.pad_to_multiple < 1 || s.builder.pad_to_multiple > 4096) {
    return bert::Status::InvalidArgument("--pad-to-multiple: must be in [1, 4096]");
  }
  if (args.straggler_factor <= 1 || !std::isfinite(args.straggler_factor)) {
    return bert::Status::InvalidArgument("--straggler-factor: must be a number above 1");
  }
  if (args.insecure && !args.keys_dir.empty()) {
    return bert::Status::InvalidArgument("--keys and --insecure: choose one");
  }
  if (s.max_peers < 0) return bert::Status::InvalidArgument("--max-peers: must be >= 0 (0: 2 x world size + 16)");
  if (args.straggler_steps < 1) return bert::Status::InvalidArgument("--straggler-steps: must be >= 1");
  if (args.http_linger_ms < 0) return bert::Status::InvalidArgument("--http-linger-ms: must be >= 0");
  if (args.http_bind != "off") {
    auto address = bert::ParseHttpBind(args.http_bind);
    if (!address.ok()) return address.status();
  }
  if (!args.run_id.empty() && !bert::IsPrintableField(args.run_id, bert::kMaxRunIdBytes)) {
    return bert::Status::InvalidArgument("--run-id: must be 1-128 printable ASCII characters");
  }
  return bert::Status::Ok();
}

void AddOptions(CLI::App& app, Args* args) {
  app.add_option("--config", args->config_path, "Run config (YAML): corpus, sample plan, batch sizes, steps");
  app.add_option("--bind", args->server.bind, "ZeroMQ endpoint to serve on; port * picks a free one")
      ->capture_default_str();
  app.add_option("--world-size", args->world_size, "Number of workers (ranks)")->capture_default_str();
  app.add_option("--run-dir", args->run_dir, "Run directory (default: the config's run_dir, runs/NAME)");
  app.add_option("--run-id", args->run_id, "Run id workers must present (default: the config's name)");
  app.add_option("--prefetch", args->server.prefetch, "Batches in flight per worker (credits)")
      ->capture_default_str();
  app.add_option("--build-threads", args->server.builder.num_threads, "Threads building batches ahead of demand")
      ->capture_default_str();
  app.add_option("--heartbeat-interval-ms", args->server.heartbeat_interval_ms, "Heartbeat period, both ways")
      ->capture_default_str();
  app.add_option("--heartbeat-timeout-ms", args->server.heartbeat_timeout_ms,
                 "A worker silent this long is dead; the others are told to abort")
      ->capture_default_str();
  app.add_option("--collective-timeout-ms", args->server.collective_timeout_ms,
                 "Ranks waiting this long in a collective another rank never entered: name that rank and what it "
                 "does, and abort the run (0: not checked)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--register-timeout-ms", args->server.register_timeout_ms,
                 "Every rank must register within this (after start)")
      ->capture_default_str();
  app.add_option("--max-message-bytes", args->server.max_message_bytes,
                 "ZMQ_MAXMSGSIZE: a peer sending a bigger frame is disconnected")
      ->capture_default_str();
  app.add_option("--pad-to-multiple", args->server.builder.pad_to_multiple,
                 "Round each batch's padded length up to a multiple (few distinct shapes)")
      ->capture_default_str();
  app.add_option("--resident-mb", args->resident_mb, "Keep the corpus's token ids in memory up to this size")
      ->capture_default_str();
  app.add_option("--progress-every-s", args->server.progress_every_s, "Seconds between progress lines")
      ->capture_default_str();
  app.add_flag("--without-checkpoints", args->without_checkpoints,
               "For data-only consumers (benchmarks, protocol tests): commit no checkpoints, end when every step is "
               "acknowledged, and resume a restarted run at the ledger's cursor instead of the latest checkpoint");
  app.add_option("--http-bind", args->http_bind,
                 "Status HTTP (/status, /metrics, / dashboard) on HOST:PORT; port 0 picks a free one, 'off' serves "
                 "none. The URL is written to RUN_DIR/coordinator/http")
      ->capture_default_str();
  app.add_option("--http-linger-ms", args->http_linger_ms,
                 "Keep serving the final status this long after the run ended (SIGINT/SIGTERM cut it short)")
      ->capture_default_str();
  app.add_option("--straggler-factor", args->straggler_factor,
                 "A worker busy (compute + data wait) over this x the median of all workers ...")
      ->capture_default_str();
  app.add_option("--straggler-steps", args->straggler_steps, "... for this many steps in a row is a straggler")
      ->capture_default_str();
  app.add_option("--keys", args->keys_dir,
                 "CURVE key directory (server.secret, worker.pub, ...); default RUN_DIR/keys, generated on the first "
                 "start and reused on resume. Workers need its server.pub and worker.secret");
  app.add_flag("--insecure", args->insecure,
               "No CURVE authentication or encryption: any host that reaches --bind can join the run and read its "
               "batches (trusted networks and debugging only)");
  app.add_option("--max-peers", args->server.max_peers,
                 "Refuse new handshakes while this many connections are open (0: 2 x world size + 16)")
      ->capture_default_str();
  app.add_option("--max-unacked", args->server.max_unacked,
                 "Batches sent to a worker and not acknowledged, at most (0: 2 x (prefetch + micro-batches))")
      ->capture_default_str();
  app.add_option("--http-token-file", args->http_token_file,
                 "The status HTTP requires 'Authorization: Bearer TOKEN', TOKEN being this file's first line");
  app.add_option("--dump-ledger", args->dump_ledger,
                 "Print the ledger of RUN_DIR as JSON lines (meta, epochs, batches) and exit");
}

int Serve(Args& args) {
  bert::Status checked = CheckArgs(args);
  if (!checked.ok()) return Fail(checked);
  bert::Result<bert::RunConfig> config = bert::LoadRunConfig(args.config_path);
  if (!config.ok()) return Fail(config.status());
  const std::string run_dir = args.run_dir.empty() ? config->run_dir : args.run_dir;
  bert::ServerOptions& options = args.server;
  options.run_id = args.run_id.empty() ? config->name : args.run_id;
  options.total_steps = static_cast<uint64_t>(config->train.steps);
  options.stop = &g_stop;
  options.checkpoint_and_stop = &g_checkpoint_and_stop;
  auto geometry = bert::DispatchGeometry::Make(config->train.global_batch_size, args.world_size,
                                               config->train.micro_batch_size);
  if (!geometry.ok()) return Fail(geometry.status());
  auto data = bert::OpenDataSource(*config, std::min<uint64_t>(args.resident_mb, uint64_t{1} << 40) << 20);
  if (!data.ok()) return Fail(data.status());

  // The keys first: a coordinator that refuses to start (a key file others
  // can read) must leave the run's ledger and checkpoints as they were.
  if (args.insecure) {
    LOG(WARNING) << "[coord] --insecure: workers are not authenticated and batches travel in the clear";
  } else {
    const std::string keys_dir = args.keys_dir.empty() ? bert::KeysDir(run_dir) : args.keys_dir;
    std::error_code ignored;
    std::filesystem::create_directories(std::filesystem::path(keys_dir).parent_path(), ignored);  // a new run
    bool created = false;
    bert::Result<bert::ServerKeys> keys = bert::LoadOrCreateServerKeys(keys_dir, &created);
    if (!keys.ok()) return Fail(keys.status());
    LOG(INFO) << "[coord] CURVE on: " << (created ? "generated" : "reusing") << " the run's keys in " << keys_dir
              << " (server " << bert::KeyTag(keys->server.public_z85) << "..., workers "
              << bert::KeyTag(keys->worker_public_z85) << "...)";
    options.keys = *keys;
  }

  bert::LedgerMeta meta;
  meta.run_id = options.run_id;
  meta.global_batch_size = geometry->global_batch_size;
  meta.seed = data->options.seed;
  meta.max_seq_len = data->options.max_seq_len;
  meta.max_predictions = data->options.masking.max_predictions;
  meta.masked_lm_prob = data->options.masking.masked_lm_prob;
  meta.short_seq_prob = data->options.short_seq_prob;
  meta.whole_word_masking = data->options.masking.whole_word;
  meta.chinese_whole_word = data->options.masking.chinese_words;
  meta.objective = bert::ObjectiveName(data->options.objective);
  meta.packing = data->options.packing;
  meta.corpus_fingerprint = data->fingerprint;
  meta.world_size = geometry->world_size;
  meta.micro_batch_size = geometry->micro_batch_size;
  meta.total_steps = options.total_steps;
  // Training state is as new as the latest good checkpoint: resume there.
  std::optional<uint64_t> resume_at;
  std::string resume_checkpoint;
  double budget_used_s = 0;
  options.time_budget_s = config->train.time_budget_s;
  if (!args.without_checkpoints) {
    bert::CheckpointStore store(run_dir);
    std::vector<std::string> skipped;
    bert::Result<bert::LoadedCheckpoint> latest = store.LoadLatest(&skipped);
    for (const std::string& line : skipped) LOG(WARNING) << "[coord] skipped a damaged checkpoint: " << line;
    if (latest.ok()) {
      if (latest->manifest.run_id != options.run_id) {
        return Fail(bert::Status::FailedPrecondition(latest->dir + ": checkpoint of run " + latest->manifest.run_id +
                                                     ", not of " + options.run_id));
      }
      resume_at = latest->manifest.step;
      resume_checkpoint = bert::CheckpointStore::StepName(latest->manifest.step);
      // A time-budget run: what its sessions have spent, and whether it is over.
      const bert::TimeBudgetAccount account = bert::TimeBudgetAccountOf(latest->manifest);
      budget_used_s = account.train_seconds;
      if (account.spent) {
        options.budget_end_step = latest->manifest.step;
        LOG(INFO) << "[coord] " << latest->dir << ": the run's time budget was spent at step "
                  << latest->manifest.step << "; the run is complete (a new budget needs a new run)";
      }
    } else if (latest.status().code() == bert::Status::Code::kNotFound) {
      resume_at = 0;
    } else {
      LOG(ERROR) << "[coord] " << latest.status().message();
      return bert::kExitBadData;
    }
  }
  if (resume_checkpoint.empty() && !config->train.init_from.empty()) {
    bert::Status usable = CheckInitFrom(*config, data->vocab_checksum);
    if (!usable.ok()) return Fail(usable);
  }
  auto ledger = bert::Ledger::Open(bert::LedgerDir(run_dir), meta, resume_at);
  if (!ledger.ok()) return Fail(ledger.status());
  if (!resume_checkpoint.empty() || ((*ledger)->rewound_from() && *(*ledger)->rewound_from() > 0)) {
    LOG(INFO) << "[coord] resuming from "
              << (resume_checkpoint.empty() ? std::string("the start (no checkpoint yet)") : resume_checkpoint)
              << " at step " << (*ledger)->cursor() << " (the ledger was at step "
              << (*ledger)->rewound_from().value_or(0) << ")";
  }
  options.resume_checkpoint = resume_checkpoint;
  options.checkpoint_every = static_cast<uint64_t>(config->checkpoint.every_steps);
  bert::CommitterOptions committer_options;
  committer_options.run_dir = run_dir;
  committer_options.run_id = options.run_id;
  committer_options.config_yaml = config->ToYaml();
  committer_options.vocab_checksum = data->vocab_checksum;
  committer_options.world_size = geometry->world_size;
  committer_options.total_steps = options.total_steps;
  committer_options.every_steps = static_cast<uint64_t>(config->checkpoint.every_steps);
  committer_options.keep_last = config->checkpoint.keep_last;
  committer_options.keep_every = static_cast<uint64_t>(config->checkpoint.keep_every);
  // Epochs of steps, for the manifests: the same walk as the builders'.
  bert::StepMapper epochs(geometry->global_batch_size, [&](uint64_t epoch) -> bert::Result<uint64_t> {
    auto known = (*ledger)->EpochSize(epoch);
    if (!known.ok()) return known.status();
    if (known->has_value()) return **known;
    return bert::Status::NotFound("epoch " + std::to_string(epoch) + " not built yet");
  });
  bert::CheckpointCommitter committer(committer_options, [&](uint64_t step) -> uint64_t {
    auto location = epochs.Locate(step >= options.total_steps ? step - 1 : step);
    // A time budget's last step: its next step's samples may not be built.
    if (!location.ok() && step > 0) location = epochs.Locate(step - 1);
    return location.ok() ? location->epoch : 0;
  });
  if (resume_at) committer.SetResumedFrom(*resume_at);
  options.committer = args.without_checkpoints ? nullptr : &committer;
  LOG(INFO) << "[coord] run " << options.run_id << ", session " << (*ledger)->meta().session << ": step "
            << (*ledger)->cursor() << " of " << options.total_steps << " (" << (*ledger)->dropped_on_resume()
            << " unfinished batches of the last session will be sent again); world size " << geometry->world_size
            << ", per rank and step " << geometry->micro_batches << " micro-batches of " << geometry->micro_batch_size
            << " samples; corpus " << data->index->num_documents() << " documents";

  // Monitoring: the board sees what the server sees; the service serves it
  // over HTTP and keeps RUN_DIR/coordinator/status.json current.
  bert::StatusBoardOptions board_options;
  board_options.run_id = options.run_id;
  board_options.total_steps = options.total_steps;
  board_options.start_step = (*ledger)->cursor();
  board_options.world_size = geometry->world_size;
  board_options.global_batch_size = geometry->global_batch_size;
  board_options.checkpoints = !args.without_checkpoints;
  board_options.checkpoint_every = options.checkpoint_every;
  board_options.resumed_from = resume_checkpoint;
  board_options.restarts = (*ledger)->meta().session > 0 ? (*ledger)->meta().session - 1 : 0;
  board_options.log_every_steps = static_cast<int>(std::min<int64_t>(config->log.every_steps, 1 << 30));
  board_options.metrics_path = run_dir + "/metrics.jsonl";  // this run's only writer in distributed runs
  board_options.heartbeat_interval_ms = options.heartbeat_interval_ms;
  board_options.heartbeat_timeout_ms = options.heartbeat_timeout_ms;
  board_options.straggler_factor = args.straggler_factor;
  board_options.straggler_steps = args.straggler_steps;
  board_options.time_budget_s = config->train.time_budget_s;
  board_options.budget_used_s = budget_used_s;
  bert::StatusBoard board(board_options, bert::MonotonicMs());
  bert::Status metrics_opened = board.OpenMetricsFile();
  if (!metrics_opened.ok()) return Fail(metrics_opened);
  options.board = &board;
  bert::SecurityCounters security_counters;
  options.counters = &security_counters;
  bert::StatusService status(&board, run_dir + "/coordinator/status.json");
  status.SetSecurityCounters(&security_counters);
  if (!args.http_token_file.empty()) {
    bert::Result<std::string> token = bert::ReadBearerToken(args.http_token_file);
    if (!token.ok()) return Fail(token.status());
    status.SetBearerToken(*token);
  }
  bert::Result<std::string> url = status.Start(args.http_bind == "off" ? "" : args.http_bind);
  if (!url.ok()) return Fail(url.status());
  if (!url->empty()) {
    bert::Status written = bert::WriteFileAtomic(run_dir + "/coordinator/http", *url + "\n");
    if (!written.ok()) return Fail(written);
    LOG(INFO) << "[coord] status at " << *url << " (/status, /metrics; RUN_DIR/coordinator/http)";
  }

  int exit_code;
  {
    bert::Server server(options, *data, *geometry, ledger->get());
    bert::Result<std::string> endpoint = server.Bind();
    if (!endpoint.ok()) return Fail(endpoint.status());
    // Launchers and tests read the bound endpoint (port * resolved) from here.
    bert::Status written = bert::WriteFileAtomic(run_dir + "/coordinator/endpoint", *endpoint + "\n");
    if (!written.ok()) return Fail(written);
    LOG(INFO) << "[coord] serving on " << *endpoint << " (prefetch " << options.prefetch << ", heartbeat "
              << options.heartbeat_interval_ms << "/" << options.heartbeat_timeout_ms << " ms)";
    exit_code = server.Run();
    bert::Status stats = bert::WriteFileAtomic(run_dir + "/coordinator/stats.json", server.stats().ToJson() + "\n");
    if (!stats.ok()) LOG(WARNING) << "[coord] " << stats.message();
    status.WriteStatusFile();
  }  // the server's destructor lingers until the final Done/Abort left
  for (int waited = 0; waited < args.http_linger_ms && !g_stop.load(); waited += 50) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  status.Stop();
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  bert::InitLogging(argv[0]);
  CLI::App app{"bert-coordinator: serves MLM/NSP batches of a run's corpus to its workers over ZeroMQ,\n"
               "with credit-based prefetch, heartbeats and a RocksDB dispatch ledger (RUN_DIR/coordinator/ledger)."};
  app.footer(
      "Example: bert-coordinator --config runs/demo.yaml --bind tcp://0.0.0.0:5555 --world-size 4\n"
      "The bound endpoint is written to RUN_DIR/coordinator/endpoint, final counters to stats.json.\n"
      "Monitoring: the status URL (--http-bind) goes to RUN_DIR/coordinator/http, the status to\n"
      "RUN_DIR/coordinator/status.json (every 2 s and at exit), one line per log.every_steps steps to\n"
      "RUN_DIR/metrics.jsonl; `bertctl status RUN_DIR` shows them.\n"
      "A restarted coordinator resumes from the ledger's cursor (the first step not acknowledged by all ranks).\n"
      "Exit codes: 0 run complete, 1 error, 2 bad flag/config, 3 a worker died (the others were told to abort),\n"
      "5 not all ranks registered in time, 6 interrupted (SIGINT/SIGTERM), 7 damaged checkpoints only,\n"
      "8 preempted (SIGUSR1; a checkpoint is committed).\n"
      "SIGUSR1 (preemption, a Slurm time limit): checkpoint at the next step boundary (the ranks take it after\n"
      "the step they are in), stop the workers once it is committed, exit 8; a restart resumes from it.\n"
      "Checkpoints: workers write shards into RUN_DIR/checkpoints/.staging-step-N, the coordinator commits\n"
      "them (manifest.json last, rename, latest); a restart resumes from the latest good one.\n"
      "Security (coordinator/SECURITY.md): CURVE with the run's keys in RUN_DIR/keys (generated on the first\n"
      "start; workers need server.pub and worker.secret) unless --insecure; --http-token-file for the status HTTP.");
  Args args;
  AddOptions(app, &args);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? bert::kExitOk : bert::kExitUsage;
  }
  if (!args.dump_ledger.empty()) return DumpLedger(args.dump_ledger);
  if (args.config_path.empty()) {
    LOG(ERROR) << "[coord] --config: required (or --dump-ledger RUN_DIR)";
    return bert::kExitUsage;
  }
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGUSR1, OnCheckpointSignal);
  return Serve(args);
}
