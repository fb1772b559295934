// CorpusIndex: the sentence structure of a whole corpus in memory, and,
// when they fit a memory budget, all its token ids ("resident" tokens).
//
// The sample plan (sample_plan.h) needs every sentence length to lay out an
// epoch: a random-next segment B is cut from a random document, so building
// one document's instances reads another's lengths. Loading is one pass of
// Corpus::ForEach.
//
// Memory: 16 bytes per document + 4 bytes per sentence, plus, when resident,
// 2 bytes per token (4 when the vocabulary exceeds 65536 ids). BERT's own
// corpus (Wikipedia + BooksCorpus, ~3.3G words, ~4G WordPieces, ~150M
// sentences) takes ~0.6 GB of sentence index and ~8 GB resident; the Linux
// kernel documentation (13M tokens, 358k sentences) takes 1.6 MB and 26 MB.
//
// Loading the kernel documentation (13M tokens) takes ~0.1 s. Resident tokens
// make a sample ~1 us of work at seq 128; without them the sample generator
// reads whole documents through Corpus::Get (LZ4 blocks, ~25 us for the
// long documents that most samples come from), which gives the same samples
// ~30x slower.
//
// Immutable after construction; safe to share between threads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "datapipe/corpus_store.h"

namespace bert {

struct CorpusIndexOptions {
  // Keep all token ids in memory when they take at most this many bytes;
  // 0 keeps none (documents are then read through Corpus::Get).
  uint64_t max_resident_bytes = uint64_t{8} << 30;
};

class CorpusIndex {
 public:
  // One pass over the corpus. Fails, naming the database, on a corrupt
  // corpus, or when it has 2^32 documents or more (the plan stores 32-bit
  // document ids).
  static Result<std::unique_ptr<CorpusIndex>> Load(const Corpus& corpus, const CorpusIndexOptions& options);
  // From documents in memory (tests, benchmarks); tokens are resident.
  static Result<std::unique_ptr<CorpusIndex>> FromDocuments(const std::vector<Document>& docs, int32_t vocab_size);

  uint64_t num_documents() const { return doc_first_sentence_.size() - 1; }
  uint64_t num_sentences() const { return sentence_ends_.size(); }
  uint64_t num_tokens() const { return doc_first_token_.back(); }
  int32_t vocab_size() const { return vocab_size_; }

  uint32_t NumSentences(uint64_t doc) const {
    return static_cast<uint32_t>(doc_first_sentence_[doc + 1] - doc_first_sentence_[doc]);
  }
  // Token offset of sentence s within document doc; s may equal
  // NumSentences(doc) (the document's length).
  uint32_t SentenceBegin(uint64_t doc, uint32_t s) const {
    return s == 0 ? 0 : sentence_ends_[doc_first_sentence_[doc] + s - 1];
  }
  uint32_t SentenceLength(uint64_t doc, uint32_t s) const {
    return SentenceBegin(doc, s + 1) - SentenceBegin(doc, s);
  }

  // Documents with at least one sentence: the reference script drops empty
  // documents before drawing random ones, and so does the plan.
  uint64_t num_nonempty_documents() const { return all_nonempty_ ? num_documents() : nonempty_.size(); }
  uint64_t NonemptyDocument(uint64_t k) const { return all_nonempty_ ? k : nonempty_[k]; }

  // Tokens are numbered globally: document doc holds tokens
  // [DocumentBegin(doc), DocumentBegin(doc + 1)).
  uint64_t DocumentBegin(uint64_t doc) const { return doc_first_token_[doc]; }
  // The document holding global token `token` (< num_tokens()).
  uint64_t DocumentOf(uint64_t token) const;

  bool resident() const { return resident_; }
  // Resident only: copies global tokens [begin, begin + count) to out.
  void CopyTokens(uint64_t begin, uint32_t count, int32_t* out) const {
    if (!tokens16_.empty()) {
      std::copy(tokens16_.data() + begin, tokens16_.data() + begin + count, out);
    } else {
      std::copy(tokens32_.data() + begin, tokens32_.data() + begin + count, out);
    }
  }
  // Resident only: hints that tokens from `begin` on are needed soon.
  void PrefetchTokens(uint64_t begin) const {
    if (!tokens16_.empty()) {
      __builtin_prefetch(tokens16_.data() + begin);
    } else if (!tokens32_.empty()) {
      __builtin_prefetch(tokens32_.data() + begin);
    }
  }

  uint64_t memory_bytes() const;

 private:
  CorpusIndex() = default;
  Status Append(uint64_t doc_id, const Document& doc, bool keep_tokens);
  void Finish();

  int32_t vocab_size_ = 0;
  std::vector<uint64_t> doc_first_sentence_{0};  // num_documents + 1 entries
  std::vector<uint64_t> doc_first_token_{0};     // num_documents + 1 entries
  std::vector<uint32_t> sentence_ends_;          // end of each sentence, relative to its document
  bool all_nonempty_ = true;                     // every document has a sentence
  std::vector<uint64_t> nonempty_;               // ids of non-empty documents, unless all_nonempty_
  bool resident_ = false;
  std::vector<uint16_t> tokens16_;               // resident ids when vocab_size <= 65536
  std::vector<int32_t> tokens32_;                // resident ids otherwise
};

}  // namespace bert
