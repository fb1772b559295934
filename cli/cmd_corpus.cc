// bertctl corpus stats: counts, lengths, [UNK] rate and content digest of
// one or more corpus databases.
#include <iostream>

#include "cli/command.h"
#include "common/logging.h"
#include "datapipe/corpus_stats.h"
#include "datapipe/corpus_store.h"

namespace bert::cli {
namespace {

struct StatsArgs {
  std::vector<std::string> dbs;
  bool json = false;
};

int RunStats(const StatsArgs& args) {
  Result<std::unique_ptr<Corpus>> corpus = Corpus::Open(args.dbs);
  if (!corpus.ok()) {
    LOG(ERROR) << "[corpus] " << corpus.status().message();
    return 1;
  }
  Result<CorpusStats> stats = ComputeCorpusStats(**corpus);
  if (!stats.ok()) {
    LOG(ERROR) << "[corpus] " << stats.status().message();
    return 1;
  }
  std::cout << (args.json ? stats->ToJson() + "\n" : stats->ToText());
  return 0;
}

std::function<int()> SetupCorpus(CLI::App& app) {
  auto args = std::make_shared<StatsArgs>();
  CLI::App* corpus = app.add_subcommand("corpus", "Inspect corpus databases made by bertctl prepare");
  corpus->require_subcommand(1);
  CLI::App* stats = corpus->add_subcommand(
      "stats",
      "Documents, sentences, tokens, length percentiles, [UNK] rate, vocabulary checksum and a content\n"
      "digest (equal digests mean equal tokenized content). Several --db are read as one corpus: the\n"
      "shards of one prepare job, or separate corpora in the order given.");
  stats->add_option("--db", args->dbs, "Corpus database directories")->required();
  stats->add_flag("--json", args->json, "Print JSON instead of a table");
  return [args] { return RunStats(*args); };
}

}  // namespace

BERT_REGISTER_COMMAND(SetupCorpus);

}  // namespace bert::cli
