#include "common/run_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>
#include <sstream>

#include "common/error_text.h"
#include "common/file_util.h"
#include "common/yaml_section.h"

namespace bert {
namespace {

namespace fs = std::filesystem;

std::string Resolve(const std::string& base_dir, const std::string& path) {
  if (path.empty() || fs::path(path).is_absolute() || base_dir.empty()) return path;
  return (fs::path(base_dir) / path).lexically_normal().string();
}

Status Check(bool ok, const std::string& key, const std::string& what) {
  return ok ? Status::Ok() : Status::InvalidArgument(key + ": " + what);
}

template <typename T>
std::string Got(T value) {
  std::ostringstream out;
  out << ", got " << value;
  return out.str();
}

}  // namespace

Result<int64_t> ParseTimeBudget(const std::string& text) {
  const auto bad = [&] {
    return Status::InvalidArgument("not a duration: '" + OneLineText(text) +
                                   "' (write e.g. 30m, 1h30m, 90s or 2d; a bare number is seconds)");
  };
  if (text.empty()) return int64_t{0};
  int64_t total = 0;
  size_t i = 0;
  std::string units_seen;
  while (i < text.size()) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) return bad();
    int64_t value = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      value = value * 10 + (text[i] - '0');
      if (value > int64_t{1} << 40) return bad();
      ++i;
    }
    int64_t unit = 1;
    if (i < text.size()) {
      const char u = text[i++];
      unit = u == 'd' ? 86400 : u == 'h' ? 3600 : u == 'm' ? 60 : u == 's' ? 1 : 0;
      // Units at most once each, largest first (1h30m, not 30m1h).
      const std::string order = "dhms";
      if (unit == 0 || units_seen.find(u) != std::string::npos ||
          (!units_seen.empty() && order.find(u) < order.find(units_seen.back()))) {
        return bad();
      }
      units_seen += u;
    } else if (!units_seen.empty()) {
      return bad();  // "1h30": say the unit
    }
    total += value * unit;
    if (total > int64_t{1} << 40) return bad();
  }
  return total;
}

