#include "finetune/finetune_config.h"

#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>

#include "common/error_text.h"
#include "common/file_util.h"
#include "common/yaml_section.h"

namespace bert::finetune {
namespace {

namespace fs = std::filesystem;

// class_weights: [] | balanced | [w0, w1, ...]
void GetClassWeights(YamlSection& section, const char* key, std::string* mode, std::vector<double>* weights) {
  YAML::Node value = section.Find(key);
  if (!value.IsDefined()) return;
  if (value.IsScalar()) {
    *mode = value.Scalar();
    if (*mode != "balanced") section.Fail(key, "must be balanced or a list of weights, got '" + *mode + "'");
    return;
  }
  try {
    *weights = value.as<std::vector<double>>();
    *mode = weights->empty() ? "" : "explicit";
  } catch (const YAML::Exception&) {
    section.Fail(key, "must be balanced or a list of numbers (" + YamlSection::Describe(value) + ")");
  }
}

Status Check(bool ok, const std::string& key, const std::string& what) {
  return ok ? Status::Ok() : Status::InvalidArgument(key + ": " + what);
}

// The shortest decimal that reads back as the same double (round trips).
std::string ShortestDouble(double value) {
  char buffer[64];
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", precision, value);
    if (std::strtod(buffer, nullptr) == value) break;
  }
  return buffer;
}

template <typename T>
std::string Got(T value) {
  std::ostringstream out;
  out << ", got " << value;
  return out.str();
}
std::string Got(double value) { return ", got " + ShortestDouble(value); }

const char* FormatName(FileFormat format) {
  switch (format) {
    case FileFormat::kJsonl: return "jsonl";
    case FileFormat::kCsv: return "csv";
    case FileFormat::kTsv: return "tsv";
    case FileFormat::kAuto: break;
  }
  return "auto";
}

// Range and enum checks; with `complete` also the keys a runnable job needs.
Status ValidateValues(const FinetuneConfig& c, bool complete) {
  std::set<std::string> distinct(c.labels.begin(), c.labels.end());
  bool labels_named = true;
  for (const std::string& label : c.labels) labels_named = labels_named && !label.empty();
  bool weights_positive = true;
  for (double w : c.class_weights) weights_positive = weights_positive && w > 0;
  const int32_t min_len = c.fields.text_pair.empty() ? 3 : 4;
  const Status checks[] = {
      Check(!c.init.empty(), "init", "must be none or a run, checkpoint or HuggingFace directory"),
      Check(!complete || !c.output.empty(), "output", "is required: the output directory"),
      Check(!complete || !c.train_file.empty(), "data.train", "is required: the training file"),
      Check(!complete || !c.dev_file.empty(), "data.dev", "is required: the dev file (model selection)"),
      Check(!c.fields.text.empty(), "data.text_field", "must not be empty"),
      Check(!c.fields.label.empty(), "data.label_field", "must not be empty"),
      Check(c.fields.text_pair != c.fields.text, "data.text_pair_field", "must differ from data.text_field"),
      Check(distinct.size() == c.labels.size() && labels_named, "labels", "must be distinct non-empty names"),
      Check(c.labels.empty() || c.labels.size() >= 2, "labels", "needs at least 2 labels" + Got(c.labels.size())),
      Check(c.max_seq_len >= min_len && c.max_seq_len <= 8192, "train.max_seq_len",
            "must be in [" + std::to_string(min_len) + ", 8192]" + Got(c.max_seq_len)),
      Check(c.batch_size >= 1 && c.batch_size <= 1 << 20, "train.batch_size", "must be >= 1" + Got(c.batch_size)),
      Check(c.epochs >= 1 && c.epochs <= 10000, "train.epochs", "must be in [1, 10000]" + Got(c.epochs)),
      Check(c.lr > 0 && c.lr < 1, "train.lr", "must be in (0, 1)" + Got(c.lr)),
      Check(c.warmup_ratio >= 0 && c.warmup_ratio <= 1, "train.warmup_ratio", "must be in [0, 1]" + Got(c.warmup_ratio)),
      Check(c.weight_decay >= 0 && c.weight_decay < 1, "train.weight_decay", "must be in [0, 1)" + Got(c.weight_decay)),
      Check(c.max_grad_norm >= 0, "train.max_grad_norm", "must be >= 0 (0 disables clipping)" + Got(c.max_grad_norm)),
      Check(c.intra_op_threads >= 1 && c.intra_op_threads <= 256, "train.intra_op_threads",
            "must be in [1, 256]" + Got(c.intra_op_threads)),
      Check(c.device == "auto" || c.device == "cpu" || c.device == "cuda", "train.device",
            "must be auto, cpu or cuda, got " + c.device),
      Check(c.eval_every_steps >= 0, "train.eval_every_steps",
            "must be >= 0 (0: after each epoch)" + Got(c.eval_every_steps)),
      Check(c.layer_lr_decay > 0 && c.layer_lr_decay <= 1, "train.layer_lr_decay",
            "must be in (0, 1] (1: off)" + Got(c.layer_lr_decay)),
      Check(c.freeze_layers >= 0, "train.freeze_layers", "must be >= 0" + Got(c.freeze_layers)),
      Check(c.loss == "cross_entropy" || c.loss == "focal", "loss.type", "must be cross_entropy or focal, got " + c.loss),
      Check(c.label_smoothing >= 0 && c.label_smoothing < 1, "loss.label_smoothing",
            "must be in [0, 1)" + Got(c.label_smoothing)),
      Check(c.focal_gamma >= 0, "loss.focal_gamma", "must be >= 0" + Got(c.focal_gamma)),
      Check(c.class_weights_mode.empty() || c.class_weights_mode == "balanced" || c.class_weights_mode == "explicit",
            "loss.class_weights", "must be [], balanced or a list of weights, got " + c.class_weights_mode),
      Check(c.class_weights_mode != "explicit" || !c.class_weights.empty(), "loss.class_weights",
            "is explicit but lists no weights"),
      Check(c.class_weights_mode == "explicit" || c.class_weights.empty(), "loss.class_weights",
            "lists weights but is not explicit"),
      Check(weights_positive, "loss.class_weights", "every weight must be > 0"),
      Check(c.class_weights.empty() || c.labels.empty() || c.class_weights.size() == c.labels.size(),
            "loss.class_weights", "needs one weight per label (" + std::to_string(c.labels.size()) + ")" +
                                      Got(c.class_weights.size())),
      Check(c.rdrop_alpha >= 0, "regularization.rdrop_alpha", "must be >= 0 (0: off)" + Got(c.rdrop_alpha)),
      Check(c.fgm_epsilon >= 0, "regularization.fgm_epsilon", "must be >= 0 (0: off)" + Got(c.fgm_epsilon)),
      Check(c.early_stopping_metric == "accuracy" || c.early_stopping_metric == "macro_f1" ||
                c.early_stopping_metric == "loss",
            "early_stopping.metric", "must be accuracy, macro_f1 or loss, got " + c.early_stopping_metric),
      Check(c.patience >= 0, "early_stopping.patience", "must be >= 0 (0: never stop early)" + Got(c.patience)),
      Check(c.distill_temperature > 0 && c.distill_temperature <= 100, "distill.temperature",
            "must be in (0, 100]" + Got(c.distill_temperature)),
      Check(c.distill_alpha >= 0 && c.distill_alpha <= 1, "distill.alpha", "must be in [0, 1]" + Got(c.distill_alpha)),
      Check(c.distill_transfer_file.empty() || !c.distill_teacher.empty(), "distill.transfer",
            "needs distill.teacher (the transfer set is labelled by the teacher)"),
  };
  for (const Status& st : checks) {
    // The message quotes values from the file (loss.type, train.device...),
    // which may hold control bytes: escaped to keep the error one line.
    if (!st.ok()) return Status::InvalidArgument(c.source + ": " + OneLineText(st.message()));
  }
  return Status::Ok();
}

std::string Resolve(const std::string& base_dir, const std::string& path) {
  if (path.empty() || base_dir.empty() || fs::path(path).is_absolute()) return path;
  return (fs::path(base_dir) / path).lexically_normal().string();
}

}  // namespace

