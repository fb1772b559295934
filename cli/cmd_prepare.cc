// bertctl prepare: raw text -> tokenized corpus database (RocksDB).
#include <cstdio>
#include <iostream>

#include "cli/command.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "datapipe/corpus_ingest.h"
#include "datapipe/tokenizer.h"

namespace bert::cli {
namespace {

struct PrepareArgs {
  std::vector<std::string> inputs;
  std::string vocab_path;
  std::string db_dir;
  std::string format = "auto";
  std::string shard = "0/1";
  bool cased = false;
  bool overwrite = false;
  int threads = 2;
  int max_chars_per_word = 100;
  size_t max_line_bytes = 1u << 20;
};

Status ParseShard(const std::string& text, uint32_t* index, uint32_t* count) {
  unsigned i = 0, n = 0;
  char extra = 0;
  if (std::sscanf(text.c_str(), "%u/%u%c", &i, &n, &extra) != 2 || n == 0 || i >= n) {
    return Status::InvalidArgument("--shard: '" + text + "' is not I/N with 0 <= I < N (for example 0/4)");
  }
  *index = i;
  *count = n;
  return Status::Ok();
}

int RunPrepare(const PrepareArgs& args) {
  IngestOptions options;
  Status st = ParseShard(args.shard, &options.shard_index, &options.num_shards);
  Result<InputFormat> format = ParseInputFormat(args.format);
  if (!st.ok() || !format.ok()) {
    LOG(ERROR) << "[prepare] " << (st.ok() ? format.status() : st).message();
    return 2;
  }
  std::vector<std::string> path_errors;
  std::vector<std::string> all_files = ExpandInputPaths(args.inputs, &path_errors);
  for (const std::string& error : path_errors) LOG(WARNING) << "[prepare] " << error << " (skipped)";
  if (all_files.empty()) {
    LOG(ERROR) << "[prepare] --input: no readable input files";
    return 2;
  }
  options.files = ShardSlice(all_files, options.shard_index, options.num_shards);
  options.shard_set_id = FingerprintFiles(all_files) + "x" + std::to_string(options.num_shards);
  options.reader.format = *format;
  options.reader.max_line_bytes = args.max_line_bytes;
  options.num_threads = args.threads;
  options.overwrite = args.overwrite;

  Result<std::shared_ptr<const Vocab>> vocab = Vocab::Load(args.vocab_path);
  if (!vocab.ok()) {
    LOG(ERROR) << "[prepare] --vocab: " << vocab.status().message();
    return 2;
  }
  TokenizerOptions tokenizer_options;
  tokenizer_options.lower_case = !args.cased;
  tokenizer_options.max_input_chars_per_word = args.max_chars_per_word;
  FullTokenizer tokenizer(*vocab, tokenizer_options);

  LOG(INFO) << "[prepare] shard " << options.shard_index << "/" << options.num_shards << ": " << options.files.size()
            << " of " << all_files.size() << " files -> " << args.db_dir << " (" << args.threads << " threads, "
            << ((*vocab)->size()) << "-token vocabulary, " << (args.cased ? "cased" : "uncased") << ")";
  Result<IngestReport> report = IngestCorpus(args.db_dir, tokenizer, options);
  if (!report.ok()) {
    LOG(ERROR) << "[prepare] " << report.status().message();
    return 1;
  }
  double mb = report->input_bytes / 1e6;
  std::printf("prepared %s: %llu documents, %llu sentences, %llu tokens from %.1f MB in %.1f s (%.1f MB/s)%s\n",
              args.db_dir.c_str(), (unsigned long long)report->documents, (unsigned long long)report->sentences,
              (unsigned long long)report->tokens, mb, report->seconds, mb / std::max(1e-9, report->seconds),
              report->resumed ? ", continued after an interruption" : "");
  std::vector<std::string> summary = report->Summary();
  summary.insert(summary.end(), path_errors.begin(), path_errors.end());
  for (const std::string& line : summary) std::printf("  skipped: %s\n", line.c_str());
  return 0;
}

std::function<int()> SetupPrepare(CLI::App& app) {
  auto args = std::make_shared<PrepareArgs>();
  CLI::App* cmd = app.add_subcommand("prepare", "Tokenize raw text into a corpus database (RocksDB)");
  cmd->footer(
      "Documents are split into sentences, tokenized with BERT's WordPiece tokenizer and stored with\n"
      "ids in input order. Bad input is reported as FILE:LINE, counted and skipped. An interrupted run\n"
      "continues where it stopped when re-run with the same arguments.\n"
      "Example: bertctl prepare --input corpus/ --vocab vocab.txt --db db/ --threads 8");
  cmd->add_option("--input", args->inputs, "Input files or directories (recursively; .gz and .dz are decompressed)")
      ->required();
  cmd->add_option("--vocab", args->vocab_path, "BERT vocab.txt")->required()->check(CLI::ExistingFile);
  cmd->add_option("--db", args->db_dir, "Output corpus database directory")->required();
  cmd->add_flag("--cased", args->cased, "Keep case and accents (for cased models)");
  cmd->add_option("--threads", args->threads, "Tokenizing threads")->check(CLI::Range(1, 256))->capture_default_str();
  cmd->add_option("--format", args->format,
                  "auto (by extension: .jsonl/.json -> jsonl, else text), jsonl (a \"text\" field per line), "
                  "lines (a sentence per line, blank line between documents), text (a file per document)")
      ->capture_default_str();
  cmd->add_option("--shard", args->shard, "Ingest slice I of N of the input file list into this database (I/N)")
      ->capture_default_str();
  cmd->add_option("--max-chars-per-word", args->max_chars_per_word, "Longer words become [UNK]")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--max-line-bytes", args->max_line_bytes, "Longer input lines are skipped with a warning")
      ->check(CLI::Range(size_t{1024}, size_t{1} << 32))
      ->capture_default_str();
  cmd->add_flag("--overwrite", args->overwrite, "Delete an existing database at --db first");
  return [args] { return RunPrepare(*args); };
}

}  // namespace

BERT_REGISTER_COMMAND(SetupPrepare);

}  // namespace bert::cli
