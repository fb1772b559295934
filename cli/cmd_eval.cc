// bertctl eval and bertctl predict: run a fine-tuned model (an HF directory
// written by bertctl finetune) on a data file through `bert-worker
// --predict`; eval then scores the predictions against the file's labels.
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/finetune_common.h"
#include "cli/worker_launch.h"
#include "common/file_util.h"
#include "finetune/classification_data.h"
#include "finetune/metrics.h"

namespace bert::cli {
namespace {

namespace fs = std::filesystem;

struct PredictArgs {
  std::string model_dir;
  std::string input;
  std::string output;       // predict: predictions JSONL; eval: metrics JSON ("" = MODEL/eval_metrics.json)
  std::string format = "auto";
  std::string text_field = "text";
  std::string text_pair_field;
  std::string label_field = "label";  // eval only
  int32_t batch_size = 64;
  int32_t max_seq_len = 0;  // 0: the model's tokenizer_config model_max_length
};

// The model's labels in id order, from config.json's id2label.
Result<finetune::LabelMap> ModelLabels(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) {
    return Status::InvalidArgument("--model: " + model_dir +
                                   " has no readable config.json (not a fine-tuned model directory)");
  }
  const nlohmann::json config = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!config.is_object()) return Status::InvalidArgument(path + ": not a JSON object");
  auto id2label = config.find("id2label");
  if (id2label == config.end() || !id2label->is_object() || id2label->empty()) {
    return Status::InvalidArgument(path + ": id2label: missing (not a sequence classifier)");
  }
  std::vector<std::string> names(id2label->size());
  for (const auto& [key, value] : id2label->items()) {
    char* end = nullptr;
    const long id = std::strtol(key.c_str(), &end, 10);
    if (key.empty() || *end != '\0' || id < 0 || id >= static_cast<long>(names.size()) || !value.is_string() ||
        !names[id].empty()) {
      return Status::InvalidArgument(path + ": id2label: entry \"" + key + "\" is not one of ids 0.." +
                                     std::to_string(names.size() - 1) + " with a label name");
    }
    names[id] = value.get<std::string>();
  }
  return finetune::LabelMap::FromNames(std::move(names), path + ": id2label");
}

std::vector<std::string> PredictArgv(const std::string& worker, const PredictArgs& args, const std::string& output) {
  std::vector<std::string> argv = {worker,   "--predict", "--model",      args.model_dir,   "--input",
                                   args.input, "--output",  output,         "--format",       args.format,
                                   "--text-field", args.text_field, "--batch-size", std::to_string(args.batch_size)};
  if (!args.text_pair_field.empty()) argv.insert(argv.end(), {"--text-pair-field", args.text_pair_field});
  if (args.max_seq_len > 0) argv.insert(argv.end(), {"--max-seq-len", std::to_string(args.max_seq_len)});
  return argv;
}

Status CheckCommon(const PredictArgs& args) {
  if (!fs::is_directory(args.model_dir)) return Status::NotFound("--model: no such directory " + args.model_dir);
  if (!fs::is_regular_file(args.input)) return Status::NotFound("no such file " + args.input);
  Result<finetune::FileFormat> format = finetune::ParseFileFormat(args.format);
  if (!format.ok()) return Status::InvalidArgument("--format: " + format.status().message());
  return Status::Ok();
}

int RunPredict(PredictArgs args) {
  args.model_dir = AbsolutePath(args.model_dir);
  args.input = AbsolutePath(args.input);
  args.output = AbsolutePath(args.output);
  Status ok = CheckCommon(args);
  if (!ok.ok()) return FailFinetune("[predict]", ok);
  Result<finetune::LabelMap> labels = ModelLabels(args.model_dir);
  if (!labels.ok()) return FailFinetune("[predict]", labels.status());
  Result<std::string> worker = LocateBinary("bert-worker", "BERT_WORKER_BIN");
  if (!worker.ok()) return FailFinetune("[predict]", worker.status());
  return RunToEnd(PredictArgv(*worker, args, args.output), "", "[predict]");
}

// Reads the worker's predictions (one JSON line per example, in order).
Result<std::vector<int32_t>> ReadPredictions(const std::string& path, const finetune::LabelMap& labels,
                                             size_t expected) {
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  std::vector<int32_t> predicted;
  size_t start = 0;
  int64_t line = 0;
  while (start < text->size()) {
    size_t end = text->find('\n', start);
    if (end == std::string::npos) end = text->size();
    const nlohmann::json record = nlohmann::json::parse(text->substr(start, end - start), nullptr, false);
    start = end + 1;
    ++line;
    if (!record.is_object() || !record.contains("label") || !record["label"].is_string()) {
      return Status::Internal(path + ":" + std::to_string(line) + ": not a prediction {\"label\": ...}");
    }
    Result<int32_t> id = labels.IdOf(record["label"].get<std::string>(), path, line);
    if (!id.ok()) return Status::Internal(id.status().message());
    predicted.push_back(*id);
  }
  if (predicted.size() != expected) {
    return Status::Internal(path + ": " + std::to_string(predicted.size()) + " predictions for " +
                            std::to_string(expected) + " examples");
  }
  return predicted;
}

