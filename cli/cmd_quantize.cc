// bertctl quantize: an int8 copy of a fine-tuned classifier (docs/compression.md).
// Checks what it can without LibTorch (the model directory, the calibration
// file, the output), then runs `bert-worker --quantize`.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/finetune_common.h"
#include "cli/worker_launch.h"
#include "common/file_util.h"
#include "finetune/classification_data.h"
#include "interop/pretrained.h"

namespace bert::cli {
namespace {

namespace fs = std::filesystem;

struct QuantizeArgs {
  std::string model_dir;
  std::string output;
  std::string calibration;  // "" = dynamic activations
  bool overwrite = false;
  std::string text_field = "text";
  std::string text_pair_field;
  int32_t max_seq_len = 0;          // 0: the model's tokenizer_config model_max_length
  int32_t calibration_samples = 0;  // 0: the worker's default (512)
};

// The fp32 classifier: an HF directory with id2label and classifier.* tensors (headers only).
Status CheckModel(const std::string& dir) {
  if (!fs::is_directory(dir)) return Status::NotFound("--model: no such directory " + dir);
  if (fs::is_regular_file(dir + "/model.int8.safetensors")) {
    return Status::InvalidArgument("--model: " + dir + " is already an int8 model (quantize its fp32 directory)");
  }
  if (!fs::is_regular_file(dir + "/config.json")) {
    return Status::InvalidArgument("--model: " + dir + " has no config.json (not a fine-tuned model directory)");
  }
  Result<PretrainedModel> model = LoadPretrained(dir, /*with_weights=*/false);
  if (!model.ok()) return Prefixed("--model: ", model.status());
  if (model->source != PretrainedModel::Source::kHfDirectory) {
    return Status::InvalidArgument("--model: " + dir +
                                   " is a run or checkpoint; quantize a fine-tuned classifier (bertctl finetune's "
                                   "--output)");
  }
  if (model->config.contains("quantization")) {
    return Status::InvalidArgument("--model: " + dir + " is already an int8 model (quantize its fp32 directory)");
  }
  const nlohmann::json architectures = model->config.value("architectures", nlohmann::json::array());
  if (!model->config.contains("id2label") || architectures != nlohmann::json::array({"BertForSequenceClassification"})) {
    return Status::InvalidArgument("--model: " + dir + "/config.json: not a sequence classifier (" +
                                   (model->config.contains("id2label") ? std::string("no classifier.* tensors")
                                                                       : std::string("no id2label")) +
                                   "); bertctl finetune writes one");
  }
  return Status::Ok();
}

Status CheckOutput(const QuantizeArgs& args) {
  std::error_code ec;
  if (fs::exists(args.output, ec) && !fs::is_directory(args.output, ec)) {
    return Status::InvalidArgument("--output " + args.output + ": exists and is not a directory");
  }
  if (fs::is_directory(args.output, ec) && fs::equivalent(args.output, args.model_dir, ec)) {
    return Status::InvalidArgument("--output " + args.output + ": is the --model directory itself");
  }
  if (fs::is_directory(args.output, ec) && !fs::is_empty(args.output, ec) && !args.overwrite) {
    return Status::InvalidArgument("--output " + args.output + ": exists and is not empty (pass --overwrite)");
  }
  return Status::Ok();
}

// The calibration texts parse (bad contents: Corruption, exit 7).
Status CheckCalibration(const QuantizeArgs& args) {
  if (!fs::is_regular_file(args.calibration)) return Status::NotFound("--calibration: no such file " + args.calibration);
  finetune::FieldNames fields;
  fields.text = args.text_field;
  fields.text_pair = args.text_pair_field;
  Result<std::vector<finetune::Example>> examples =
      finetune::ReadExamples(args.calibration, fields, finetune::FileFormat::kAuto, /*require_label=*/false);
  if (!examples.ok()) return Status::Corruption("--calibration: " + examples.status().message());
  if (examples->empty()) return Status::Corruption("--calibration: " + args.calibration + ": no examples");
  return Status::Ok();
}

int RunQuantize(QuantizeArgs args) {
  args.model_dir = AbsolutePath(args.model_dir);
  args.output = AbsolutePath(args.output);
  args.calibration = AbsolutePath(args.calibration);
  Status ok = CheckModel(args.model_dir);
  if (ok.ok()) ok = CheckOutput(args);
  if (ok.ok() && args.calibration_samples > 0 && args.calibration.empty()) {
    ok = Status::InvalidArgument("--calibration-samples: needs --calibration (dynamic activations use none)");
  }
  if (ok.ok() && !args.calibration.empty()) ok = CheckCalibration(args);
  if (!ok.ok()) return FailFinetune("[quantize]", ok);
  Result<std::string> worker = LocateBinary("bert-worker", "BERT_WORKER_BIN");
  if (!worker.ok()) return FailFinetune("[quantize]", worker.status());
  std::vector<std::string> argv = {*worker, "--quantize", "--model", args.model_dir, "--output", args.output,
                                   "--text-field", args.text_field};
  if (args.overwrite) argv.push_back("--overwrite");
  if (!args.calibration.empty()) argv.insert(argv.end(), {"--calibration", args.calibration});
  if (args.calibration_samples > 0) {
    argv.insert(argv.end(), {"--calibration-samples", std::to_string(args.calibration_samples)});
  }
  if (!args.text_pair_field.empty()) argv.insert(argv.end(), {"--text-pair-field", args.text_pair_field});
  if (args.max_seq_len > 0) argv.insert(argv.end(), {"--max-seq-len", std::to_string(args.max_seq_len)});
  return RunToEnd(argv, "", "[quantize]");
}

std::function<int()> SetupQuantize(CLI::App& app) {
  auto args = std::make_shared<QuantizeArgs>();
  CLI::App* cmd = app.add_subcommand("quantize", "Quantize a fine-tuned classifier to int8");
  cmd->footer(
      "Writes an int8 copy of a fine-tuned classifier (docs/compression.md): every Linear's weights int8,\n"
      "symmetric per output channel, biases fp32; embeddings and LayerNorm stay fp32. Without --calibration\n"
      "activations are quantized per call (dynamic); with it, each Linear's input scale and zero point come\n"
      "from the ranges seen on those texts (static). bertctl eval and predict run the result; the output\n"
      "directory appears only when complete.\n"
      "Example: bertctl quantize --model ft/tiny --output ft/tiny-int8 --calibration dev.jsonl\n"
      "Exit codes: 0 done; 1 error; 2 bad flag, model or output directory; 7 bad calibration data.");
  cmd->add_option("--model", args->model_dir, "Fine-tuned model directory (bertctl finetune's --output)")->required();
  cmd->add_option("--output", args->output, "The int8 model directory to write")->required();
  cmd->add_option("--calibration", args->calibration,
                  "Texts (.jsonl, .csv or .tsv) for static activation ranges (default: dynamic activations)");
  cmd->add_flag("--overwrite", args->overwrite, "Replace a non-empty --output");
  cmd->add_option("--text-field", args->text_field, "--calibration: JSON key or CSV/TSV column of the text")
      ->capture_default_str();
  cmd->add_option("--text-pair-field", args->text_pair_field, "--calibration: key/column of the second text");
  cmd->add_option("--max-seq-len", args->max_seq_len,
                  "--calibration: tokens per text (default: the model's tokenizer_config.json model_max_length)")
      ->check(CLI::Range(3, 8192));
  cmd->add_option("--calibration-samples", args->calibration_samples,
                  "Calibration texts used, the first ones (default 512)")
      ->check(CLI::Range(1, 1 << 24));
  return [args] { return RunQuantize(*args); };
}

}  // namespace

BERT_REGISTER_COMMAND(SetupQuantize);

}  // namespace bert::cli
