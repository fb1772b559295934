// VocabTrainer: learns a BERT WordPiece vocabulary (vocab.txt) from raw text.
//
// Two steps, usable separately:
//
//   1. CountWords* (word_counter.h): BasicTokenizer words counted in parallel.
//   2. LearnWordPiece: subword learning over those counts. Like HuggingFace
//      tokenizers' WordPieceTrainer, it runs BPE (Sennrich et al. 2016,
//      "Neural Machine Translation of Rare Words with Subword Units") over
//      words split into characters, where every non-initial symbol carries
//      the "##" prefix, so the result suits BERT's greedy longest-match-first
//      WordPiece encoding. MergeScore::kLikelihood instead picks the pair that
//      most raises the corpus likelihood of a unigram model,
//      count(ab) / (count(a) * count(b)) (Schuster & Nakajima 2012, "Japanese
//      and Korean Voice Search"). kFrequency is the default because it gives
//      far fewer tokens per word under greedy longest-match encoding: on
//      held-out Linux kernel documentation 2.35 against 6.18 (bert-base-
//      uncased: 2.76); the likelihood score spends the budget on rare pieces
//      first (tests/integration/vocab_quality_test.cc measures both).
//
// Output layout (TrainedVocab::tokens, one line each in vocab.txt):
//   [PAD] [UNK] [CLS] [SEP] [MASK]      special tokens, ids 0-4
//   alphabet characters                 by code point
//   "##" alphabet characters            by code point; only characters seen
//                                       inside a word (never for punctuation,
//                                       which BasicTokenizer always splits off)
//   learned pieces                      in merge order, words and ## pieces
// The vocabulary has exactly vocab_size entries unless the corpus runs out
// of pairs seen at least min_frequency times (TrainedVocab::ran_out_of_merges).
//
// The alphabet is bounded: characters seen at least min_frequency times, most
// frequent first, until they cover alphabet_coverage of all character
// occurrences or reach max_alphabet_chars. Rarer characters spend no budget;
// a word containing one becomes [UNK] when tokenized (as in BERT), so such
// words are left out of the merge statistics.
//
// All functions are thread-compatible and deterministic: the same counts and
// options give a byte-identical vocabulary.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "datapipe/word_counter.h"

namespace bert {

enum class MergeScore {
  kFrequency,   // BPE: the most frequent adjacent pair
  kLikelihood,  // WordPiece: count(ab) / (count(a) * count(b))
};
Result<MergeScore> ParseMergeScore(const std::string& name);
const char* MergeScoreName(MergeScore score);

struct VocabTrainerOptions {
  int32_t vocab_size = 30522;          // entries wanted, specials included
  uint64_t min_frequency = 2;          // least count for an alphabet character and for a merged pair
  double alphabet_coverage = 0.9999;   // fraction of character occurrences the alphabet must cover
  int32_t max_alphabet_chars = 1000;   // at most this many characters (each may add a ## form)
  int32_t max_input_chars_per_word = 100;  // as TokenizerOptions: longer words become [UNK]
  MergeScore score = MergeScore::kFrequency;
  std::vector<std::string> special_tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  bool log_progress = false;           // "[vocab]" progress lines (merges/s, ETA)
};

struct TrainedVocab {
  std::vector<std::string> tokens;  // the vocabulary in id order (layout above)
  int32_t num_special = 0;          // special tokens at the front
  int32_t num_alphabet = 0;         // alphabet symbols (characters and ## characters)
  int32_t num_alphabet_chars = 0;   // distinct characters in the alphabet
  int32_t num_learned = 0;          // learned pieces at the end
  uint64_t num_merges = 0;          // merges done (a merge may re-create a known piece)
  bool ran_out_of_merges = false;   // true when no pair reached min_frequency before vocab_size
  uint64_t words_used = 0;          // unique words the merges learned from
  uint64_t words_skipped = 0;       // unique words left out: rare characters or too long
  double seconds = 0;               // wall time of the learning
  // vocab.txt contents: one token per line, each ending in '\n'.
  std::string ToFileContents() const;
};

// Learns a vocabulary from word counts (any order; duplicates are summed).
// Fails with InvalidArgument when vocab_size cannot hold the special tokens
// and the alphabet (the message gives the least size that would), or when an
// option is out of range.
Result<TrainedVocab> LearnWordPiece(const std::vector<WordCount>& words, const VocabTrainerOptions& options);

}  // namespace bert