Status FinetuneConfig::Validate() const { return ValidateValues(*this, /*complete=*/true); }

Result<FinetuneConfig> ParseFinetuneConfig(const std::string& yaml_text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(source + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML: " + OneLineText(e.msg));
  }
  FinetuneConfig c;
  c.source = source;
  Status error;
  std::string format = "auto";
  YamlSection top(root, "", &error, /*null_is_absent=*/true);
  top.Get("init", &c.init);
  top.Get("model", &c.model);
  top.Get("vocab", &c.vocab);
  top.Get("lower_case", &c.lower_case);
  top.Get("output", &c.output);
  top.GetStrings("labels", &c.labels, /*scalar_ok=*/false, "must be a list of names");
  YamlSection data(top.Child("data"), "data.", &error, true);
  data.Get("train", &c.train_file);
  data.Get("dev", &c.dev_file);
  data.Get("test", &c.test_file);
  data.Get("format", &format);
  data.Get("text_field", &c.fields.text);
  data.Get("text_pair_field", &c.fields.text_pair);
  data.Get("label_field", &c.fields.label);
  YamlSection train(top.Child("train"), "train.", &error, true);
  train.Get("max_seq_len", &c.max_seq_len);
  train.Get("batch_size", &c.batch_size);
  train.Get("epochs", &c.epochs);
  train.Get("lr", &c.lr);
  train.Get("warmup_ratio", &c.warmup_ratio);
  train.Get("weight_decay", &c.weight_decay);
  train.Get("max_grad_norm", &c.max_grad_norm);
  train.Get("seed", &c.seed);
  train.Get("intra_op_threads", &c.intra_op_threads);
  train.Get("device", &c.device);
  train.Get("eval_every_steps", &c.eval_every_steps);
  train.Get("layer_lr_decay", &c.layer_lr_decay);
  train.Get("freeze_embeddings", &c.freeze_embeddings);
  train.Get("freeze_layers", &c.freeze_layers);
  YamlSection loss(top.Child("loss"), "loss.", &error, true);
  loss.Get("type", &c.loss);
  loss.Get("label_smoothing", &c.label_smoothing);
  loss.Get("focal_gamma", &c.focal_gamma);
  GetClassWeights(loss, "class_weights", &c.class_weights_mode, &c.class_weights);
  YamlSection regularization(top.Child("regularization"), "regularization.", &error, true);
  regularization.Get("rdrop_alpha", &c.rdrop_alpha);
  regularization.Get("fgm_epsilon", &c.fgm_epsilon);
  YamlSection early(top.Child("early_stopping"), "early_stopping.", &error, true);
  early.Get("metric", &c.early_stopping_metric);
  early.Get("patience", &c.patience);
  YamlSection distill(top.Child("distill"), "distill.", &error, true);
  distill.Get("teacher", &c.distill_teacher);
  distill.Get("temperature", &c.distill_temperature);
  distill.Get("alpha", &c.distill_alpha);
  distill.Get("transfer", &c.distill_transfer_file);
  distill.Get("teacher_logits", &c.distill_teacher_logits);
  for (YamlSection* s : {&data, &train, &loss, &regularization, &early, &distill, &top}) s->RejectUnknownKeys();
  if (!error.ok()) return Status::InvalidArgument(source + ": " + error.message());
  Result<FileFormat> parsed_format = ParseFileFormat(format);
  if (!parsed_format.ok()) return Status::InvalidArgument(source + ": data.format: " + parsed_format.status().message());
  c.format = *parsed_format;
  BERT_RETURN_IF_ERROR(ValidateValues(c, /*complete=*/false));
  return c;
}

