#include "datapipe/vocab_trainer.h"

#include <algorithm>
#include <chrono>
#include <queue>
#include <string_view>
#include <unordered_map>

#include "common/logging.h"

namespace bert {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

namespace {

constexpr char kContinuation[] = "##";

// Splits valid UTF-8 (BasicTokenize's output) into its characters.
std::vector<std::string_view> SplitChars(std::string_view word) {
  std::vector<std::string_view> chars;
  for (size_t i = 0; i < word.size();) {
    unsigned char lead = static_cast<unsigned char>(word[i]);
    size_t len = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : 4;
    len = std::min(len, word.size() - i);
    chars.push_back(word.substr(i, len));
    i += len;
  }
  return chars;
}

struct CharStats {
  uint64_t count = 0;        // occurrences, weighted by word count
  bool seen_inside = false;  // occurs after a word's first character: needs a ## form
};

// Symbols are alphabet entries and learned pieces; the id is the index.
class SymbolTable {
 public:
  // Returns the id of `piece`, adding it when new (two merges may spell the
  // same piece: "a" + "##bc" and "ab" + "##c"; the piece is listed once).
  int32_t Intern(const std::string& piece) {
    auto [it, inserted] = ids_.emplace(piece, static_cast<int32_t>(pieces_.size()));
    if (inserted) pieces_.push_back(piece);
    return it->second;
  }
  int32_t Find(const std::string& piece) const {
    auto it = ids_.find(piece);
    return it == ids_.end() ? -1 : it->second;
  }
  const std::string& Piece(int32_t id) const { return pieces_[static_cast<size_t>(id)]; }
  int32_t size() const { return static_cast<int32_t>(pieces_.size()); }