std::string FormatTimeBudget(int64_t seconds) {
  if (seconds <= 0) return "";
  std::string out;
  const std::pair<int64_t, char> units[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
  for (const auto& [size, name] : units) {
    if (seconds >= size) {
      out += std::to_string(seconds / size) + name;
      seconds %= size;
    }
  }
  return out;
}

Status RunConfig::Validate() const {
  const TrainConfig& t = train;
  const DataConfig& d = data;
  const Status checks[] = {
      Check(!name.empty() && name.find('/') == std::string::npos, "name", "must be a non-empty name without '/'"),
      Check(!model.empty(), "model", "is required: the model's config.json (see configs/models/)"),
      Check(!d.db.empty(), "data.db", "is required: one or more corpus databases from bertctl prepare"),
      Check(d.max_seq_len >= 8 && d.max_seq_len <= 8192, "data.max_seq_len", "must be in [8, 8192]" + Got(d.max_seq_len)),
      Check(d.max_predictions >= 1 && d.max_predictions <= d.max_seq_len, "data.max_predictions",
            "must be in [1, max_seq_len]" + Got(d.max_predictions)),
      Check(d.masked_lm_prob > 0 && d.masked_lm_prob < 1, "data.masked_lm_prob", "must be in (0, 1)" + Got(d.masked_lm_prob)),
      Check(d.short_seq_prob >= 0 && d.short_seq_prob <= 1, "data.short_seq_prob",
            "must be in [0, 1]" + Got(d.short_seq_prob)),
      Check(d.objective == "mlm_nsp" || d.objective == "mlm" || d.objective == "mlm_sop", "data.objective",
            "must be mlm_nsp, mlm or mlm_sop, got " + d.objective),
      Check(!d.chinese_whole_word || d.whole_word_masking, "data.chinese_whole_word",
            "needs data.whole_word_masking: true (it adds Chinese words to the words masked whole)"),
      Check(!d.packing || d.objective == "mlm", "data.packing",
            "needs data.objective: mlm (a packed sample has no sentence pair), got " + d.objective),
      Check(t.global_batch_size >= 1, "train.global_batch_size", "must be >= 1" + Got(t.global_batch_size)),
      Check(t.micro_batch_size >= 0, "train.micro_batch_size", "must be >= 0 (0: global / world size)" + Got(t.micro_batch_size)),
      Check(t.steps >= 1, "train.steps", "must be >= 1" + Got(t.steps)),
      Check(t.time_budget_s >= 0 && t.time_budget_s <= 366 * 86400, "train.time_budget",
            "must be in [1s, 366d] (empty: no budget)" + Got(t.time_budget_s)),
      Check(t.optimizer == "adamw" || t.optimizer == "lamb", "train.optimizer", "must be adamw or lamb, got " + t.optimizer),
      Check(t.lr > 0 && t.lr < 1, "train.lr", "must be in (0, 1)" + Got(t.lr)),
      Check(t.weight_decay >= 0 && t.weight_decay < 1, "train.weight_decay", "must be in [0, 1)" + Got(t.weight_decay)),
      Check(t.beta1 >= 0 && t.beta1 < 1, "train.beta1", "must be in [0, 1)" + Got(t.beta1)),
      Check(t.beta2 >= 0 && t.beta2 < 1, "train.beta2", "must be in [0, 1)" + Got(t.beta2)),
      Check(t.eps > 0, "train.eps", "must be > 0" + Got(t.eps)),
      Check(t.warmup_steps >= 0 && t.warmup_steps <= t.steps, "train.warmup_steps",
            "must be in [0, train.steps]" + Got(t.warmup_steps)),
      Check(t.schedule == "linear" || t.schedule == "polynomial" || t.schedule == "cosine" || t.schedule == "constant",
            "train.schedule", "must be linear, polynomial, cosine or constant, got " + t.schedule),
      Check(t.end_lr_ratio >= 0 && t.end_lr_ratio <= 1, "train.end_lr_ratio", "must be in [0, 1]" + Got(t.end_lr_ratio)),
      Check(t.poly_power > 0, "train.poly_power", "must be > 0" + Got(t.poly_power)),
      Check(t.max_grad_norm >= 0, "train.max_grad_norm", "must be >= 0 (0 disables clipping)" + Got(t.max_grad_norm)),
      Check(t.intra_op_threads >= 1 && t.intra_op_threads <= 256, "train.intra_op_threads",
            "must be in [1, 256]" + Got(t.intra_op_threads)),
      Check(t.device == "auto" || t.device == "cpu" || t.device == "cuda", "train.device",
            "must be auto, cpu or cuda, got " + t.device),
      Check(t.precision == "fp32" || t.precision == "bf16", "train.precision",
            "must be fp32 or bf16, got " + t.precision),
      Check(!(t.precision == "bf16" && t.device == "cpu"), "train.precision",
            "bf16 runs on CUDA only; use fp32 with train.device: cpu"),
      Check(t.anomaly.action == "rollback" || t.anomaly.action == "off", "train.anomaly.action",
            "must be rollback or off, got " + t.anomaly.action),
      Check(t.anomaly.loss_spike == 0 || t.anomaly.loss_spike > 1, "train.anomaly.loss_spike",
            "must be 0 (not checked) or > 1 (a multiple of the median loss)" + Got(t.anomaly.loss_spike)),
      Check(t.anomaly.grad_norm_spike == 0 || t.anomaly.grad_norm_spike > 1, "train.anomaly.grad_norm_spike",
            "must be 0 (not checked) or > 1 (a multiple of the median gradient norm)" + Got(t.anomaly.grad_norm_spike)),
      Check(t.anomaly.median_window >= 10 && t.anomaly.median_window <= 100000, "train.anomaly.median_window",
            "must be in [10, 100000]" + Got(t.anomaly.median_window)),
      Check(t.anomaly.max_skips >= 0, "train.anomaly.max_skips", "must be >= 0" + Got(t.anomaly.max_skips)),
      Check(t.anomaly.skip_window >= 1, "train.anomaly.skip_window", "must be >= 1" + Got(t.anomaly.skip_window)),
      Check(std::all_of(t.anomaly.skip_steps.begin(), t.anomaly.skip_steps.end(),
                        [&](int64_t step) { return step >= 0 && step < t.steps; }),
            "train.anomaly.skip_steps", "must be steps in [0, train.steps)"),
      Check(log.every_steps >= 1, "log.every_steps", "must be >= 1" + Got(log.every_steps)),
      Check(checkpoint.every_steps >= 0, "checkpoint.every_steps",
            "must be >= 0 (0: only after the last step)" + Got(checkpoint.every_steps)),
      Check(checkpoint.keep_last >= 1 && checkpoint.keep_last <= 1000000, "checkpoint.keep_last",
            "must be >= 1" + Got(checkpoint.keep_last)),
      Check(checkpoint.keep_every >= 0, "checkpoint.keep_every", "must be >= 0" + Got(checkpoint.keep_every)),
  };
  // The messages quote values from the file (train.optimizer, train.device...),
  // which may hold control bytes: escaped to keep the error one line.
  for (const Status& st : checks) {
    if (!st.ok()) return Status::InvalidArgument(OneLineText(st.message()));
  }
  return Status::Ok();
}

Result<RunConfig> ParseRunConfig(const std::string& yaml_text, const std::string& where,
                                 const std::string& base_dir) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(where + ": not valid YAML: " + OneLineText(e.msg) + " (line " + std::to_string(e.mark.line + 1) +
                                   ")");
  }
  RunConfig c;
  Status error;
  YamlSection top(root, "", &error);
  top.Get("name", &c.name);
  top.Get("run_dir", &c.run_dir);
  top.Get("model", &c.model);
  top.Get("vocab", &c.vocab);
  top.Get("lower_case", &c.lower_case);
  YamlSection data(top.Child("data"), "data.", &error);
  data.GetStrings("db", &c.data.db, /*scalar_ok=*/true, "must be a path or a list of paths");
  data.Get("seed", &c.data.seed);
  data.Get("max_seq_len", &c.data.max_seq_len);
  data.Get("max_predictions", &c.data.max_predictions);
  data.Get("masked_lm_prob", &c.data.masked_lm_prob);
  data.Get("short_seq_prob", &c.data.short_seq_prob);
  data.Get("whole_word_masking", &c.data.whole_word_masking);
  data.Get("chinese_whole_word", &c.data.chinese_whole_word);
  data.Get("objective", &c.data.objective);
  data.Get("packing", &c.data.packing);
  YamlSection train(top.Child("train"), "train.", &error);
  TrainConfig& t = c.train;
  train.Get("global_batch_size", &t.global_batch_size);
  train.Get("micro_batch_size", &t.micro_batch_size);
  train.Get("steps", &t.steps);
  std::string budget = FormatTimeBudget(t.time_budget_s);
  train.Get("time_budget", &budget);
  Result<int64_t> budget_s = ParseTimeBudget(budget);
  if (budget_s.ok()) {
    t.time_budget_s = *budget_s;
  } else if (error.ok()) {
    error = Status::InvalidArgument("train.time_budget: " + budget_s.status().message());
  }
  train.Get("optimizer", &t.optimizer);
  train.Get("lr", &t.lr);
  train.Get("weight_decay", &t.weight_decay);
  train.Get("beta1", &t.beta1);
  train.Get("beta2", &t.beta2);
  train.Get("eps", &t.eps);
  train.Get("warmup_steps", &t.warmup_steps);
  train.Get("schedule", &t.schedule);
  train.Get("end_lr_ratio", &t.end_lr_ratio);
  train.Get("poly_power", &t.poly_power);
  train.Get("max_grad_norm", &t.max_grad_norm);
  train.Get("init_seed", &t.init_seed);
  train.Get("intra_op_threads", &t.intra_op_threads);
  train.Get("device", &t.device);
  train.Get("precision", &t.precision);
  train.Get("tf32", &t.tf32);
  train.Get("activation_checkpointing", &t.activation_checkpointing);
  train.Get("dropout", &t.dropout);
  train.Get("init_from", &t.init_from);
  YamlSection anomaly(train.Child("anomaly"), "train.anomaly.", &error);
  anomaly.Get("action", &t.anomaly.action);
  anomaly.Get("loss_spike", &t.anomaly.loss_spike);
  anomaly.Get("grad_norm_spike", &t.anomaly.grad_norm_spike);
  anomaly.Get("median_window", &t.anomaly.median_window);
  anomaly.Get("max_skips", &t.anomaly.max_skips);
  anomaly.Get("skip_window", &t.anomaly.skip_window);
  anomaly.Get("skip_steps", &t.anomaly.skip_steps);
  YamlSection log(top.Child("log"), "log.", &error);
  log.Get("every_steps", &c.log.every_steps);
  YamlSection checkpoint(top.Child("checkpoint"), "checkpoint.", &error);
  checkpoint.Get("every_steps", &c.checkpoint.every_steps);
  checkpoint.Get("keep_last", &c.checkpoint.keep_last);
  checkpoint.Get("keep_every", &c.checkpoint.keep_every);
  for (YamlSection* s : {&data, &anomaly, &train, &log, &checkpoint, &top}) s->RejectUnknownKeys();
  if (!error.ok()) return Status::InvalidArgument(where + ": " + error.message());
  // One rule for every path in the file: relative to the file's directory.
  // Without run_dir the run goes to runs/NAME under the current directory
  // (as bertctl pretrain --name NAME does).
  // (absolute, so that the resolved YAML reads back the same anywhere).
  c.run_dir = c.run_dir.empty() ? (fs::current_path() / "runs").string() + "/" + c.name : Resolve(base_dir, c.run_dir);
  c.model = Resolve(base_dir, c.model);
  c.vocab = Resolve(base_dir, c.vocab);
  c.train.init_from = Resolve(base_dir, c.train.init_from);
  for (std::string& db : c.data.db) db = Resolve(base_dir, db);
  Status valid = c.Validate();
  if (!valid.ok()) return Status::InvalidArgument(where + ": " + valid.message());
  return c;
}

