// bertctl corpus stats: counts, lengths, [UNK] rate and content digest of
// one or more corpus databases.
#include <iostream>

#include "cli/command.h"
#include "common/logging.h"
#include "datapipe/corpus_stats.h"
#include "datapipe/corpus_store.h"
#include "datapipe/vocab.h"

namespace bert::cli {
namespace {

struct StatsArgs {
  std::vector<std::string> dbs;
  std::string vocab_path;  // optional: verify the corpus was made with it
  bool cased = false;
  bool json = false;
};

int RunStats(const StatsArgs& args) {
  Result<std::unique_ptr<Corpus>> corpus = Corpus::Open(args.dbs);
  if (!corpus.ok()) {
    LOG(ERROR) << "[corpus] " << corpus.status().message();
    return 1;
  }
  if (!args.vocab_path.empty()) {
    Result<std::shared_ptr<const Vocab>> vocab = Vocab::Load(args.vocab_path);
    Status st = vocab.ok() ? (*corpus)->CheckVocabulary((*vocab)->checksum(), (*vocab)->size(), !args.cased)
                           : vocab.status();
    if (!st.ok()) {
      LOG(ERROR) << "[corpus] " << st.message();
      return 1;
    }
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
  CLI::App* stats = corpus->add_subcommand("stats", "Counts, lengths, [UNK] rate and content digest of a corpus");
  stats->footer(
      "Prints documents, sentences, tokens, length percentiles, [UNK] rate, vocabulary checksum and a\n"
      "content digest (equal digests mean equal tokenized content). Several --db are read as one corpus:\n"
      "the shards of one prepare job, or separate corpora in the order given.");
  stats->add_option("--db", args->dbs, "Corpus database directories")->required();
  stats->add_flag("--json", args->json, "Print JSON instead of a table");
  stats->add_option("--vocab", args->vocab_path, "Also check that the corpus was prepared with this vocab.txt");
  stats->add_flag("--cased", args->cased, "With --vocab: expect a cased corpus");
  return [args] { return RunStats(*args); };
}

}  // namespace

BERT_REGISTER_COMMAND(SetupCorpus);

}  // namespace bert::cli
