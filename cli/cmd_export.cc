// bertctl export: a run, checkpoint or HF directory as a HuggingFace model
// directory (config.json, model.safetensors, vocab.txt, tokenizer_config.json)
// that `transformers` loads with from_pretrained.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli/command.h"
#include "common/logging.h"
#include "interop/pretrained.h"

namespace bert::cli {
namespace {

namespace fs = std::filesystem;

struct ExportArgs {
  std::string checkpoint;  // RUN_DIR, CHECKPOINT_DIR or HF_DIR
  std::string output;      // the HF directory to write
  bool overwrite = false;  // replace the files of a non-empty output directory
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

// An int8 directory (docs/compression.md): model.int8.safetensors, or a
// config.json with "quantization".
bool IsInt8Directory(const std::string& dir) {
  std::error_code ec;
  if (fs::is_regular_file(dir + "/model.int8.safetensors", ec)) return true;
  std::ifstream in(dir + "/config.json");
  if (!in) return false;
  const nlohmann::json config = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  return config.is_object() && config.contains("quantization");
}

const char* SourceName(PretrainedModel::Source source) {
  return source == PretrainedModel::Source::kCheckpoint ? "checkpoint" : "HF directory";
}

int RunExport(const ExportArgs& args) {
  Status output_ok = CheckOutput(args);
  if (!output_ok.ok()) {
    LOG(ERROR) << "[export] " << output_ok.message();
    return 2;
  }
  if (IsInt8Directory(args.checkpoint)) {
    LOG(ERROR) << "[export] --checkpoint " << args.checkpoint
               << ": an int8 model (bertctl quantize) cannot be exported as HF fp32 safetensors; "
                  "export it with --format onnx";
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
  CLI::App* cmd = app.add_subcommand("export", "Export a run, checkpoint or HF directory as a HuggingFace model");
  cmd->footer(
      "--checkpoint takes a run directory (its latest good checkpoint), a checkpoint directory (step-NNNNNN)\n"
      "or an HF model directory. The output loads with transformers' from_pretrained: config.json,\n"
      "model.safetensors (fp32; pretraining checkpoints as BertForPreTraining with the tied decoder),\n"
      "vocab.txt and tokenizer_config.json. config.json is written last: a directory without it is an\n"
      "unfinished export.\n"
      "Example: bertctl export --checkpoint runs/tiny --output runs/tiny/export");
  cmd->add_option("--checkpoint", args->checkpoint, "RUN_DIR, CHECKPOINT_DIR or HF_DIR to read")->required();
  cmd->add_option("--output", args->output, "HF model directory to write")->required();
  cmd->add_flag("--overwrite", args->overwrite, "Replace the model files of a non-empty --output");
  return [args] { return RunExport(*args); };
}

}  // namespace

BERT_REGISTER_COMMAND(SetupExport);

}  // namespace bert::cli
