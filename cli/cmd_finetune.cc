// bertctl finetune: checks a fine-tuning job without LibTorch (config, data
// files, labels, the init model and its vocabulary), freezes the resolved
// config into OUTPUT/finetune.yaml and runs `bert-worker --finetune` on it
// (under mpirun for --workers > 1), then prints the metrics tables from
// OUTPUT/metrics.json. The contract with bert-worker is in finetune/ and
// interop/pretrained.h.
// bertctl distill is the same job with a teacher (the distill.* keys):
// --student takes --init's place and may also be a model config.json.
#include <algorithm>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/finetune_common.h"
#include "cli/worker_launch.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/process.h"
#include "finetune/finetune_config.h"
#include "finetune/metrics.h"
#include "interop/pretrained.h"

namespace bert::cli {
namespace {

namespace fs = std::filesystem;
using finetune::FinetuneConfig;

constexpr uint32_t kMaxWorkers = 65536;

// Flags; each one given overrides the --config file's value.
struct FinetuneArgs {
  bool distill = false;     // bertctl distill (--teacher, --student, ...) rather than finetune
  std::string student;      // distill: RUN_DIR, CHECKPOINT_DIR, HF_DIR or an HF config.json (random weights)
  std::string config_path;  // "" = defaults only
  uint32_t workers = 1;
  std::string mpirun_args;  // extra mpirun flags, split on whitespace
  bool overwrite = false;   // replace a finished model in OUTPUT
  FinetuneConfig flags;     // values of the flags (only those given are used)
  CLI::App* cmd = nullptr;  // to ask which flags were given
};

// (finetune and distill have different flags: one the command lacks was not given.)
bool Given(const FinetuneArgs& args, const std::string& flag) {
  const CLI::Option* option = args.cmd->get_option_no_throw(flag);
  return option != nullptr && option->count() > 0;
}

// The config file (or defaults), then the flags.
Result<FinetuneConfig> MergeFlags(const FinetuneArgs& args) {
  FinetuneConfig c;
  c.source = "bertctl finetune";
  if (!args.config_path.empty()) {
    Result<FinetuneConfig> loaded = finetune::LoadFinetuneConfig(args.config_path);
    if (!loaded.ok()) return Status::InvalidArgument(loaded.status().message());  // unreadable: a bad flag too
    c = std::move(loaded).value();
  }
  const FinetuneConfig& f = args.flags;
  if (Given(args, "--init")) c.init = f.init == "none" ? f.init : AbsolutePath(f.init);
  if (Given(args, "--train")) c.train_file = f.train_file;
  if (Given(args, "--dev")) c.dev_file = f.dev_file;
  if (Given(args, "--test")) c.test_file = f.test_file;
  if (Given(args, "--output")) c.output = f.output;
  if (Given(args, "--vocab")) c.vocab = f.vocab;
  if (Given(args, "--model")) c.model = f.model;
  if (Given(args, "--epochs")) c.epochs = f.epochs;
  if (Given(args, "--lr")) c.lr = f.lr;
  if (Given(args, "--batch-size")) c.batch_size = f.batch_size;
  if (Given(args, "--max-seq-len")) c.max_seq_len = f.max_seq_len;
  if (Given(args, "--seed")) c.seed = f.seed;
  if (Given(args, "--text-field")) c.fields.text = f.fields.text;
  if (Given(args, "--text-pair-field")) c.fields.text_pair = f.fields.text_pair;
  if (Given(args, "--label-field")) c.fields.label = f.fields.label;
  if (args.distill) {
    c.source = "bertctl distill";
    if (Given(args, "--teacher")) c.distill_teacher = f.distill_teacher;
    if (Given(args, "--transfer")) c.distill_transfer_file = f.distill_transfer_file;
    if (Given(args, "--temperature")) c.distill_temperature = f.distill_temperature;
    if (Given(args, "--alpha")) c.distill_alpha = f.distill_alpha;
    if (Given(args, "--teacher-logits")) c.distill_teacher_logits = f.distill_teacher_logits;
    if (c.distill_teacher.empty()) {
      return Status::InvalidArgument("bertctl distill: --teacher: required (a fine-tuned classifier directory)");
    }
    if (Given(args, "--student")) {
      std::error_code ec;
      if (fs::is_regular_file(args.student, ec) && fs::path(args.student).extension() == ".json") {
        c.init = "none";  // a model config: the student starts from random weights
        c.model = args.student;
      } else {
        c.init = args.student;
      }
    }
    if (c.init == "none" && c.vocab.empty()) {
      // A student from scratch reads text as the teacher does.
      Result<PretrainedModel> teacher = LoadPretrained(AbsolutePath(c.distill_teacher), /*with_weights=*/false);
      if (!teacher.ok()) return Prefixed("teacher: ", teacher.status());
      c.vocab = AbsolutePath(c.distill_teacher) + "/vocab.txt";
      c.lower_case = teacher->do_lower_case;
    }
  }
  for (std::string* path : {&c.train_file, &c.dev_file, &c.test_file, &c.output, &c.vocab, &c.model,
                            &c.distill_teacher, &c.distill_transfer_file, &c.distill_teacher_logits}) {
    *path = AbsolutePath(*path);
  }
  if (c.init != "none") c.init = AbsolutePath(c.init);
  BERT_RETURN_IF_ERROR(c.Validate());
  if (c.batch_size % static_cast<int32_t>(args.workers) != 0) {
    return Status::InvalidArgument(c.source + ": train.batch_size " + std::to_string(c.batch_size) +
                                   " is not a multiple of --workers " + std::to_string(args.workers));
  }
  return c;
}

// The bundled bert-tiny config: ./configs, or the source tree above the
// build's bin/ (build/bin/bertctl -> configs/ two levels up).
std::string DefaultModelConfig() {
  const std::string relative = "configs/models/bert-tiny.json";
  if (fs::exists(relative)) return AbsolutePath(relative);
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  for (const fs::path& base : {self.parent_path().parent_path(), self.parent_path().parent_path().parent_path()}) {
    if (!ec && fs::exists(base / relative)) return (base / relative).lexically_normal().string();
  }
  return "";
}

// The model config and vocabulary the job starts from; checks --vocab and
// --model against the init. Fills c.model/c.vocab/c.lower_case.
Result<PretrainedModel> ResolveInit(FinetuneConfig* c) {
  PretrainedModel init;
  if (c->init == "none") {
    if (c->vocab.empty()) {
      return Status::InvalidArgument(c->source + ": vocab: is required with init: none (a vocab.txt, e.g. "
                                     "configs/vocab/bert-base-uncased-vocab.txt)");
    }
    if (c->model.empty()) c->model = DefaultModelConfig();
    if (c->model.empty()) {
      return Status::InvalidArgument(c->source + ": model: not given and configs/models/bert-tiny.json not found");
    }
    Result<std::string> text = ReadFile(c->model);
    if (!text.ok()) return Status::InvalidArgument("model: " + text.status().message());
    init.config = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (!init.config.is_object()) return Status::InvalidArgument(c->model + ": not a JSON object (an HF config.json)");
    Result<std::shared_ptr<const Vocab>> vocab = Vocab::Load(c->vocab);
    if (!vocab.ok()) return Status::InvalidArgument("vocab: " + vocab.status().message());
    init.vocab = (*vocab)->tokens();
    init.vocab_checksum = (*vocab)->checksum();
    init.do_lower_case = c->lower_case;
    const int64_t vocab_size = init.config.value("vocab_size", int64_t{0});
    if (static_cast<int64_t>(init.vocab.size()) > vocab_size) {
      return Status::InvalidArgument(c->vocab + ": " + std::to_string(init.vocab.size()) + " tokens but " + c->model +
                                     " has vocab_size " + std::to_string(vocab_size));
    }
  } else {
    if (!c->model.empty()) {
      return Status::InvalidArgument(c->source + ": model: only for init: none (" + c->init +
                                     " brings its own config)");
    }
    Result<PretrainedModel> loaded = LoadPretrained(c->init, /*with_weights=*/false);
    if (!loaded.ok()) return Prefixed("init: ", loaded.status());
    init = std::move(loaded).value();
    if (!c->vocab.empty()) {
      Result<std::shared_ptr<const Vocab>> vocab = Vocab::Load(c->vocab);
      if (!vocab.ok()) return Status::InvalidArgument("vocab: " + vocab.status().message());
      if ((*vocab)->checksum() != init.vocab_checksum) {
        return Status::InvalidArgument("vocab: " + c->vocab + " (checksum " + (*vocab)->checksum() +
                                       ") is not the vocabulary of init " + c->init + " (checksum " +
                                       init.vocab_checksum + "); leave --vocab out to use the init's");
      }
    }
    c->lower_case = init.do_lower_case;
  }
  const int64_t num_layers = init.config.value("num_hidden_layers", int64_t{0});
  if (c->freeze_layers > num_layers) {
    return Status::InvalidArgument(c->source + ": train.freeze_layers: " + std::to_string(c->freeze_layers) +
                                   " exceeds the model's num_hidden_layers " + std::to_string(num_layers));
  }
  const int64_t max_positions = init.config.value("max_position_embeddings", int64_t{512});
  if (c->max_seq_len > max_positions) {
    return Status::InvalidArgument(c->source + ": train.max_seq_len: " + std::to_string(c->max_seq_len) +
                                   " exceeds the model's max_position_embeddings " + std::to_string(max_positions));
  }
  return init;
}

// Reads train/dev/test, resolves the label map and class weights, and
// reports how many training examples get truncated.
Status CheckData(FinetuneConfig* c, const PretrainedModel& init) {
  std::map<std::string, std::vector<finetune::Example>> sets;
  for (auto [key, path] : {std::pair<const char*, std::string>{"data.train", c->train_file},
                           {"data.dev", c->dev_file}, {"data.test", c->test_file}}) {
    if (path.empty()) continue;
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      return Status::NotFound(c->source + ": " + key + ": no such file " + path);
    }
    Result<std::vector<finetune::Example>> examples = finetune::ReadExamples(path, c->fields, c->format);
    if (!examples.ok()) return Status::Corruption(examples.status().message());
    if (examples->empty()) return Status::Corruption(path + ": no examples");
    sets[key] = std::move(examples).value();
  }
  Result<finetune::LabelMap> labels = finetune::LabelMap::FromExamples(sets["data.train"], c->train_file);
  if (!labels.ok()) return Status::Corruption(labels.status().message());
  for (const char* key : {"data.dev", "data.test"}) {
    const std::string& path = std::string(key) == "data.dev" ? c->dev_file : c->test_file;
    for (const finetune::Example& example : sets[key]) {
      Result<int32_t> id = labels->IdOf(example.label, path, example.line);
      if (!id.ok()) return Status::Corruption(id.status().message());
    }
  }
  if (!c->labels.empty() && c->labels != labels->names()) {
    return Status::InvalidArgument(c->source + ": labels: differ from the training data's (sorted) labels");
  }
  c->labels = labels->names();
  std::vector<int64_t> counts(labels->size(), 0);
  for (const finetune::Example& example : sets["data.train"]) ++counts[labels->IdOf(example.label, "", 0).value()];
  if (c->class_weights_mode == "balanced") {  // n / (k * count_c), as scikit-learn's compute_class_weight
    c->class_weights.clear();
    for (int64_t count : counts) {
      c->class_weights.push_back(static_cast<double>(sets["data.train"].size()) /
                                 (static_cast<double>(labels->size()) * static_cast<double>(count)));
    }
    c->class_weights_mode = "explicit";
  }
  BERT_RETURN_IF_ERROR(c->Validate());  // class_weights against the labels
  Result<std::shared_ptr<const Vocab>> vocab = Vocab::FromTokens(init.vocab);
  if (!vocab.ok()) return Status::InvalidArgument("the init's vocabulary: " + vocab.status().message());
  FullTokenizer tokenizer(*vocab, TokenizerOptions{init.do_lower_case, 100});
  Result<finetune::EncodedSet> encoded =
      finetune::EncodeExamples(sets["data.train"], *labels, tokenizer, c->max_seq_len, c->train_file);
  if (!encoded.ok()) return Status::Corruption(encoded.status().message());
  std::string distribution;
  for (int32_t id = 0; id < labels->size(); ++id) {
    distribution += (id ? ", " : "") + labels->name(id) + " " + std::to_string(counts[id]);
  }
  LOG(INFO) << "[finetune] " << sets["data.train"].size() << " train, " << sets["data.dev"].size() << " dev"
            << (c->test_file.empty() ? std::string() : ", " + std::to_string(sets["data.test"].size()) + " test")
            << " examples; labels: " << distribution << "; " << encoded->truncated << " train examples cut to "
            << c->max_seq_len << " tokens";
  return Status::Ok();
}

// distill: the teacher is a fine-tuned classifier with exactly the training
// data's labels, not the output; the transfer set reads, with known labels.
Status CheckTeacher(const FinetuneConfig& c) {
  if (c.distill_teacher.empty()) return Status::Ok();
  Result<PretrainedModel> teacher = LoadPretrained(c.distill_teacher, /*with_weights=*/false);
  if (!teacher.ok()) return Prefixed("teacher: ", teacher.status());
  const nlohmann::json id2label = teacher->config.value("id2label", nlohmann::json());
  if (!id2label.is_object() || id2label.empty()) {
    return Status::InvalidArgument("teacher: " + c.distill_teacher +
                                   ": config.json has no id2label (not a fine-tuned classifier; fine-tune it first)");
  }
  std::vector<std::string> names;
  for (const auto& [id, name] : id2label.items()) names.push_back(name.is_string() ? name.get<std::string>() : "");
  std::sort(names.begin(), names.end());
  std::vector<std::string> labels = c.labels;
  std::sort(labels.begin(), labels.end());
  if (names != labels) {
    std::string theirs, ours;
    for (const std::string& name : names) theirs += (theirs.empty() ? "" : ", ") + name;
    for (const std::string& name : labels) ours += (ours.empty() ? "" : ", ") + name;
    return Status::InvalidArgument("teacher: " + c.distill_teacher + " has the labels " + theirs +
                                   " but the training data has " + ours + "; they must be the same");
  }
  std::error_code ec;
  if (fs::exists(c.output, ec) && fs::equivalent(c.output, c.distill_teacher, ec)) {
    return Status::InvalidArgument("output: " + c.output + " is the --teacher directory itself");
  }
  if (c.distill_transfer_file.empty()) return Status::Ok();
  if (!fs::is_regular_file(c.distill_transfer_file, ec)) {
    return Status::NotFound(c.source + ": distill.transfer: no such file " + c.distill_transfer_file);
  }
  Result<std::vector<finetune::Example>> transfer =
      finetune::ReadExamples(c.distill_transfer_file, c.fields, c.format, /*require_label=*/false);
  if (!transfer.ok()) return Status::Corruption(transfer.status().message());
  if (transfer->empty()) return Status::Corruption(c.distill_transfer_file + ": no examples");
  Result<finetune::LabelMap> known = finetune::LabelMap::FromNames(c.labels, c.train_file);
  if (!known.ok()) return known.status();
  for (const finetune::Example& example : *transfer) {
    if (example.label.empty()) continue;
    Result<int32_t> id = known->IdOf(example.label, c.distill_transfer_file, example.line);
    if (!id.ok()) return Status::Corruption(id.status().message());
  }
  LOG(INFO) << "[distill] teacher " << c.distill_teacher << "; " << transfer->size() << " transfer examples from "
            << c.distill_transfer_file;
  return Status::Ok();
}

// Refuses an OUTPUT that holds a finished model unless --overwrite;
// PrepareOutput then removes its files, so that a failed run leaves nothing
// that looks finished.
Status CheckOutput(const std::string& output, bool overwrite) {
  const bool finished = fs::exists(output + "/config.json") && fs::exists(output + "/metrics.json");
  if (finished && !overwrite) {
    return Status::FailedPrecondition("output: " + output +
                                      " already holds a fine-tuned model (config.json, metrics.json); pick another "
                                      "--output or pass --overwrite");
  }
  return Status::Ok();
}

Status PrepareOutput(const std::string& output) {
  std::error_code ec;
  for (const char* name : {"metrics.json", "config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"}) {
    fs::remove(output + "/" + name, ec);
  }
  fs::create_directories(output, ec);
  if (ec) return Status::IoError("output: cannot create " + output + ": " + ec.message());
  return Status::Ok();
}

// Prints the dev (and test) tables; false when metrics.json is missing or bad.
bool PrintMetrics(const std::string& output) {
  const std::string path = output + "/metrics.json";
  Result<std::string> text = ReadFile(path);
  const nlohmann::json metrics =
      text.ok() ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json(nlohmann::json::value_t::discarded);
  if (!metrics.is_object()) {
    LOG(ERROR) << "[finetune] " << path << ": missing or not a JSON object, although bert-worker exited 0";
    return false;
  }
  for (const char* split : {"dev", "test"}) {
    if (!metrics.contains(split)) continue;
    Result<finetune::ClassificationMetrics> m =
        finetune::ClassificationMetrics::FromJson(metrics[split], path + ": " + split);
    if (!m.ok()) {
      LOG(ERROR) << "[finetune] " << m.status().message();
      return false;
    }
    std::printf("\n%s (best model: step %s, epoch %s)\n%s", split, metrics.value("best_step", nlohmann::json()).dump().c_str(),
                metrics.value("best_epoch", nlohmann::json()).dump().c_str(), m->Table().c_str());
  }
  std::printf("\nmodel: %s (HuggingFace directory); metrics: %s\n", output.c_str(), path.c_str());
  std::fflush(stdout);
  return true;
}

int RunFinetune(const FinetuneArgs& args) {
  const std::string tag = args.distill ? "[distill]" : "[finetune]";
  Result<FinetuneConfig> merged = MergeFlags(args);
  if (!merged.ok()) return FailFinetune(tag, merged.status());
  FinetuneConfig config = std::move(merged).value();
  Result<PretrainedModel> init = ResolveInit(&config);
  if (!init.ok()) return FailFinetune(tag, init.status());
  Status checked = CheckData(&config, *init);
  if (!checked.ok()) return FailFinetune(tag, checked);
  checked = CheckTeacher(config);
  if (!checked.ok()) return FailFinetune(tag, checked);
  Status output = CheckOutput(config.output, args.overwrite);
  if (!output.ok()) return FailFinetune(tag, output);
  Result<std::string> worker = LocateBinary("bert-worker", "BERT_WORKER_BIN");
  if (!worker.ok()) return FailFinetune("[finetune]", worker.status());
  output = PrepareOutput(config.output);
  if (!output.ok()) return FailFinetune("[finetune]", output);
  const std::string config_path = config.output + "/finetune.yaml";
  Status written = WriteFileAtomic(config_path, finetune::FinetuneConfigToYaml(config));
  if (!written.ok()) return FailFinetune("[finetune]", written);

  std::vector<std::string> argv;
  if (args.workers > 1) {
    const std::optional<std::string> mpirun = FindExecutable("mpirun");
    if (!mpirun) {
      return FailFinetune("[finetune]", Status::NotFound("--workers " + std::to_string(args.workers) +
                                                         ": mpirun not found on PATH (apt-get install openmpi-bin)"));
    }
    argv = MpirunPrefix(*mpirun, args.workers, SplitWords(args.mpirun_args));
  }
  argv.insert(argv.end(), {*worker, "--finetune", config_path});
  LOG(INFO) << "[finetune] init " << config.init << "; config " << config_path << "; " << args.workers
            << " worker(s); log " << config.output << "/finetune.log";
  const int code = RunToEnd(argv, config.output + "/finetune.log", "[finetune]");
  if (code != 0) {
    LOG(ERROR) << "[finetune] bert-worker exited " << code << "; see " << config.output << "/finetune.log";
    return code;
  }
  return PrintMetrics(config.output) ? 0 : kFinetuneExitError;
}

// The flags finetune and distill share (after --init/--student).
void AddJobFlags(CLI::App* cmd, FinetuneArgs* args) {
  FinetuneConfig& f = args->flags;
  cmd->add_option("--train", f.train_file, "Training file (.jsonl, .csv or .tsv)");
  cmd->add_option("--dev", f.dev_file, "Dev file: evaluated during training; the best model is kept");
  cmd->add_option("--test", f.test_file, "Optional test file, scored once with the best model");
  cmd->add_option("--output", f.output, "Output directory for the fine-tuned model and metrics");
  cmd->add_option("--config", args->config_path, "Fine-tuning YAML; flags override its keys");
  cmd->add_option("--workers", args->workers, "Worker processes (ranks, under mpirun when > 1)")
      ->capture_default_str()
      ->check(CLI::Range(1u, kMaxWorkers));
  cmd->add_option("--mpirun-args", args->mpirun_args, "Extra mpirun flags, split on whitespace");
  cmd->add_option("--epochs", f.epochs, "Passes over the training data (train.epochs, default 3)");
  cmd->add_option("--lr", f.lr, "Peak learning rate (train.lr, default 2e-5)");
  cmd->add_option("--batch-size", f.batch_size, "Global batch size, split across workers (train.batch_size, default 32)");
  cmd->add_option("--max-seq-len", f.max_seq_len,
                  "Tokens per example incl. [CLS]/[SEP]; longer ones are cut (train.max_seq_len, default 128)");
  cmd->add_option("--seed", f.seed, "Seed for the head's init, shuffling and dropout (train.seed, default 42)");
  cmd->add_option("--text-field", f.fields.text, "JSON key or CSV/TSV column of the text (default text)");
  cmd->add_option("--text-pair-field", f.fields.text_pair,
                  "Key/column of the second text for sentence-pair tasks (default: none)");
  cmd->add_option("--label-field", f.fields.label, "Key/column of the label (default label)");
  cmd->add_option("--vocab", f.vocab,
                  "vocab.txt: required with --init none; with an init it must be the init's (checked)");
  cmd->add_option("--model", f.model,
                  "HF config.json of the model for --init none (default configs/models/bert-tiny.json)");
  cmd->add_flag("--overwrite", args->overwrite, "Replace a fine-tuned model already in --output");
}

std::function<int()> SetupFinetune(CLI::App& app) {
  auto args = std::make_shared<FinetuneArgs>();
  FinetuneConfig& f = args->flags;
  CLI::App* cmd = app.add_subcommand("finetune", "Fine-tune a model for text classification");
  args->cmd = cmd;
  cmd->footer(
      "Checks everything it can first (config, data files, labels, the init model and its vocabulary), writes\n"
      "the resolved config to OUTPUT/finetune.yaml and runs `bert-worker --finetune OUTPUT/finetune.yaml`\n"
      "(`mpirun -np N ...` for --workers N > 1), then prints the dev (and test) metrics of the best model.\n"
      "\n"
      "Data: JSONL (one object per line), CSV (RFC 4180) or TSV with a header; the format comes from the\n"
      "extension (.jsonl/.json/.csv/.tsv) or data.format in --config. Labels are the distinct labels of the\n"
      "training file, sorted; a dev or test label not among them is an error that names it.\n"
      "\n"
      "OUTPUT/ gets: config.json, model.safetensors, vocab.txt, tokenizer_config.json (a HuggingFace\n"
      "BertForSequenceClassification directory of the best dev checkpoint), metrics.json (written last),\n"
      "finetune.yaml (the resolved config) and finetune.log (the worker's output).\n"
      "\n"
      "--config FILE sets any key of the fine-tuning YAML (see finetune/finetune_config.h: train.*, loss.*,\n"
      "regularization.*, early_stopping.*); the flags below override it. Relative paths in the file are\n"
      "relative to the file.\n"
      "\n"
      "Example: bertctl finetune --init runs/tiny --train data/train.jsonl --dev data/dev.jsonl --output ft/tiny\n"
      "\n"
      "Exit codes: 0 done; 1 error; 2 bad flag, config, init or vocabulary, or OUTPUT holds a model;\n"
      "7 bad data (a malformed line, an empty text, an unknown label, fewer than 2 labels).");
  cmd->add_option("--init", f.init,
                  "Start from: a run directory (its latest checkpoint), a checkpoint directory, a HuggingFace BERT "
                  "directory, or none (random weights; needs --vocab)");
  AddJobFlags(cmd, args.get());
  return [args] { return RunFinetune(*args); };
}

std::function<int()> SetupDistill(CLI::App& app) {
  auto args = std::make_shared<FinetuneArgs>();
  args->distill = true;
  FinetuneConfig& f = args->flags;
  CLI::App* cmd = app.add_subcommand("distill", "Distill a fine-tuned teacher into a smaller student classifier");
  args->cmd = cmd;
  cmd->footer(
      "Fine-tunes --student on the labels and on the --teacher's output distribution (knowledge distillation,\n"
      "Hinton et al. 2015): loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy.\n"
      "The teacher labels every training example once, before training, with its own tokenizer; its outputs\n"
      "are cached in --teacher-logits (default OUTPUT/teacher_logits.safetensors) and reused by later runs with\n"
      "the same teacher and data. --transfer adds examples (labels optional) learnt from the teacher only.\n"
      "\n"
      "Everything else is `bertctl finetune`: the same data formats, --config keys (distill.* among them),\n"
      "--workers, OUTPUT files and exit codes. OUTPUT is a HuggingFace directory that eval and predict read.\n"
      "\n"
      "Example: bertctl distill --teacher ft/minilm --student runs/tiny --train data/train.jsonl\n"
      "         --dev data/dev.jsonl --output ft/tiny-distilled\n"
      "\n"
      "Exit codes: 0 done; 1 error; 2 bad flag, config, teacher, student or vocabulary, or OUTPUT holds a\n"
      "model; 7 bad data.");
  cmd->add_option("--teacher", f.distill_teacher,
                  "Fine-tuned classifier (HF directory) with the training data's labels (distill.teacher)");
  cmd->add_option("--student", args->student,
                  "Start the student from: a run directory, a checkpoint directory, a HuggingFace BERT directory, "
                  "or an HF config.json (random weights; the teacher's vocabulary unless --vocab)");
  cmd->add_option("--temperature", f.distill_temperature,
                  "Softmax temperature T of both distributions (distill.temperature, default 2)");
  cmd->add_option("--alpha", f.distill_alpha,
                  "Weight of the teacher's term; 1 - alpha weights the labels' (distill.alpha, default 0.5)");
  cmd->add_option("--transfer", f.distill_transfer_file,
                  "Extra examples (.jsonl, .csv or .tsv; labels optional) learnt from the teacher (distill.transfer)");
  cmd->add_option("--teacher-logits", f.distill_teacher_logits,
                  "Cache of the teacher's outputs (distill.teacher_logits, default OUTPUT/teacher_logits.safetensors)");
  AddJobFlags(cmd, args.get());
  return [args] { return RunFinetune(*args); };
}

}  // namespace

BERT_REGISTER_COMMAND(SetupFinetune);
BERT_REGISTER_COMMAND(SetupDistill);

}  // namespace bert::cli
