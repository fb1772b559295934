// FullTokenizer: BERT's BasicTokenizer + WordPiece, with the exact behaviour
// of Google BERT's reference tokenization.py (FullTokenizer):
//
//   1. UTF-8 decode; invalid bytes are dropped (Python's "ignore" handler).
//   2. Clean: drop U+0000, U+FFFD and control characters (Cc/Cf except
//      \t \n \r); whitespace (space, \t, \n, \r, Zs) becomes a space.
//   3. Put spaces around CJK ideographs (the reference's _is_chinese_char ranges).
//   4. Split on whitespace (Python's str.split(): U+2028/U+2029 count too).
//   5. Uncased mode: lower-case each word (Python str.lower(), full mapping
//      incl. final sigma), NFD, drop Mn (accent stripping).
//   6. Split punctuation (ASCII symbol ranges 33-47, 58-64, 91-96, 123-126,
//      and every Unicode P* category) into single-character words.
//   7. WordPiece: greedy longest-match-first with "##" continuations; a word
//      longer than max_input_chars_per_word code points, or one that cannot
//      be covered, becomes [UNK].
//
// Unicode data comes from utf8proc. Immutable after construction; every
// method is const and safe to call from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "datapipe/vocab.h"

namespace bert {

struct TokenizerOptions {
  bool lower_case = true;                  // uncased model: lower-case + strip accents
  int32_t max_input_chars_per_word = 100;  // longer words -> [UNK]
};

// Counters a caller may accumulate across calls (not thread-shared).
struct TokenizeStats {
  uint64_t invalid_utf8_bytes = 0;  // bytes dropped by UTF-8 decoding
  uint64_t num_words = 0;           // words after basic tokenization
  uint64_t num_unk = 0;             // [UNK] ids emitted
};

class FullTokenizer {
 public:
  FullTokenizer(std::shared_ptr<const Vocab> vocab, TokenizerOptions options);
  ~FullTokenizer();
  FullTokenizer(const FullTokenizer&) = delete;
  FullTokenizer& operator=(const FullTokenizer&) = delete;

  // Appends the ids of `text` to `ids` (no [CLS]/[SEP]).
  void Encode(std::string_view text, std::vector<int32_t>* ids, TokenizeStats* stats = nullptr) const;
  std::vector<int32_t> Encode(std::string_view text) const;

  // WordPiece token strings ("un", "##aff", "##able") of `text`.
  std::vector<std::string> Tokenize(std::string_view text) const;

  // Steps 1-6 only: the words BasicTokenizer would produce (UTF-8). The
  // vocabulary trainer counts these.
  void BasicTokenize(std::string_view text, std::vector<std::string>* words,
                     TokenizeStats* stats = nullptr) const;

  const Vocab& vocab() const { return *vocab_; }
  const TokenizerOptions& options() const { return options_; }

 private:
  struct Impl;
  std::shared_ptr<const Vocab> vocab_;
  TokenizerOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bert