int RunEval(PredictArgs args) {
  args.model_dir = AbsolutePath(args.model_dir);
  args.input = AbsolutePath(args.input);
  if (args.output.empty()) args.output = args.model_dir + "/eval_metrics.json";
  args.output = AbsolutePath(args.output);
  Status ok = CheckCommon(args);
  if (!ok.ok()) return FailFinetune("[eval]", ok);
  Result<finetune::LabelMap> labels = ModelLabels(args.model_dir);
  if (!labels.ok()) return FailFinetune("[eval]", labels.status());
  finetune::FieldNames fields{args.text_field, args.text_pair_field, args.label_field};
  Result<std::vector<finetune::Example>> examples =
      finetune::ReadExamples(args.input, fields, finetune::ParseFileFormat(args.format).value());
  if (!examples.ok()) return FailFinetune("[eval]", Status::Corruption(examples.status().message()));
  if (examples->empty()) return FailFinetune("[eval]", Status::Corruption(args.input + ": no examples"));
  std::vector<int32_t> truth;
  for (const finetune::Example& example : *examples) {
    Result<int32_t> id = labels->IdOf(example.label, args.input, example.line);
    if (!id.ok()) return FailFinetune("[eval]", Status::Corruption(id.status().message()));
    truth.push_back(*id);
  }
  Result<std::string> worker = LocateBinary("bert-worker", "BERT_WORKER_BIN");
  if (!worker.ok()) return FailFinetune("[eval]", worker.status());
  std::string temp = (fs::temp_directory_path() / "bertctl-eval-XXXXXX").string();
  const int fd = ::mkstemp(temp.data());
  if (fd < 0) return FailFinetune("[eval]", Status::IoError("cannot create a temporary file in /tmp"));
  ::close(fd);
  const int code = RunToEnd(PredictArgv(*worker, args, temp), "", "[eval]");
  if (code != 0) {
    std::error_code ec;
    fs::remove(temp, ec);
    LOG(ERROR) << "[eval] bert-worker --predict exited " << code;
    return code;
  }
  Result<std::vector<int32_t>> predicted = ReadPredictions(temp, *labels, truth.size());
  std::error_code ec;
  fs::remove(temp, ec);
  if (!predicted.ok()) return FailFinetune("[eval]", predicted.status());
  const finetune::ClassificationMetrics metrics = finetune::ComputeMetrics(truth, *predicted, *labels);
  std::printf("%s on %s\n%s", args.model_dir.c_str(), args.input.c_str(), metrics.Table().c_str());
  std::fflush(stdout);
  Status written = WriteFileAtomic(args.output, metrics.ToJson().dump(2) + "\n");
  if (!written.ok()) return FailFinetune("[eval]", written);
  LOG(INFO) << "[eval] metrics written to " << args.output;
  return 0;
}

void AddDataOptions(CLI::App* cmd, PredictArgs* args) {
  cmd->add_option("--format", args->format, "auto (from the extension), jsonl, csv or tsv")->capture_default_str();
  cmd->add_option("--text-field", args->text_field, "JSON key or CSV/TSV column of the text")->capture_default_str();
  cmd->add_option("--text-pair-field", args->text_pair_field, "Key/column of the second text of sentence pairs");
  cmd->add_option("--batch-size", args->batch_size, "Examples per forward pass")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--max-seq-len", args->max_seq_len,
                  "Tokens per example (default: the model's tokenizer_config.json model_max_length)")
      ->check(CLI::Range(3, 8192));
}

std::function<int()> SetupPredict(CLI::App& app) {
  auto args = std::make_shared<PredictArgs>();
  CLI::App* cmd = app.add_subcommand("predict", "Classify texts with a fine-tuned model");
  cmd->footer(
      "Runs `bert-worker --predict` and writes one JSON line per input example, in input order:\n"
      "  {\"label\": \"<name>\", \"probabilities\": {\"<label>\": p, ...}}\n"
      "Input labels, if present, are ignored. The output appears only when complete (temp + rename).\n"
      "Example: bertctl predict --model ft/tiny --input new.jsonl --output predictions.jsonl\n"
      "Exit codes: 0 done; 1 error; 2 bad flag or model directory; 7 bad input data.");
  cmd->add_option("--model", args->model_dir, "Fine-tuned model directory (bertctl finetune's --output)")->required();
  cmd->add_option("--input", args->input, "Texts to classify (.jsonl, .csv or .tsv)")->required();
  cmd->add_option("--output", args->output, "Predictions file (JSON lines)")->required();
  AddDataOptions(cmd, args.get());
  return [args] { return RunPredict(*args); };
}

std::function<int()> SetupEval(CLI::App& app) {
  auto args = std::make_shared<PredictArgs>();
  CLI::App* cmd = app.add_subcommand("eval", "Score a fine-tuned model on labelled data");
  cmd->footer(
      "Checks that every label of --data is one the model knows (config.json id2label), runs\n"
      "`bert-worker --predict` into a temporary file, then prints per-class precision, recall and F1,\n"
      "accuracy, macro-F1 and the confusion matrix, and writes them as JSON.\n"
      "Example: bertctl eval --model ft/tiny --data test.jsonl\n"
      "Exit codes: 0 done; 1 error; 2 bad flag or model directory; 7 bad data or an unknown label.");
  cmd->add_option("--model", args->model_dir, "Fine-tuned model directory (bertctl finetune's --output)")->required();
  cmd->add_option("--data", args->input, "Labelled data (.jsonl, .csv or .tsv)")->required();
  cmd->add_option("--output", args->output, "Metrics JSON (default MODEL/eval_metrics.json)");
  cmd->add_option("--label-field", args->label_field, "Key/column of the label")->capture_default_str();
  AddDataOptions(cmd, args.get());
  return [args] { return RunEval(*args); };
}

}  // namespace

BERT_REGISTER_COMMAND(SetupEval);
BERT_REGISTER_COMMAND(SetupPredict);

}  // namespace bert::cli