 private:
  std::vector<std::string> pieces_;
  std::unordered_map<std::string, int32_t> ids_;
};

struct Word {
  std::vector<int32_t> symbols;  // current segmentation
  uint64_t count = 0;
};

// Picks the alphabet: characters seen min_frequency times, most frequent
// first (ties by code point), until they cover the wanted fraction of all
// character occurrences or reach the cap. Returns them sorted by code point.
std::vector<std::string> ChooseAlphabet(const std::unordered_map<std::string, CharStats>& chars,
                                        const VocabTrainerOptions& options) {
  uint64_t total = 0;
  std::vector<std::pair<uint64_t, std::string>> by_count;
  for (const auto& [ch, stats] : chars) {
    total += stats.count;
    if (stats.count >= options.min_frequency) by_count.emplace_back(stats.count, ch);
  }
  std::sort(by_count.begin(), by_count.end(),
            [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
  std::vector<std::string> alphabet;
  uint64_t covered = 0;
  for (const auto& [count, ch] : by_count) {
    if (static_cast<int32_t>(alphabet.size()) >= options.max_alphabet_chars) break;
    if (static_cast<double>(covered) >= options.alphabet_coverage * static_cast<double>(total)) break;
    alphabet.push_back(ch);
    covered += count;
  }
  std::sort(alphabet.begin(), alphabet.end());  // UTF-8 byte order is code point order
  return alphabet;
}

Status ValidateOptions(const VocabTrainerOptions& options) {
  if (options.vocab_size < 1) return Status::InvalidArgument("vocab size must be positive");
  if (options.min_frequency < 1) return Status::InvalidArgument("min frequency must be at least 1");
  if (!(options.alphabet_coverage > 0 && options.alphabet_coverage <= 1)) {
    return Status::InvalidArgument("alphabet coverage must be in (0, 1]");
  }
  if (options.max_alphabet_chars < 1) return Status::InvalidArgument("max alphabet chars must be positive");
  if (options.max_input_chars_per_word < 1) return Status::InvalidArgument("max input chars must be positive");
  return Status::Ok();
}

// Incremental pair merging with the bookkeeping of HuggingFace's BpeTrainer:
// pair counts, an index pair -> words holding it, and a max-heap whose stale
// entries are fixed when popped. A merge rewrites only the words that hold
// the pair, so its cost is proportional to them, not to the corpus.
//
// Heap invariant: every pair seen min_frequency times has an entry whose
// stored score is >= its current score. Scores fall lazily (a popped entry
// that is too high is pushed again at its current score) and every rise is
// pushed at once (frequency: pairs with the new symbol; likelihood: also
// pairs with the two symbols whose counts fell). So the first popped entry
// that is exact is the best pair, ties going to the smaller (left, right)
// symbol ids, whatever the heap's history: the result is deterministic.
class PairMerger {
 public:
  PairMerger(std::vector<Word> words, int32_t num_symbols, MergeScore score, uint64_t min_frequency)
      : words_(std::move(words)), score_(score), min_frequency_(static_cast<int64_t>(min_frequency)),
        word_stamp_(words_.size(), 0) {
    GrowSymbols(num_symbols);
    for (uint32_t w = 0; w < words_.size(); ++w) {
      const Word& word = words_[w];
      for (int32_t symbol : word.symbols) symbol_counts_[symbol] += static_cast<int64_t>(word.count);
      for (size_t i = 0; i + 1 < word.symbols.size(); ++i) {
        uint64_t key = Key(word.symbols[i], word.symbols[i + 1]);
        pair_counts_[key] += static_cast<int64_t>(word.count);
        pair_words_[key].push_back(w);
      }
    }
    for (const auto& [key, count] : pair_counts_) {
      IndexPairBySymbol(key);
      PushIfFrequent(key);
    }
  }

  // The best pair still seen min_frequency times; false when none is left.
  bool NextPair(int32_t* left, int32_t* right) {
    while (!heap_.empty()) {
      Entry top = heap_.top();
      heap_.pop();
      if (PairCount(top.key) < min_frequency_) continue;
      double now = Score(top.key);
      if (now == top.score) {
        *left = Left(top.key);
        *right = Right(top.key);
        return true;
      }
      if (now < top.score) heap_.push(Entry{now, top.key});
      // now > top.score: the rise was pushed as a fresher entry; drop this one.
    }
    return false;
  }

  // Replaces each occurrence of (left, right), left to right, with `merged`.
  void Merge(int32_t left, int32_t right, int32_t merged) {
    ++merge_index_;
    GrowSymbols(merged + 1);
    const uint64_t merged_key = Key(left, right);
    auto holders_it = pair_words_.find(merged_key);
    if (holders_it == pair_words_.end()) return;
    std::vector<uint32_t> holders = std::move(holders_it->second);
    pair_words_.erase(holders_it);
    std::vector<uint64_t> touched;  // pairs that now hold `merged`: their counts may have risen
    for (uint32_t w : holders) {
      if (word_stamp_[w] == merge_index_ || !HoldsPair(words_[w], left, right)) continue;  // repeated or stale
      word_stamp_[w] = merge_index_;
      Word& word = words_[w];
      SortedPairs(word, &pairs_before_);
      int64_t rewrites = RewriteWord(&word.symbols, left, right, merged) * static_cast<int64_t>(word.count);
      symbol_counts_[left] -= rewrites;
      symbol_counts_[right] -= rewrites;
      symbol_counts_[merged] += rewrites;
      SortedPairs(word, &pairs_after_);
      ApplyPairChanges(w, merged, &touched);
    }
    CHECK_EQ(PairCount(merged_key), 0) << "a left-to-right rewrite leaves no (left, right) pair";
    pair_counts_.erase(merged_key);
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint64_t key : touched) {
      IndexPairBySymbol(key);
      PushIfFrequent(key);
    }
    if (score_ == MergeScore::kLikelihood) {
      PushPairsOf(left);  // count(left) fell, so these scores rose
      if (right != left) PushPairsOf(right);
    }
    RebuildHeapIfBloated();
  }

 private:
  struct Entry {
    double score;
    uint64_t key;
    // Max-heap order: higher score first, then the smaller key.
    bool operator<(const Entry& other) const {
      return score != other.score ? score < other.score : key > other.key;
    }
  };
  static uint64_t Key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  static int32_t Left(uint64_t key) { return static_cast<int32_t>(key >> 32); }
  static int32_t Right(uint64_t key) { return static_cast<int32_t>(key & 0xffffffffu); }

  void GrowSymbols(int32_t num_symbols) {
    if (static_cast<size_t>(num_symbols) <= symbol_counts_.size()) return;
    symbol_counts_.resize(static_cast<size_t>(num_symbols), 0);
    if (score_ == MergeScore::kLikelihood) symbol_pairs_.resize(static_cast<size_t>(num_symbols));
  }
  int64_t PairCount(uint64_t key) const {
    auto it = pair_counts_.find(key);
    return it == pair_counts_.end() ? 0 : it->second;
  }
  double Score(uint64_t key) const {
    double count = static_cast<double>(PairCount(key));
    if (score_ == MergeScore::kFrequency) return count;
    return count / (static_cast<double>(symbol_counts_[Left(key)]) * static_cast<double>(symbol_counts_[Right(key)]));
  }
  void PushIfFrequent(uint64_t key) {
    if (PairCount(key) >= min_frequency_) heap_.push(Entry{Score(key), key});
  }
  // Likelihood only: remembers that `key` involves its two symbols.
  void IndexPairBySymbol(uint64_t key) {
    if (score_ != MergeScore::kLikelihood) return;
    symbol_pairs_[Left(key)].push_back(key);
    if (Right(key) != Left(key)) symbol_pairs_[Right(key)].push_back(key);
  }
  // Pushes the live pairs of `symbol`, dropping dead and repeated ones from its list.
  void PushPairsOf(int32_t symbol) {
    std::vector<uint64_t>& pairs = symbol_pairs_[symbol];
    std::sort(pairs.begin(), pairs.end());
    pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());
    pairs.erase(std::remove_if(pairs.begin(), pairs.end(), [&](uint64_t key) { return PairCount(key) == 0; }),
                pairs.end());
    for (uint64_t key : pairs) PushIfFrequent(key);
  }

  void SortedPairs(const Word& word, std::vector<uint64_t>* pairs) const {
    pairs->clear();
    for (size_t i = 0; i + 1 < word.symbols.size(); ++i) pairs->push_back(Key(word.symbols[i], word.symbols[i + 1]));
    std::sort(pairs->begin(), pairs->end());
  }
  // Applies the difference between pairs_before_ and pairs_after_ (sorted
  // multisets) of word `w` to the pair counts: only the pairs around each
  // rewrite change, so this costs a few hash updates, not one per pair. Pairs
  // that gained occurrences hold `merged`; they are indexed and reported.
  void ApplyPairChanges(uint32_t w, int32_t merged, std::vector<uint64_t>* touched) {
    const int64_t count = static_cast<int64_t>(words_[w].count);
    auto before = pairs_before_.begin(), after = pairs_after_.begin();
    while (before != pairs_before_.end() || after != pairs_after_.end()) {
      if (after == pairs_after_.end() || (before != pairs_before_.end() && *before < *after)) {
        pair_counts_[*before++] -= count;
      } else if (before == pairs_before_.end() || *after < *before) {
        uint64_t key = *after++;
        pair_counts_[key] += count;
        CHECK(Left(key) == merged || Right(key) == merged) << "only pairs with the new symbol can gain";
        pair_words_[key].push_back(w);
        touched->push_back(key);
      } else {
        ++before;
        ++after;
      }
    }
  }
  static bool HoldsPair(const Word& word, int32_t left, int32_t right) {
    for (size_t i = 0; i + 1 < word.symbols.size(); ++i) {
      if (word.symbols[i] == left && word.symbols[i + 1] == right) return true;
    }
    return false;
  }
  // Returns how many times the pair was replaced.
  static int64_t RewriteWord(std::vector<int32_t>* symbols, int32_t left, int32_t right, int32_t merged) {
    std::vector<int32_t>& s = *symbols;
    size_t out = 0;
    int64_t rewrites = 0;
    for (size_t i = 0; i < s.size();) {
      if (i + 1 < s.size() && s[i] == left && s[i + 1] == right) {
        s[out++] = merged;
        i += 2;
        ++rewrites;
      } else {
        s[out++] = s[i++];
      }
    }
    s.resize(out);
    return rewrites;
  }
  // Stale entries pile up (likelihood pushes many); start afresh when they
  // dominate. Safe by the heap invariant above.
  void RebuildHeapIfBloated() {
    if (heap_.size() < 4 * pair_counts_.size() + (1u << 20)) return;
    heap_ = std::priority_queue<Entry>();
    for (const auto& [key, count] : pair_counts_) PushIfFrequent(key);
  }

  std::vector<Word> words_;
  const MergeScore score_;
  const int64_t min_frequency_;
  std::unordered_map<uint64_t, int64_t> pair_counts_;                // count of each adjacent pair
  std::unordered_map<uint64_t, std::vector<uint32_t>> pair_words_;  // words that may hold the pair
  std::vector<int64_t> symbol_counts_;                               // occurrences of each symbol
  std::vector<std::vector<uint64_t>> symbol_pairs_;                  // likelihood: pairs a symbol is in
  std::priority_queue<Entry> heap_;
  std::vector<uint64_t> word_stamp_;  // last merge that rewrote each word (dedupes holders)
  uint64_t merge_index_ = 0;
  std::vector<uint64_t> pairs_before_, pairs_after_;  // scratch for ApplyPairChanges
};

// The input as unique words (duplicates summed), sorted by word.
std::vector<WordCount> SortedUniqueWords(const std::vector<WordCount>& words) {
  std::vector<WordCount> sorted = words;
  std::sort(sorted.begin(), sorted.end(), [](const WordCount& a, const WordCount& b) { return a.word < b.word; });
  size_t out = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (out > 0 && sorted[out - 1].word == sorted[i].word) {
      sorted[out - 1].count += sorted[i].count;
    } else {
      if (out != i) sorted[out] = std::move(sorted[i]);  // a self-move would empty the string
      ++out;
    }
  }
  sorted.resize(out);
  return sorted;
}

std::unordered_map<std::string, CharStats> CountChars(const std::vector<WordCount>& words, int32_t max_chars) {
  std::unordered_map<std::string, CharStats> chars;
  for (const WordCount& wc : words) {
    std::vector<std::string_view> word_chars = SplitChars(wc.word);
    if (word_chars.empty() || word_chars.size() > static_cast<size_t>(max_chars)) continue;
    for (size_t i = 0; i < word_chars.size(); ++i) {
      CharStats& stats = chars[std::string(word_chars[i])];
      stats.count += wc.count;
      stats.seen_inside |= i > 0;
    }
  }
  return chars;
}

// Splits each usable word into alphabet symbols; skips (and counts) words
// that are too long or hold a character outside the alphabet.
std::vector<Word> SegmentWords(const std::vector<WordCount>& words, const SymbolTable& symbols, int32_t max_chars,
                               uint64_t* words_skipped) {
  std::vector<Word> segmented;
  for (const WordCount& wc : words) {
    std::vector<std::string_view> word_chars = SplitChars(wc.word);
    Word word{{}, wc.count};
    bool usable = !word_chars.empty() && word_chars.size() <= static_cast<size_t>(max_chars);
    for (size_t i = 0; usable && i < word_chars.size(); ++i) {
      int32_t id = symbols.Find(i == 0 ? std::string(word_chars[i]) : kContinuation + std::string(word_chars[i]));
      usable = id >= 0;
      word.symbols.push_back(id);
    }
    if (usable) {
      segmented.push_back(std::move(word));
    } else {
      ++*words_skipped;
    }
  }
  return segmented;
}

void LogMergeProgress(int32_t learned, int32_t wanted, uint64_t merges, double elapsed_s) {
  double rate = static_cast<double>(merges) / std::max(elapsed_s, 1e-9);
  double eta_s = learned > 0 ? elapsed_s * (wanted - learned) / learned : -1;
  LOG(INFO) << "[vocab] learned " << learned << "/" << wanted << " pieces, " << static_cast<uint64_t>(rate)
            << " merges/s, ETA " << FormatDuration(eta_s);
}

// Merges until the vocabulary is full or no pair is frequent enough.
void LearnPieces(std::vector<Word> words, SymbolTable* symbols, const VocabTrainerOptions& options,
                 TrainedVocab* out) {
  const int32_t base_size = symbols->size();
  const int32_t wanted = options.vocab_size - base_size;
  PairMerger merger(std::move(words), base_size, options.score, options.min_frequency);
  auto start = Clock::now(), last_log = start;
  int32_t left = 0, right = 0;
  while (symbols->size() < options.vocab_size) {
    if (!merger.NextPair(&left, &right)) {
      out->ran_out_of_merges = true;
      break;
    }
    const std::string& right_piece = symbols->Piece(right);
    CHECK_EQ(right_piece.compare(0, 2, kContinuation), 0) << "a right-hand symbol is never word-initial";
    int32_t merged = symbols->Intern(symbols->Piece(left) + right_piece.substr(2));
    merger.Merge(left, right, merged);
    ++out->num_merges;
    if (options.log_progress && SecondsSince(last_log) >= 5) {
      LogMergeProgress(symbols->size() - base_size, wanted, out->num_merges, SecondsSince(start));
      last_log = Clock::now();
    }
  }
  out->num_learned = symbols->size() - base_size;
  if (options.log_progress) LogMergeProgress(out->num_learned, wanted, out->num_merges, SecondsSince(start));
}

}  // namespace

