// bertctl prune: checks a pruning job without LibTorch (the fine-tuned model,
// the labelled data, --heads and --ffn-keep against the model's shape, the
// output), runs `bert-worker --prune` (worker/compress/pruning.h) and, with
// --finetune-epochs N, fine-tunes the pruned model for N epochs to recover
// (bertctl finetune, which keeps its classifier: same labels).
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/finetune_common.h"
#include "cli/worker_launch.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "finetune/classification_data.h"
#include "interop/pretrained.h"

namespace bert::cli {
namespace {

namespace fs = std::filesystem;

struct PruneArgs {
  std::string model;           // fine-tuned classifier directory
  std::string data;            // labelled examples the importance is measured on
  int64_t heads = 0;           // attention heads to remove, over all layers
  double ffn_keep = 1.0;       // share of each layer's FFN neurons kept
  std::string output;
  bool overwrite = false;
  finetune::FieldNames fields;
  int32_t batch_size = 32;
  int32_t max_seq_len = 0;     // 0 = the model's
  int32_t finetune_epochs = 0; // recovery fine-tuning; 0 = none
  std::string train, dev, test, config, lr;  // for the recovery (lr as given, "" = the config's)
};

// Everything checked before any work; errors are one line.
Status Check(const PruneArgs& args) {
  Result<PretrainedModel> model = LoadPretrained(args.model, /*with_weights=*/false);
  if (!model.ok()) return Prefixed("--model: ", model.status());
  const nlohmann::json id2label = model->config.value("id2label", nlohmann::json());
  if (!id2label.is_object() || id2label.empty()) {
    return Status::InvalidArgument("--model " + args.model +
                                   ": config.json has no id2label (prune a fine-tuned classifier)");
  }
  Result<BertShapes> shapes = BertShapesFromConfig(model->config, args.model + "/config.json");
  if (!shapes.ok()) return Prefixed("--model: ", shapes.status());
  int64_t heads = 0;
  for (int64_t l = 0; l < shapes->num_hidden_layers; ++l) heads += shapes->heads_in_layer(l);
  if (args.heads < 0 || args.heads > heads - shapes->num_hidden_layers) {
    return Status::InvalidArgument("--heads: " + std::to_string(args.heads) + " is not in [0, " +
                                   std::to_string(heads - shapes->num_hidden_layers) + "]: " + args.model + " has " +
                                   std::to_string(heads) + " heads in " + std::to_string(shapes->num_hidden_layers) +
                                   " layers and each layer keeps one");
  }
  if (!(args.ffn_keep > 0 && args.ffn_keep <= 1)) {
    return Status::InvalidArgument("--ffn-keep: must be in (0, 1], got " + std::to_string(args.ffn_keep));
  }
  std::vector<std::string> names;
  for (const auto& [id, name] : id2label.items()) names.push_back(name.is_string() ? name.get<std::string>() : "");
  Result<finetune::LabelMap> labels = finetune::LabelMap::FromNames(names, args.model + ": id2label");
  if (!labels.ok()) return Prefixed("--model: ", labels.status());
  std::error_code ec;
  if (!fs::is_regular_file(args.data, ec)) return Status::NotFound("--data: no such file " + args.data);
  Result<std::vector<finetune::Example>> examples = finetune::ReadExamples(args.data, args.fields);
  if (!examples.ok()) return Status::Corruption(examples.status().message());
  if (examples->empty()) return Status::Corruption(args.data + ": no examples");
  for (const finetune::Example& example : *examples) {
    Result<int32_t> id = labels->IdOf(example.label, args.data, example.line);
    if (!id.ok()) return Status::Corruption(id.status().message());
  }
  if (args.finetune_epochs > 0 && (args.train.empty() || args.dev.empty())) {
    return Status::InvalidArgument("--finetune-epochs: needs --train and --dev (the recovery fine-tuning's data)");
  }
  if (fs::exists(args.output, ec) && fs::equivalent(args.output, args.model, ec)) {
    return Status::InvalidArgument("--output " + args.output + ": is the --model directory itself");
  }
  if (fs::is_directory(args.output, ec) && !fs::is_empty(args.output, ec) && !args.overwrite) {
    return Status::FailedPrecondition("--output " + args.output +
                                      ": exists and is not empty (pass --overwrite to replace its model)");
  }
  return Status::Ok();
}

int RunPrune(PruneArgs args) {
  for (std::string* path : {&args.model, &args.data, &args.output, &args.train, &args.dev, &args.test, &args.config}) {
    *path = AbsolutePath(*path);
  }
  Status checked = Check(args);
  if (!checked.ok()) return FailFinetune("[prune]", checked);
  Result<std::string> worker = LocateBinary("bert-worker", "BERT_WORKER_BIN");
  if (!worker.ok()) return FailFinetune("[prune]", worker.status());
  std::error_code ec;
  for (const char* name : {"config.json", "model.safetensors", "prune.json", "metrics.json"}) {
    fs::remove(args.output + "/" + name, ec);  // nothing old may look like this run's result
  }
  fs::create_directories(args.output, ec);
  if (ec) return FailFinetune("[prune]", Status::IoError("--output: cannot create " + args.output + ": " + ec.message()));
  // With recovery, the pruned model is OUTPUT/pruned and the recovered one OUTPUT.
  const std::string pruned = args.finetune_epochs > 0 ? args.output + "/pruned" : args.output;
  std::vector<std::string> argv = {*worker,        "--prune",     "--model",     args.model,
                                   "--input",      args.data,     "--output",    pruned,
                                   "--heads",      std::to_string(args.heads), "--ffn-keep",
                                   std::to_string(args.ffn_keep), "--batch-size", std::to_string(args.batch_size),
                                   "--text-field", args.fields.text, "--label-field", args.fields.label};
  if (!args.fields.text_pair.empty()) argv.insert(argv.end(), {"--text-pair-field", args.fields.text_pair});
  if (args.max_seq_len > 0) argv.insert(argv.end(), {"--max-seq-len", std::to_string(args.max_seq_len)});
  int code = RunToEnd(argv, args.output + "/prune.log", "[prune]");
  if (code != 0) {
    LOG(ERROR) << "[prune] bert-worker exited " << code << "; see " << args.output << "/prune.log";
    return code;
  }
  if (args.finetune_epochs == 0) {
    std::printf("pruned model: %s (prune.json: what was removed)\n", args.output.c_str());
    return 0;
  }
  Result<std::string> self = LocateBinary("bertctl", "BERTCTL_BIN");
  if (!self.ok()) return FailFinetune("[prune]", self.status());
  argv = {*self, "finetune", "--init", pruned, "--train", args.train, "--dev", args.dev,
          "--epochs", std::to_string(args.finetune_epochs), "--output", args.output, "--overwrite",
          "--text-field", args.fields.text, "--label-field", args.fields.label};
  if (!args.test.empty()) argv.insert(argv.end(), {"--test", args.test});
  if (!args.config.empty()) argv.insert(argv.end(), {"--config", args.config});
  if (!args.lr.empty()) argv.insert(argv.end(), {"--lr", args.lr});
  if (!args.fields.text_pair.empty()) argv.insert(argv.end(), {"--text-pair-field", args.fields.text_pair});
  if (args.max_seq_len > 0) argv.insert(argv.end(), {"--max-seq-len", std::to_string(args.max_seq_len)});
  LOG(INFO) << "[prune] recovery: fine-tuning " << pruned << " for " << args.finetune_epochs << " epochs into "
            << args.output;
  code = RunToEnd(argv, "", "[prune]");
  if (code != 0) LOG(ERROR) << "[prune] the recovery fine-tuning exited " << code;
  return code;
}

std::function<int()> SetupPrune(CLI::App& app) {
  auto args = std::make_shared<PruneArgs>();
  CLI::App* cmd = app.add_subcommand("prune", "Remove attention heads and FFN neurons of a fine-tuned classifier");
  cmd->footer(
      "Scores every attention head and FFN neuron of --model by its importance on --data (Michel et al. 2019:\n"
      "|dL/d gate| summed over batches, heads normalised per layer), removes the --heads least important heads\n"
      "(each layer keeps one) and keeps the most important --ffn-keep share of each layer's FFN neurons. OUTPUT\n"
      "is a smaller dense classifier (config.json pruned_heads and intermediate_size) that eval and predict\n"
      "run; prune.json records the scores. --finetune-epochs N then fine-tunes it on --train/--dev to recover\n"
      "(the pruned model stays in OUTPUT/pruned). bertctl export writes it for transformers at full shapes.\n"
      "\n"
      "Example: bertctl prune --model ft/tiny --data data/dev.jsonl --heads 1 --ffn-keep 0.5 --output ft/tiny-pruned\n"
      "\n"
      "Exit codes: 0 done; 1 error; 2 bad flag or model, or OUTPUT not empty; 7 bad data.");
  cmd->add_option("--model", args->model, "Fine-tuned classifier directory (bertctl finetune's --output)")->required();
  cmd->add_option("--data", args->data, "Labelled examples (.jsonl, .csv or .tsv) the importance is measured on")
      ->required();
  cmd->add_option("--heads", args->heads, "Attention heads to remove, over all layers")->capture_default_str();
  cmd->add_option("--ffn-keep", args->ffn_keep, "Share of each layer's FFN neurons kept, in (0, 1]")
      ->capture_default_str();
  cmd->add_option("--output", args->output, "Directory of the pruned classifier")->required();
  cmd->add_flag("--overwrite", args->overwrite, "Replace the model in a non-empty --output");
  cmd->add_option("--finetune-epochs", args->finetune_epochs, "Recovery fine-tuning epochs (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000));
  cmd->add_option("--train", args->train, "--finetune-epochs: training file");
  cmd->add_option("--dev", args->dev, "--finetune-epochs: dev file (the best model is kept)");
  cmd->add_option("--test", args->test, "--finetune-epochs: optional test file");
  cmd->add_option("--config", args->config, "--finetune-epochs: fine-tuning YAML (bertctl finetune --config)");
  cmd->add_option("--lr", args->lr, "--finetune-epochs: peak learning rate (default: the config's)");
  cmd->add_option("--text-field", args->fields.text, "JSON key or CSV/TSV column of the text")->capture_default_str();
  cmd->add_option("--text-pair-field", args->fields.text_pair, "Key/column of the second text of sentence pairs");
  cmd->add_option("--label-field", args->fields.label, "Key/column of the label")->capture_default_str();
  cmd->add_option("--batch-size", args->batch_size, "Examples per importance batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--max-seq-len", args->max_seq_len, "Tokens per example (default: the model's model_max_length)")
      ->check(CLI::Range(0, 1 << 20));
  return [args] { return RunPrune(*args); };
}

}  // namespace

BERT_REGISTER_COMMAND(SetupPrune);

}  // namespace bert::cli