Result<FinetuneConfig> LoadFinetuneConfig(const std::string& path) {
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  Result<FinetuneConfig> config = ParseFinetuneConfig(*text, path);
  if (!config.ok()) return config;
  // Relative paths in the file are relative to the file's directory.
  const std::string base = fs::path(path).parent_path().string();
  FinetuneConfig& c = *config;
  for (std::string* p : {&c.model, &c.vocab, &c.output, &c.train_file, &c.dev_file, &c.test_file, &c.distill_teacher,
                         &c.distill_transfer_file, &c.distill_teacher_logits}) {
    *p = Resolve(base, *p);
  }
  if (c.init != "none") c.init = Resolve(base, c.init);
  return config;
}

std::string FinetuneConfigToYaml(const FinetuneConfig& c) {
  YAML::Emitter out;
  auto str = [&](const char* key, const std::string& value) {
    out << YAML::Key << key << YAML::Value << YAML::DoubleQuoted << value;
  };
  auto num = [&](const char* key, double value) {
    out << YAML::Key << key << YAML::Value << ShortestDouble(value);
  };
  auto strs = [&](const char* key, const std::vector<std::string>& values) {
    out << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const std::string& v : values) out << YAML::DoubleQuoted << v;
    out << YAML::EndSeq;
  };
  out << YAML::BeginMap;
  str("init", c.init);
  str("model", c.model);
  str("vocab", c.vocab);
  out << YAML::Key << "lower_case" << YAML::Value << c.lower_case;
  str("output", c.output);
  out << YAML::Key << "data" << YAML::Value << YAML::BeginMap;
  str("train", c.train_file);
  str("dev", c.dev_file);
  str("test", c.test_file);
  str("format", FormatName(c.format));
  str("text_field", c.fields.text);
  str("text_pair_field", c.fields.text_pair);
  str("label_field", c.fields.label);
  out << YAML::EndMap;
  strs("labels", c.labels);
  out << YAML::Key << "train" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "max_seq_len" << YAML::Value << c.max_seq_len;
  out << YAML::Key << "batch_size" << YAML::Value << c.batch_size;
  out << YAML::Key << "epochs" << YAML::Value << c.epochs;
  num("lr", c.lr);
  num("warmup_ratio", c.warmup_ratio);
  num("weight_decay", c.weight_decay);
  num("max_grad_norm", c.max_grad_norm);
  out << YAML::Key << "seed" << YAML::Value << c.seed;
  out << YAML::Key << "intra_op_threads" << YAML::Value << c.intra_op_threads;
  out << YAML::Key << "device" << YAML::Value << c.device;
  out << YAML::Key << "eval_every_steps" << YAML::Value << c.eval_every_steps;
  num("layer_lr_decay", c.layer_lr_decay);
  out << YAML::Key << "freeze_embeddings" << YAML::Value << c.freeze_embeddings;
  out << YAML::Key << "freeze_layers" << YAML::Value << c.freeze_layers;
  out << YAML::EndMap;
  out << YAML::Key << "loss" << YAML::Value << YAML::BeginMap;
  str("type", c.loss);
  num("label_smoothing", c.label_smoothing);
  num("focal_gamma", c.focal_gamma);
  if (c.class_weights_mode == "balanced") {
    str("class_weights", "balanced");
  } else {
    out << YAML::Key << "class_weights" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (double w : c.class_weights) out << ShortestDouble(w);
    out << YAML::EndSeq;
  }
  out << YAML::EndMap;
  out << YAML::Key << "regularization" << YAML::Value << YAML::BeginMap;
  num("rdrop_alpha", c.rdrop_alpha);
  num("fgm_epsilon", c.fgm_epsilon);
  out << YAML::EndMap;
  out << YAML::Key << "early_stopping" << YAML::Value << YAML::BeginMap;
  str("metric", c.early_stopping_metric);
  out << YAML::Key << "patience" << YAML::Value << c.patience;
  out << YAML::EndMap;
  out << YAML::Key << "distill" << YAML::Value << YAML::BeginMap;
  str("teacher", c.distill_teacher);
  num("temperature", c.distill_temperature);
  num("alpha", c.distill_alpha);
  str("transfer", c.distill_transfer_file);
  str("teacher_logits", c.distill_teacher_logits);
  out << YAML::EndMap << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace bert::finetune