Result<MergeScore> ParseMergeScore(const std::string& name) {
  if (name == "frequency") return MergeScore::kFrequency;
  if (name == "likelihood") return MergeScore::kLikelihood;
  return Status::InvalidArgument("unknown merge score '" + name + "' (expected frequency or likelihood)");
}

const char* MergeScoreName(MergeScore score) {
  return score == MergeScore::kFrequency ? "frequency" : "likelihood";
}

std::string TrainedVocab::ToFileContents() const {
  std::string contents;
  for (const std::string& token : tokens) contents.append(token).push_back('\n');
  return contents;
}

Result<TrainedVocab> LearnWordPiece(const std::vector<WordCount>& input, const VocabTrainerOptions& options) {
  BERT_RETURN_IF_ERROR(ValidateOptions(options));
  auto start = Clock::now();
  std::vector<WordCount> words = SortedUniqueWords(input);
  std::unordered_map<std::string, CharStats> chars = CountChars(words, options.max_input_chars_per_word);
  std::vector<std::string> alphabet = ChooseAlphabet(chars, options);

  // Id order is output order: specials, characters, ## characters, learned pieces.
  SymbolTable symbols;
  for (const std::string& token : options.special_tokens) symbols.Intern(token);
  for (const std::string& ch : alphabet) symbols.Intern(ch);
  for (const std::string& ch : alphabet) {
    if (chars.at(ch).seen_inside) symbols.Intern(kContinuation + ch);
  }
  TrainedVocab out;
  out.num_special = static_cast<int32_t>(options.special_tokens.size());
  out.num_alphabet = symbols.size() - out.num_special;
  out.num_alphabet_chars = static_cast<int32_t>(alphabet.size());
  if (symbols.size() > options.vocab_size) {
    return Status::InvalidArgument(
        "vocab size " + std::to_string(options.vocab_size) + " cannot hold the " + std::to_string(out.num_special) +
        " special tokens and the " + std::to_string(out.num_alphabet) + " alphabet symbols (" +
        std::to_string(out.num_alphabet_chars) + " characters); use a size of at least " +
        std::to_string(symbols.size()) + " or a smaller alphabet");
  }
  std::vector<Word> segmented =
      SegmentWords(words, symbols, options.max_input_chars_per_word, &out.words_skipped);
  out.words_used = segmented.size();
  if (options.log_progress) {
    LOG(INFO) << "[vocab] alphabet " << out.num_alphabet_chars << " characters (" << out.num_alphabet
              << " symbols); learning from " << out.words_used << " unique words (" << out.words_skipped
              << " skipped: rare characters or too long), score " << MergeScoreName(options.score);
  }
  LearnPieces(std::move(segmented), &symbols, options, &out);
  out.tokens.reserve(static_cast<size_t>(symbols.size()));
  for (int32_t id = 0; id < symbols.size(); ++id) out.tokens.push_back(symbols.Piece(id));
  out.seconds = SecondsSince(start);
  return out;
}

}  // namespace bert
