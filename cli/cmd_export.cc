// bertctl export: a run, checkpoint or HF directory as a HuggingFace model
// directory (config.json, model.safetensors, vocab.txt, tokenizer_config.json)
// that `transformers` loads with from_pretrained; or (--format onnx) a
// fine-tuned classifier, fp32 or int8, as model.onnx plus its config.json,
// vocab.txt and tokenizer_config.json (interop/onnx_export.h).
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli/command.h"
#include "common/logging.h"
#include "interop/int8_model.h"
#include "interop/onnx_export.h"
#include "interop/pretrained.h"

namespace bert::cli {
namespace {

namespace fs = std::filesystem;

struct ExportArgs {
  std::string checkpoint;  // RUN_DIR, CHECKPOINT_DIR or HF_DIR
  std::string output;      // the HF directory to write
  bool overwrite = false;  // replace the files of a non-empty output directory
  std::string format = "hf";  // "hf" (HF directory) or "onnx" (model.onnx + config, vocab, tokenizer config)
};

// Refuses an output that holds anything unless --overwrite, and an output
// that is the input (the export would replace the files it reads).
Status CheckOutput(const ExportArgs& args) {
  std::error_code ec;
  if (fs::exists(args.output, ec) && !fs::is_directory(args.output, ec)) {
    return Status::InvalidArgument("--output " + args.output + ": exists and is not a directory");
  }
  if (fs::is_directory(args.output, ec) && fs::equivalent(args.output, args.checkpoint, ec)) {
    return Status::InvalidArgument("--output " + args.output + ": is the --checkpoint directory itself");
  }
  if (fs::is_directory(args.output, ec) && !fs::is_empty(args.output, ec) && !args.overwrite) {
    return Status::InvalidArgument("--output " + args.output +
                                   ": exists and is not empty (pass --overwrite to replace its model files)");
  }
  return Status::Ok();
}

const char* SourceName(PretrainedModel::Source source) {
  return source == PretrainedModel::Source::kCheckpoint ? "checkpoint" : "HF directory";
}

const char* QuantizationName(LinearQuantization quantization) {
  switch (quantization) {
    case LinearQuantization::kNone: return "fp32";
    case LinearQuantization::kInt8Dynamic: return "int8, dynamic activations";
    case LinearQuantization::kInt8Static: return "int8, static activations";
  }
  return "?";
}

// --format onnx: an int8 directory, or a fine-tuned fp32 classifier (HF directory).
int RunExportOnnx(const ExportArgs& args) {
  OnnxClassifierSource source;
  std::string source_dir = args.checkpoint;
  if (LooksLikeInt8Directory(args.checkpoint)) {
    Result<OnnxClassifierSource> int8 = LoadInt8Directory(args.checkpoint);
    if (!int8.ok()) {
      LOG(ERROR) << "[export] --checkpoint: " << int8.status().message();
      return int8.status().code() == Status::Code::kCorruption ? 7 : 2;  // a damaged file is bad data, as below
    }
    source = std::move(*int8);
  } else {
    Result<PretrainedModel> model = LoadPretrained(args.checkpoint, /*with_weights=*/true);
    if (!model.ok()) {
      LOG(ERROR) << "[export] --checkpoint: " << model.status().message();
      return model.status().code() == Status::Code::kCorruption ? 7 : 2;
    }
    if (model->source != PretrainedModel::Source::kHfDirectory) {
      LOG(ERROR) << "[export] --checkpoint " << args.checkpoint
                 << ": --format onnx exports a fine-tuned classifier (an HF directory from bertctl finetune or an "
                    "int8 directory), not a pretraining checkpoint";
      return 2;
    }
    // A pruned model's removed heads as zeros: the graph has every head in every layer.
    Status expanded = ExpandPrunedHeads(&*model);
    if (!expanded.ok()) {
      LOG(ERROR) << "[export] --checkpoint: " << expanded.message();
      return 2;
    }
    source_dir = model->path;
    source.config = std::move(model->config);
    source.tensors = std::move(model->tensors);
  }
  OnnxModelStats stats;
  Result<std::string> bytes = BuildOnnxClassifier(source, "--checkpoint " + source_dir, &stats);
  if (!bytes.ok()) {
    LOG(ERROR) << "[export] " << bytes.status().message();
    return 2;
  }
  Status written = WriteOnnxDirectory(args.output, *bytes, source_dir);
  if (!written.ok()) {
    LOG(ERROR) << "[export] --output: " << written.message();
    return 1;
  }
  std::printf("read %s %s\n", source.quantization == LinearQuantization::kNone ? "HF directory" : "int8 directory",
              source_dir.c_str());
  std::printf("wrote %s: %s, %s, opset %lld, %lld nodes, %lld initializers, %llu bytes; inputs input_ids, "
              "attention_mask, token_type_ids [batch, sequence]; outputs logits, probabilities [batch, %lld]\n",
              (args.output + "/" + kOnnxModelFile).c_str(), "BertForSequenceClassification",
              QuantizationName(source.quantization), static_cast<long long>(kOnnxOpset),
              static_cast<long long>(stats.num_nodes), static_cast<long long>(stats.num_initializers),
              static_cast<unsigned long long>(stats.bytes),
              static_cast<long long>(BertShapesFromConfig(source.config, source_dir)->num_labels));
  return 0;
}

int RunExport(const ExportArgs& args) {
  if (args.format != "hf" && args.format != "onnx") {
    LOG(ERROR) << "[export] --format " << args.format << ": unknown (hf or onnx)";
    return 2;
  }
  Status output_ok = CheckOutput(args);
  if (!output_ok.ok()) {
    LOG(ERROR) << "[export] " << output_ok.message();
    return 2;
  }
  if (args.format == "onnx") return RunExportOnnx(args);
  if (LooksLikeInt8Directory(args.checkpoint)) {
    LOG(ERROR) << "[export] --checkpoint " << args.checkpoint
               << ": an int8 model (bertctl quantize) cannot be exported as HF fp32 safetensors (transformers has "
                  "no bert-int8 loader); export it with --format onnx";
    return 2;
  }
  Result<PretrainedModel> model = LoadPretrained(args.checkpoint, /*with_weights=*/true);
  if (!model.ok()) {
    LOG(ERROR) << "[export] --checkpoint: " << model.status().message();
    return model.status().code() == Status::Code::kCorruption ? 7 : 2;
  }
  if (model->config.value("pre_layer_norm", false) == true) {
    LOG(ERROR) << "[export] --checkpoint " << args.checkpoint
               << ": a pre-LayerNorm model (\"pre_layer_norm\": true) has no transformers equivalent: its BertModel "
                  "is post-LN and would compute another function with these weights, so the export is refused "
                  "(fine-tune, eval, predict and fill-mask run it; their outputs keep model_type \""
               << kPreLnModelType << "\", which transformers refuses)";
    return 2;
  }
  // A pruned model (bertctl prune) at full shapes, its removed heads as zeros: transformers 5 cannot prune.
  Status expanded = ExpandPrunedHeads(&*model);
  if (!expanded.ok()) {
    LOG(ERROR) << "[export] --checkpoint: " << expanded.message();
    return 2;
  }
  Status written = WriteHfDirectory(args.output, *model);
  if (!written.ok()) {
    LOG(ERROR) << "[export] --output: " << written.message();
    return 1;
  }
  uint64_t parameters = 0;
  for (const NamedTensor& tensor : model->tensors) parameters += tensor.values.size();
  std::error_code ec;
  const uint64_t bytes = fs::file_size(args.output + "/model.safetensors", ec);
  const nlohmann::json architectures = model->config.value("architectures", nlohmann::json::array());
  const std::string architecture =
      architectures.is_array() && !architectures.empty() && architectures[0].is_string()
          ? architectures[0].get<std::string>()
          : std::string("BertModel");
  std::printf("read %s %s\n", SourceName(model->source), model->path.c_str());
  std::printf("wrote %s: %s, %zu tensors, %llu parameters, model.safetensors %llu bytes, vocab.txt %zu tokens "
              "(%s), model_max_length %lld\n",
              args.output.c_str(), architecture.c_str(),
              model->tensors.size(), static_cast<unsigned long long>(parameters),
              static_cast<unsigned long long>(bytes), model->vocab.size(),
              model->do_lower_case ? "uncased" : "cased", static_cast<long long>(model->model_max_length));
  return 0;
}

std::function<int()> SetupExport(CLI::App& app) {
  auto args = std::make_shared<ExportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "export", "Export a run, checkpoint or HF directory as a HuggingFace model, or a classifier as ONNX");
  cmd->footer(
      "--checkpoint takes a run directory (its latest good checkpoint), a checkpoint directory (step-NNNNNN)\n"
      "or an HF model directory. The output loads with transformers' from_pretrained: config.json,\n"
      "model.safetensors (fp32; pretraining checkpoints as BertForPreTraining with the tied decoder),\n"
      "vocab.txt and tokenizer_config.json. config.json is written last: a directory without it is an\n"
      "unfinished export.\n"
      "--format onnx: a fine-tuned classifier (HF directory) or an int8 directory as OUTPUT/model.onnx\n"
      "(opset 17; inputs input_ids, attention_mask, token_type_ids int64 [batch, sequence]; outputs\n"
      "logits and probabilities [batch, num_labels]) plus config.json, vocab.txt, tokenizer_config.json.\n"
      "Example: bertctl export --checkpoint runs/tiny --output runs/tiny/export\n"
      "Example: bertctl export --checkpoint ft/tiny --output ft/tiny-onnx --format onnx");
  cmd->add_option("--checkpoint", args->checkpoint, "RUN_DIR, CHECKPOINT_DIR or HF_DIR to read")->required();
  cmd->add_option("--output", args->output, "HF model directory to write")->required();
  cmd->add_flag("--overwrite", args->overwrite, "Replace the model files of a non-empty --output");
  cmd->add_option("--format", args->format, "hf (HF model directory) or onnx (model.onnx, fine-tuned classifiers)")
      ->capture_default_str();
  return [args] { return RunExport(*args); };
}

}  // namespace

BERT_REGISTER_COMMAND(SetupExport);

}  // namespace bert::cli
