// PrometheusText (status_http.h): the text exposition format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/). Names
// follow Prometheus' conventions: base units (seconds, bytes), ratios in
// [0, 1] named *_ratio, counters end in _total; `promtool check metrics`
// accepts the output (tests/integration/worker/monitoring_test.cc).
#include <cmath>
#include <cstdio>

#include "coordinator/status_http.h"

namespace bert {
namespace {

using Json = nlohmann::json;

struct Family {
  const char* name;
  const char* type;  // gauge or counter
  const char* help;
  const char* key;   // in the status JSON (run level or a worker's entry)
  double scale;      // value = json[key] * scale
};

// Run-level figures, labelled {run}.
constexpr Family kRunFamilies[] = {
    {"bert_step", "gauge", "Optimizer steps completed by every rank", "step", 1},
    {"bert_total_steps", "gauge", "Optimizer steps of the whole run", "total_steps", 1},
    {"bert_progress_ratio", "gauge", "Steps completed over the run's steps", "progress", 1},
    {"bert_epoch", "gauge", "Epoch of the samples of the last completed step", "epoch", 1},
    {"bert_samples_seen_total", "counter", "Training samples of all completed steps (step x global batch size)",
     "samples_seen", 1},
    {"bert_world_size", "gauge", "Workers (ranks) of the run", "world_size", 1},
    {"bert_elapsed_seconds", "gauge", "Seconds since this coordinator started", "elapsed_s", 1},
    {"bert_loss", "gauge", "Loss (MLM + NSP) of the last completed step", "loss", 1},
    {"bert_loss_average", "gauge", "Mean loss over the last steps (average_steps of /status)", "loss_avg", 1},
    {"bert_mlm_accuracy_ratio", "gauge", "Masked-LM accuracy of the last completed step", "mlm_accuracy", 1},
    {"bert_mlm_accuracy_average_ratio", "gauge", "Masked-LM accuracy over the last steps", "mlm_accuracy_avg", 1},
    {"bert_nsp_accuracy_ratio", "gauge", "Next-sentence accuracy of the last completed step", "nsp_accuracy", 1},
    {"bert_nsp_accuracy_average_ratio", "gauge", "Next-sentence accuracy over the last steps", "nsp_accuracy_avg", 1},
    {"bert_learning_rate", "gauge", "Learning rate of the last update", "lr", 1},
    {"bert_grad_norm", "gauge", "Global gradient norm of the last update (before clipping)", "grad_norm", 1},
    {"bert_samples_per_second", "gauge", "Training samples per second over the last steps", "samples_per_s", 1},
    {"bert_tokens_per_second", "gauge", "Non-padding tokens per second over the last steps", "tokens_per_s", 1},
    {"bert_mfu_ratio", "gauge", "Model FLOPs utilization: model FLOP/s over the measured fp32 GEMM peak of all ranks",
     "mfu", 1},
    {"bert_data_wait_ratio", "gauge", "Fraction of step time the slowest rank waited for batches", "data_wait_fraction",
     1},
    {"bert_step_time_seconds", "gauge", "Mean step time over the last steps", "step_time_s", 1},
    {"bert_eta_seconds", "gauge", "Estimated seconds until the last step", "eta_s", 1},
    {"bert_last_checkpoint_step", "gauge", "Step of the last committed checkpoint (0: none)", "last_checkpoint_step",
     1},
    {"bert_restarts", "gauge", "Earlier coordinator sessions of this run (restarts)", "restarts", 1},
};

// Per worker, labelled {run, rank, host}.
constexpr Family kWorkerFamilies[] = {
    {"bert_worker_heartbeat_age_seconds", "gauge", "Seconds since the worker's last message", "heartbeat_age_s", 1},
    {"bert_worker_step", "gauge", "Steps the worker has acknowledged", "step", 1},
    {"bert_worker_step_time_seconds", "gauge", "Wall time of the worker's last complete step", "step_time_ms", 1e-3},
    {"bert_worker_compute_seconds", "gauge",
     "Forward, backward and update time of the worker's last step, without collectives and data waits", "compute_ms",
     1e-3},
    {"bert_worker_data_wait_seconds", "gauge", "Time the worker waited for batches in its last step", "data_wait_ms",
     1e-3},
    {"bert_worker_data_wait_ratio", "gauge", "Data wait over step time, last step", "data_wait_fraction", 1},
    {"bert_worker_resident_memory_bytes", "gauge", "Resident memory of the worker process", "rss_bytes", 1},
    {"bert_worker_slowness_ratio", "gauge", "Busy time (compute + data wait) over the median of all workers",
     "slowness", 1},
};

constexpr const char* kRunStates[] = {"starting", "recovering", "running", "checkpointing", "done", "preempted", "failed"};
constexpr const char* kWorkerStates[] = {"waiting", "alive", "late", "dead", "aborted", "stopped", "done"};

std::string Escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string Number(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char text[32];
  std::snprintf(text, sizeof(text), "%.10g", value);
  return text;
}

void Header(std::string* out, const char* name, const char* type, const char* help) {
  *out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void Sample(std::string* out, const char* name, const std::string& labels, double value) {
  *out += std::string(name) + "{" + labels + "} " + Number(value) + "\n";
}

std::string StringOr(const Json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

double NumberOr(const Json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_number() ? it->get<double>() : 0.0;
}

// The coordinator's SecurityCounters (authenticator.h), so that an alert can
// fire on refusals and rejected messages.
void SecurityMetrics(const Json& security, const std::string& run, std::string* out) {
  Header(out, "bert_security_connections_accepted_total", "counter",
         "TCP connections the coordinator's ZeroMQ socket accepted");
  Sample(out, "bert_security_connections_accepted_total", run, NumberOr(security, "connections_accepted"));
  Header(out, "bert_security_connections_open", "gauge", "Connections open now");
  Sample(out, "bert_security_connections_open", run, NumberOr(security, "connections_open"));
  Header(out, "bert_security_handshakes_admitted_total", "counter", "CURVE handshakes admitted");
  Sample(out, "bert_security_handshakes_admitted_total", run, NumberOr(security, "handshakes_admitted"));
  Header(out, "bert_security_refused_total", "counter",
         "Connections refused: a key not the run's (key), over the peer cap (peer_cap), a failed handshake (handshake)");
  Sample(out, "bert_security_refused_total", run + ",reason=\"key\"", NumberOr(security, "refused_key"));
  Sample(out, "bert_security_refused_total", run + ",reason=\"peer_cap\"", NumberOr(security, "refused_peer_cap"));
  Sample(out, "bert_security_refused_total", run + ",reason=\"handshake\"", NumberOr(security, "handshake_failed"));
  const auto rejects = security.find("rejects");
  if (rejects == security.end() || !rejects->is_object() || rejects->empty()) return;
  Header(out, "bert_security_rejected_messages_total", "counter",
         "Messages from admitted peers that were dropped, by reason");
  for (const auto& [reason, count] : rejects->items()) {
    Sample(out, "bert_security_rejected_messages_total", run + ",reason=\"" + Escape(reason) + "\"",
           count.is_number() ? count.get<double>() : 0.0);
  }
}

}  // namespace

std::string PrometheusText(const Json& status) {
  std::string out;
  const std::string run = "run=\"" + Escape(StringOr(status, "run")) + "\"";
  const std::string state = StringOr(status, "state");
  Header(&out, "bert_run_state", "gauge", "1 for the run's current state, 0 for the others");
  for (const char* name : kRunStates) {
    Sample(&out, "bert_run_state", run + ",state=\"" + name + "\"", state == name ? 1 : 0);
  }
  for (const Family& family : kRunFamilies) {
    const auto it = status.find(family.key);
    if (it == status.end() || !it->is_number()) continue;
    Header(&out, family.name, family.type, family.help);
    Sample(&out, family.name, run, it->get<double>() * family.scale);
  }
  const Json workers = status.value("workers", Json::array());
  std::vector<std::string> labels;
  for (const Json& worker : workers) {
    labels.push_back(run + ",rank=\"" + std::to_string(worker.value("rank", 0)) + "\",host=\"" +
                     Escape(StringOr(worker, "host")) + "\"");
  }
  if (const auto security = status.find("security"); security != status.end() && security->is_object()) {
    SecurityMetrics(*security, run, &out);
  }
  Header(&out, "bert_stragglers", "gauge", "Workers flagged as stragglers");
  Sample(&out, "bert_stragglers", run, static_cast<double>(status.value("stragglers", Json::array()).size()));
  if (workers.empty()) return out;
  Header(&out, "bert_worker_up", "gauge", "1 while the worker is heard from (alive or late)");
  for (size_t i = 0; i < workers.size(); ++i) {
    const std::string worker_state = StringOr(workers[i], "state");
    Sample(&out, "bert_worker_up", labels[i], worker_state == "alive" || worker_state == "late" ? 1 : 0);
  }
  Header(&out, "bert_worker_state", "gauge",
         "1 for the worker's current state (waiting, alive, late, dead, aborted, done), 0 for the others");
  for (size_t i = 0; i < workers.size(); ++i) {
    const std::string worker_state = StringOr(workers[i], "state");
    for (const char* name : kWorkerStates) {
      Sample(&out, "bert_worker_state", labels[i] + ",state=\"" + name + "\"", worker_state == name ? 1 : 0);
    }
  }
  Header(&out, "bert_worker_straggler", "gauge",
         "1 while the worker's busy time stays over the straggler factor x the median");
  for (size_t i = 0; i < workers.size(); ++i) {
    Sample(&out, "bert_worker_straggler", labels[i], workers[i].value("straggler", false) ? 1 : 0);
  }
  for (const Family& family : kWorkerFamilies) {
    bool header = false;
    for (size_t i = 0; i < workers.size(); ++i) {
      const auto it = workers[i].find(family.key);
      if (it == workers[i].end() || !it->is_number()) continue;
      if (!header) Header(&out, family.name, family.type, family.help);
      header = true;
      Sample(&out, family.name, labels[i], it->get<double>() * family.scale);
    }
  }
  return out;
}

}  // namespace bert
