// Synthetic corpora and vocabularies for the sample plan, masking and codec
// tests: BERT's special-token ids, "##" pieces, and documents whose sentence
// lengths span the cases that matter (one-token sentences, sentences longer
// than a whole sample, single-sentence documents).
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "datapipe/corpus_store.h"
#include "datapipe/masking.h"

namespace bert::testing {

// bert-base-uncased's layout: [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102,
// [MASK] 103; here ids >= 20000 are "##" pieces.
constexpr int32_t kVocabSize = 30522;
constexpr int32_t kFirstContinuation = 20000;

inline MaskingVocab SyntheticVocab() {
  MaskingVocab vocab;
  vocab.vocab_size = kVocabSize;
  vocab.pad_id = 0;
  vocab.cls_id = 101;
  vocab.sep_id = 102;
  vocab.mask_id = 103;
  vocab.is_continuation.assign(kVocabSize, 0);
  for (int32_t id = kFirstContinuation; id < kVocabSize; ++id) vocab.is_continuation[id] = 1;
  return vocab;
}

// A word: one id below kFirstContinuation, then 0-2 "##" pieces.
inline void AppendWord(std::mt19937_64* rng, std::vector<int32_t>* ids) {
  ids->push_back(1000 + static_cast<int32_t>((*rng)() % (kFirstContinuation - 1000)));
  for (int pieces = static_cast<int>((*rng)() % 4) - 1; pieces > 0; --pieces) {
    ids->push_back(kFirstContinuation + static_cast<int32_t>((*rng)() % (kVocabSize - kFirstContinuation)));
  }
}

// Documents with 1..max_sentences sentences of 5-40 tokens, except that
// odd_percent % are a single token and odd_percent % are 100..100+max_long.
inline std::vector<Document> SyntheticDocuments(uint64_t seed, size_t num_docs, int max_sentences = 60,
                                                int max_long = 300, int odd_percent = 3) {
  std::mt19937_64 rng(seed);
  std::vector<Document> docs(num_docs);
  for (Document& doc : docs) {
    int sentences = 1 + static_cast<int>(rng() % max_sentences);
    for (int s = 0; s < sentences; ++s) {
      uint64_t kind = rng() % 100;
      size_t length = kind < uint64_t(odd_percent)       ? 1
                      : kind < uint64_t(2 * odd_percent) ? 100 + rng() % max_long
                                                         : 5 + rng() % 36;
      size_t end = doc.token_ids.size() + length;
      while (doc.token_ids.size() < end) AppendWord(&rng, &doc.token_ids);
      doc.token_ids.resize(end);  // a sentence may end inside a word
      doc.sentence_ends.push_back(static_cast<uint32_t>(end));
    }
  }
  return docs;
}

// The token ids of sentences [first, first + count) of a document.
inline std::vector<int32_t> SentenceTokens(const Document& doc, size_t first, size_t count) {
  uint32_t begin = first == 0 ? 0 : doc.sentence_ends[first - 1];
  uint32_t end = count == 0 ? begin : doc.sentence_ends[first + count - 1];
  return std::vector<int32_t>(doc.token_ids.begin() + begin, doc.token_ids.begin() + end);
}

}  // namespace bert::testing
