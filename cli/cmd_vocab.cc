// bertctl vocab: learn a BERT WordPiece vocabulary (vocab.txt) from raw text.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "cli/command.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "datapipe/vocab_trainer.h"

namespace bert::cli {
namespace {

struct VocabArgs {
  std::vector<std::string> inputs;
  std::string output;
  int32_t size = 30522;
  bool cased = false;
  uint64_t min_frequency = 2;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string format = "auto";
  std::string score = "frequency";
  double alphabet_coverage = 0.9999;
  int32_t max_alphabet_chars = 1000;
  int32_t max_chars_per_word = 100;
};

// Checks what can be checked before reading the corpus, so a typo does not
// cost a long count. Returns the expanded input files.
Result<std::vector<std::string>> CheckArgs(const VocabArgs& args, VocabTrainerOptions* options,
                                           WordCountOptions* count_options) {
  Result<InputFormat> format = ParseInputFormat(args.format);
  if (!format.ok()) return Status::InvalidArgument("--format: " + format.status().message());
  Result<MergeScore> score = ParseMergeScore(args.score);
  if (!score.ok()) return Status::InvalidArgument("--score: " + score.status().message());
  const int32_t num_special = static_cast<int32_t>(options->special_tokens.size());
  if (args.size <= num_special) {
    return Status::InvalidArgument("--size " + std::to_string(args.size) + " leaves no room after the " +
                                   std::to_string(num_special) + " special tokens and the alphabet");
  }
  std::filesystem::path parent = std::filesystem::path(args.output).parent_path();
  std::error_code ec;
  if (!parent.empty() && !std::filesystem::is_directory(parent, ec)) {
    return Status::InvalidArgument("--output: directory " + parent.string() + " does not exist");
  }
  std::vector<std::string> path_errors;
  std::vector<std::string> files = ExpandInputPaths(args.inputs, &path_errors);
  if (!path_errors.empty()) {  // every bad path, on one line
    std::string message = "--input: " + path_errors.front();
    for (size_t i = 1; i < path_errors.size(); ++i) message += "; " + path_errors[i];
    return Status::InvalidArgument(message);
  }
  if (files.empty()) return Status::InvalidArgument("--input: no files found");

  options->vocab_size = args.size;
  options->min_frequency = args.min_frequency;
  options->alphabet_coverage = args.alphabet_coverage;
  options->max_alphabet_chars = args.max_alphabet_chars;
  options->max_input_chars_per_word = args.max_chars_per_word;
  options->score = *score;
  options->log_progress = true;
  count_options->num_threads = args.threads;
  count_options->lower_case = !args.cased;
  count_options->reader.format = *format;
  count_options->log_progress = true;
  return files;
}

void PrintSummary(const VocabArgs& args, const WordCountResult& counts, const TrainedVocab& vocab) {
  std::printf(
      "wrote %s: %zu tokens (%d special, %d alphabet symbols from %d characters, %d learned pieces)\n"
      "  from %llu documents, %llu words, %zu unique words (%llu learned from, %llu with rare characters or too "
      "long) in %.1f s (counting %.1f s, learning %.1f s; %d threads, %s, score %s)\n",
      args.output.c_str(), vocab.tokens.size(), vocab.num_special, vocab.num_alphabet, vocab.num_alphabet_chars,
      vocab.num_learned, static_cast<unsigned long long>(counts.num_documents),
      static_cast<unsigned long long>(counts.num_words), counts.words.size(),
      static_cast<unsigned long long>(vocab.words_used), static_cast<unsigned long long>(vocab.words_skipped),
      counts.seconds + vocab.seconds, counts.seconds, vocab.seconds, args.threads,
      args.cased ? "cased" : "uncased", args.score.c_str());
  if (vocab.ran_out_of_merges) {
    std::printf("  note: %zu of %d entries: no pair of pieces is left that occurs at least %llu times\n",
                vocab.tokens.size(), args.size, static_cast<unsigned long long>(args.min_frequency));
  }
  for (const std::string& line : counts.reader_stats.Summary()) std::printf("  skipped: %s\n", line.c_str());
  if (counts.invalid_utf8_bytes > 0) {
    std::printf("  dropped %llu bytes of invalid UTF-8\n", static_cast<unsigned long long>(counts.invalid_utf8_bytes));
  }
}

int RunVocab(const VocabArgs& args) {
  VocabTrainerOptions options;
  WordCountOptions count_options;
  Result<std::vector<std::string>> files = CheckArgs(args, &options, &count_options);
  if (!files.ok()) {
    LOG(ERROR) << "[vocab] " << files.status().message();
    return 2;
  }
  LOG(INFO) << "[vocab] counting words in " << files->size() << " files (" << args.threads << " threads, "
            << (args.cased ? "cased" : "uncased") << ")";
  Result<WordCountResult> counts = CountWordsInFiles(*files, count_options);
  if (!counts.ok()) {
    LOG(ERROR) << "[vocab] " << counts.status().message();
    return 1;
  }
  if (counts->words.empty()) {
    LOG(ERROR) << "[vocab] --input: no words in " << files->size() << " files";
    return 1;
  }
  Result<TrainedVocab> vocab = LearnWordPiece(counts->words, options);
  if (!vocab.ok()) {  // the size check needs the alphabet, so it comes only now
    LOG(ERROR) << "[vocab] --size: " << vocab.status().message();
    return 2;
  }
  Status written = WriteFileAtomic(args.output, vocab->ToFileContents());
  if (!written.ok()) {
    LOG(ERROR) << "[vocab] --output: " << written.message();
    return 1;
  }
  PrintSummary(args, *counts, *vocab);
  return 0;
}

std::function<int()> SetupVocab(CLI::App& app) {
  auto args = std::make_shared<VocabArgs>();
  CLI::App* cmd = app.add_subcommand("vocab", "Learn a BERT WordPiece vocabulary (vocab.txt) from raw text");
  cmd->footer(
      "Words are counted with BERT's BasicTokenizer, then subword pieces are learned by BPE merges over\n"
      "characters with ## continuations (HuggingFace's WordPieceTrainer). The file lists [PAD] [UNK] [CLS]\n"
      "[SEP] [MASK], then the characters, the ## characters and the learned pieces in merge order. The\n"
      "result is the same for any --threads.\n"
      "Example: bertctl vocab --input corpus/ --size 30522 --threads 8 --output vocab.txt");
  cmd->add_option("--input", args->inputs, "Input files or directories (recursively; .gz and .dz are decompressed)")
      ->required();
  cmd->add_option("--output", args->output, "vocab.txt to write (atomically)")->required();
  cmd->add_option("--size", args->size, "Vocabulary entries, special tokens included")->required();
  cmd->add_flag("--cased", args->cased, "Keep case and accents (for cased models)");
  cmd->add_option("--min-frequency", args->min_frequency,
                  "Least count for an alphabet character and for a learned pair")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--threads", args->threads, "Word-counting threads")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--format", args->format,
                  "auto (by extension: .jsonl/.json -> jsonl, else text), jsonl (a \"text\" field per line), "
                  "lines (a sentence per line, blank line between documents), text (a file per document)")
      ->capture_default_str();
  cmd->add_option("--score", args->score,
                  "frequency (BPE: most frequent pair) or likelihood (count(ab) / (count(a) count(b)))")
      ->capture_default_str();
  cmd->add_option("--alphabet-coverage", args->alphabet_coverage,
                  "Keep the most frequent characters until they cover this fraction of all characters")
      ->check(CLI::Range(1e-6, 1.0))
      ->capture_default_str();
  cmd->add_option("--max-alphabet", args->max_alphabet_chars, "At most this many alphabet characters")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--max-chars-per-word", args->max_chars_per_word, "Longer words become [UNK] (and are not learned)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  return [args] { return RunVocab(*args); };
}

}  // namespace

BERT_REGISTER_COMMAND(SetupVocab);

}  // namespace bert::cli
