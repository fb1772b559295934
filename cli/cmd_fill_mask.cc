// bertctl fill-mask: the masked-LM head's top tokens for each [MASK] of a
// text, from a pretraining run, checkpoint or HuggingFace directory, through
// `bert-worker --fill-mask` (worker/train/fill_mask.h), whose output it shows.
#include "cli/command.h"
#include "cli/finetune_common.h"
#include "cli/worker_launch.h"

namespace bert::cli {
namespace {

struct FillMaskArgs {
  std::string model;
  std::vector<std::string> texts;
  int32_t top_k = 5;
  bool json = false;
};

int RunFillMask(const FillMaskArgs& args) {
  Result<std::string> worker = LocateBinary("bert-worker", "BERT_WORKER_BIN");
  if (!worker.ok()) return FailFinetune("[fill-mask]", worker.status());
  std::vector<std::string> argv = {*worker, "--fill-mask", "--model", AbsolutePath(args.model), "--top-k",
                                   std::to_string(args.top_k)};
  for (const std::string& text : args.texts) argv.insert(argv.end(), {"--text", text});
  if (args.json) argv.push_back("--json");
  return RunToEnd(argv, "", "[fill-mask]");
}

std::function<int()> SetupFillMask(CLI::App& app) {
  auto args = std::make_shared<FillMaskArgs>();
  CLI::App* cmd = app.add_subcommand("fill-mask", "Show a pretrained model's top tokens for each [MASK] of a text");
  cmd->footer(
      "Write [MASK] where a token is to be predicted; the rest is tokenized as BERT's tokenizer does,\n"
      "and the model sees [CLS] TEXT [SEP]. Prints each text, then per [MASK] the top tokens and their\n"
      "probabilities (softmax over the vocabulary); --json prints one JSON line per text instead.\n"
      "Example: bertctl fill-mask --model runs/tiny \"the kernel [MASK] the memory of a process.\"\n"
      "Exit codes: 0 done; 2 bad flag, model (no MLM head: a classifier or BertModel) or text.");
  cmd->add_option("--model", args->model, "Pretraining run, checkpoint (step-N) or HF directory")->required();
  cmd->add_option("texts", args->texts, "Texts with [MASK]")->required();
  cmd->add_option("--top-k", args->top_k, "Candidates per [MASK]")->capture_default_str()->check(CLI::Range(1, 1000));
  cmd->add_flag("--json", args->json, "One JSON line per text: {text, tokens, masks: [{position, candidates}]}");
  return [args] { return RunFillMask(*args); };
}

}  // namespace

BERT_REGISTER_COMMAND(SetupFillMask);

}  // namespace bert::cli