Result<RunConfig> LoadRunConfig(const std::string& path) {
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ParseRunConfig(*text, path, fs::path(path).parent_path().string());
}

namespace {

// A string that reads back the same: double-quoted (escaped) when it holds
// control bytes, which a plain scalar would lose (a trailing CR;
// run_config_fuzz).
struct Quoted {
  const std::string& text;
};
YAML::Emitter& operator<<(YAML::Emitter& out, const Quoted& value) {
  const bool control = std::any_of(value.text.begin(), value.text.end(),
                                   [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
  if (control) out << YAML::DoubleQuoted;
  return out << value.text;
}

}  // namespace

std::string RunConfig::ToYaml() const {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << Quoted{name} << YAML::Key << "run_dir" << YAML::Value
      << Quoted{run_dir};
  out << YAML::Key << "model" << YAML::Value << Quoted{model} << YAML::Key << "vocab" << YAML::Value << Quoted{vocab};
  out << YAML::Key << "lower_case" << YAML::Value << lower_case;
  out << YAML::Key << "data" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "db" << YAML::Value << YAML::BeginSeq;
  for (const std::string& db : data.db) out << Quoted{db};
  out << YAML::EndSeq;
  out << YAML::Key << "seed" << YAML::Value << data.seed;
  out << YAML::Key << "max_seq_len" << YAML::Value << data.max_seq_len;
  out << YAML::Key << "max_predictions" << YAML::Value << data.max_predictions;
  out << YAML::Key << "masked_lm_prob" << YAML::Value << data.masked_lm_prob;
  out << YAML::Key << "short_seq_prob" << YAML::Value << data.short_seq_prob;
  out << YAML::Key << "whole_word_masking" << YAML::Value << data.whole_word_masking;
  out << YAML::Key << "chinese_whole_word" << YAML::Value << data.chinese_whole_word;
  out << YAML::Key << "objective" << YAML::Value << Quoted{data.objective};
  out << YAML::Key << "packing" << YAML::Value << data.packing;
  out << YAML::EndMap;
  out << YAML::Key << "train" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "global_batch_size" << YAML::Value << train.global_batch_size;
  out << YAML::Key << "micro_batch_size" << YAML::Value << train.micro_batch_size;
  out << YAML::Key << "steps" << YAML::Value << train.steps;
  out << YAML::Key << "time_budget" << YAML::Value << Quoted{FormatTimeBudget(train.time_budget_s)};
  out << YAML::Key << "optimizer" << YAML::Value << train.optimizer;
  out << YAML::Key << "lr" << YAML::Value << train.lr;
  out << YAML::Key << "weight_decay" << YAML::Value << train.weight_decay;
  out << YAML::Key << "beta1" << YAML::Value << train.beta1;
  out << YAML::Key << "beta2" << YAML::Value << train.beta2;
  out << YAML::Key << "eps" << YAML::Value << train.eps;
  out << YAML::Key << "warmup_steps" << YAML::Value << train.warmup_steps;
  out << YAML::Key << "schedule" << YAML::Value << train.schedule;
  out << YAML::Key << "end_lr_ratio" << YAML::Value << train.end_lr_ratio;
  out << YAML::Key << "poly_power" << YAML::Value << train.poly_power;
  out << YAML::Key << "max_grad_norm" << YAML::Value << train.max_grad_norm;
  out << YAML::Key << "init_seed" << YAML::Value << train.init_seed;
  out << YAML::Key << "intra_op_threads" << YAML::Value << train.intra_op_threads;
  out << YAML::Key << "device" << YAML::Value << train.device;
  out << YAML::Key << "precision" << YAML::Value << train.precision;
  out << YAML::Key << "tf32" << YAML::Value << train.tf32;
  out << YAML::Key << "activation_checkpointing" << YAML::Value << train.activation_checkpointing;
  out << YAML::Key << "dropout" << YAML::Value << train.dropout;
  out << YAML::Key << "init_from" << YAML::Value << Quoted{train.init_from};
  const AnomalyConfig& a = train.anomaly;
  out << YAML::Key << "anomaly" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "action" << YAML::Value << Quoted{a.action};
  out << YAML::Key << "loss_spike" << YAML::Value << a.loss_spike;
  out << YAML::Key << "grad_norm_spike" << YAML::Value << a.grad_norm_spike;
  out << YAML::Key << "median_window" << YAML::Value << a.median_window;
  out << YAML::Key << "max_skips" << YAML::Value << a.max_skips;
  out << YAML::Key << "skip_window" << YAML::Value << a.skip_window;
  out << YAML::Key << "skip_steps" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (int64_t step : a.skip_steps) out << step;
  out << YAML::EndSeq << YAML::EndMap;
  out << YAML::EndMap;
  out << YAML::Key << "log" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "every_steps" << YAML::Value << log.every_steps;
  out << YAML::EndMap;
  out << YAML::Key << "checkpoint" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "every_steps" << YAML::Value << checkpoint.every_steps;
  out << YAML::Key << "keep_last" << YAML::Value << checkpoint.keep_last;
  out << YAML::Key << "keep_every" << YAML::Value << checkpoint.keep_every;
  out << YAML::EndMap << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace bert
