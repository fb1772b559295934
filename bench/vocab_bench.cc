// vocab_bench: speed of the vocabulary trainer on synthetic data.
//
//   counting   words/s over --mb MB (default 64) of in-memory text with 1 thread (the
//              reference) and with --threads, and the speed-up;
//   learning   30k merges over a lexicon of --unique words with Zipf counts
//              (BPE bookkeeping is incremental, so this stays in seconds).
//
// Usage: vocab_bench [--threads N] [--unique N] [--size N] [--mb N]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>

#include "datapipe/vocab_trainer.h"

namespace {

// Words of 1-5 syllables, so that subwords recur as in natural language.
std::vector<std::string> MakeLexicon(size_t num_words, std::mt19937* rng) {
  const char* onsets[] = {"", "b", "br", "c", "ch", "d", "f", "g", "gr", "h", "k", "l", "m", "n",
                          "p", "pr", "qu", "r", "s", "sh", "st", "t", "tr", "v", "w", "z"};
  const char* vowels[] = {"a", "e", "i", "o", "u", "ai", "ea", "ou", "y"};
  const char* codas[] = {"", "", "n", "r", "s", "t", "ng", "ck", "l", "m", "x"};
  std::vector<std::string> lexicon;
  lexicon.reserve(num_words);
  while (lexicon.size() < num_words) {
    std::string word;
    for (size_t s = 1 + (*rng)() % 5; s > 0; --s) {
      word += onsets[(*rng)() % std::size(onsets)];
      word += vowels[(*rng)() % std::size(vowels)];
      word += codas[(*rng)() % std::size(codas)];
    }
    lexicon.push_back(word);  // repeats are summed by the trainer
  }
  return lexicon;
}

std::vector<std::string> MakeDocuments(const std::vector<std::string>& lexicon, size_t bytes, std::mt19937* rng) {
  std::vector<std::string> documents;
  std::string doc;
  size_t total = 0;
  while (total < bytes) {
    // Zipf-like rank: the inverse of a uniform draw, capped by the lexicon.
    double u = (static_cast<double>((*rng)() % 1000000) + 1) / 1e6;
    size_t rank = std::min(lexicon.size() - 1, static_cast<size_t>(1 / u) - 1);
    doc += lexicon[rank] + ((*rng)() % 12 == 0 ? ". " : " ");
    if (doc.size() > 4096) {
      total += doc.size();
      documents.push_back(std::move(doc));
      doc.clear();
    }
  }
  return documents;
}

double CountRate(const std::vector<std::string>& documents, int threads, uint64_t* words) {
  bert::WordCountOptions options;
  options.num_threads = threads;
  bert::Result<bert::WordCountResult> counts = bert::CountWordsInTexts(documents, options);
  if (!counts.ok()) {
    std::fprintf(stderr, "vocab_bench: %s\n", counts.status().ToString().c_str());
    std::exit(1);
  }
  *words = counts->num_words;
  return static_cast<double>(counts->num_words) / counts->seconds;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  size_t unique = 400000;
  int32_t size = 30522;
  size_t text_mb = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--unique")) unique = std::strtoul(argv[i + 1], nullptr, 10);
    if (!std::strcmp(argv[i], "--size")) size = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--mb")) text_mb = std::strtoul(argv[i + 1], nullptr, 10);
  }
  std::mt19937 rng(2024);
  std::vector<std::string> lexicon = MakeLexicon(unique, &rng);

  std::vector<std::string> documents = MakeDocuments(lexicon, text_mb << 20, &rng);
  uint64_t words = 0;
  double one = CountRate(documents, 1, &words);
  double many = CountRate(documents, threads, &words);
  std::printf("counting %llu words: %.2f M words/s with 1 thread (reference), %.2f M words/s with %d (x%.2f)\n",
              static_cast<unsigned long long>(words), one / 1e6, many / 1e6, threads, many / one);

  std::vector<bert::WordCount> counts;
  for (size_t rank = 0; rank < lexicon.size(); ++rank) counts.push_back({lexicon[rank], 1 + 1000000 / (rank + 1)});
  bert::VocabTrainerOptions options;
  options.vocab_size = size;
  bert::Result<bert::TrainedVocab> vocab = bert::LearnWordPiece(counts, options);
  if (!vocab.ok()) {
    std::fprintf(stderr, "vocab_bench: %s\n", vocab.status().ToString().c_str());
    return 1;
  }
  std::printf("learning %d pieces (%llu merges) from %llu unique words: %.2f s, %.0f merges/s\n", vocab->num_learned,
              static_cast<unsigned long long>(vocab->num_merges), static_cast<unsigned long long>(vocab->words_used),
              vocab->seconds, static_cast<double>(vocab->num_merges) / vocab->seconds);
  return 0;
}
