// Corpus statistics (`bertctl corpus stats`): counts, length percentiles,
// [UNK] rate and a content digest that identifies the tokenized content.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "datapipe/corpus_store.h"

namespace bert {

struct LengthPercentiles {
  uint64_t p50 = 0, p90 = 0, p99 = 0, max = 0;
  double mean = 0;
};

struct CorpusStats {
  uint64_t databases = 0;
  uint64_t documents = 0;
  uint64_t sentences = 0;
  uint64_t tokens = 0;
  uint64_t unk_tokens = 0;
  uint64_t input_bytes = 0;
  LengthPercentiles document_tokens;  // tokens per document
  LengthPercentiles sentence_tokens;  // tokens per sentence
  std::string vocab_checksum;
  // xxh3-64 (hex) over every document in global id order, each as u32 LE:
  // sentence count, sentence lengths, token ids. Independent of how the
  // corpus is stored (id width, compression, sharding into databases).
  std::string content_digest;

  double unk_rate() const { return tokens == 0 ? 0 : static_cast<double>(unk_tokens) / tokens; }
  std::string ToJson() const;
  std::string ToText() const;
};

// Scans every document once. Fails on a corrupt or inconsistent database,
// naming it.
Result<CorpusStats> ComputeCorpusStats(const Corpus& corpus);

}  // namespace bert
