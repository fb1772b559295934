#include "datapipe/corpus_index.h"

#include <algorithm>
#include <limits>

#include "common/logging.h"

namespace bert {

Status CorpusIndex::Append(uint64_t doc_id, const Document& doc, bool keep_tokens) {
  if (doc_id != num_documents()) {
    return Status::Corruption("document " + std::to_string(doc_id) + " arrived out of order");
  }
  if (doc_id >= std::numeric_limits<uint32_t>::max()) {
    return Status::FailedPrecondition("corpus has 2^32 documents or more; the sample plan supports fewer");
  }
  uint32_t prev = 0;
  for (uint32_t end : doc.sentence_ends) {
    if (end <= prev || end > doc.token_ids.size()) {
      return Status::Corruption("document " + std::to_string(doc_id) + " has inconsistent sentence ends");
    }
    prev = end;
  }
  if (!doc.sentence_ends.empty() && doc.sentence_ends.back() != doc.token_ids.size()) {
    return Status::Corruption("document " + std::to_string(doc_id) + " has tokens after its last sentence");
  }
  if (doc.sentence_ends.empty()) all_nonempty_ = false;
  sentence_ends_.insert(sentence_ends_.end(), doc.sentence_ends.begin(), doc.sentence_ends.end());
  doc_first_sentence_.push_back(sentence_ends_.size());
  doc_first_token_.push_back(doc_first_token_.back() + doc.token_ids.size());
  if (keep_tokens) {
    for (int32_t id : doc.token_ids) {
      if (id < 0 || id >= vocab_size_) {
        return Status::Corruption("document " + std::to_string(doc_id) + " holds token id " + std::to_string(id) +
                                  " outside the vocabulary");
      }
    }
    if (vocab_size_ <= 65536) {
      tokens16_.insert(tokens16_.end(), doc.token_ids.begin(), doc.token_ids.end());
    } else {
      tokens32_.insert(tokens32_.end(), doc.token_ids.begin(), doc.token_ids.end());
    }
  }
  return Status::Ok();
}

void CorpusIndex::Finish() {
  if (all_nonempty_) return;
  for (uint64_t d = 0; d < num_documents(); ++d) {
    if (NumSentences(d) > 0) nonempty_.push_back(d);
  }
  nonempty_.shrink_to_fit();
}

Result<std::unique_ptr<CorpusIndex>> CorpusIndex::Load(const Corpus& corpus, const CorpusIndexOptions& options) {
  std::unique_ptr<CorpusIndex> index(new CorpusIndex());
  index->vocab_size_ = corpus.vocab_size();
  uint64_t tokens = 0, sentences = 0;
  for (const auto& part : corpus.parts()) {
    tokens += part->meta().num_tokens;
    sentences += part->meta().num_sentences;
  }
  const uint64_t id_bytes = index->vocab_size_ <= 65536 ? 2 : 4;
  index->resident_ = options.max_resident_bytes > 0 && tokens * id_bytes <= options.max_resident_bytes;
  index->sentence_ends_.reserve(sentences);
  index->doc_first_sentence_.reserve(corpus.num_documents() + 1);
  index->doc_first_token_.reserve(corpus.num_documents() + 1);
  if (index->resident_) (id_bytes == 2 ? index->tokens16_.reserve(tokens) : index->tokens32_.reserve(tokens));
  CorpusIndex* raw = index.get();
  BERT_RETURN_IF_ERROR(
      corpus.ForEach([raw](uint64_t id, const Document& doc) { return raw->Append(id, doc, raw->resident_); }));
  index->Finish();
  return index;
}

Result<std::unique_ptr<CorpusIndex>> CorpusIndex::FromDocuments(const std::vector<Document>& docs,
                                                                int32_t vocab_size) {
  if (vocab_size <= 0) return Status::InvalidArgument("vocab_size: must be positive");
  std::unique_ptr<CorpusIndex> index(new CorpusIndex());
  index->vocab_size_ = vocab_size;
  index->resident_ = true;
  for (uint64_t d = 0; d < docs.size(); ++d) BERT_RETURN_IF_ERROR(index->Append(d, docs[d], true));
  index->Finish();
  return index;
}

uint64_t CorpusIndex::DocumentOf(uint64_t token) const {
  DCHECK_LT(token, num_tokens());
  // The last document starting at or before `token`; empty documents that
  // start at the same offset come before it.
  return static_cast<uint64_t>(std::upper_bound(doc_first_token_.begin(), doc_first_token_.end(), token) -
                               doc_first_token_.begin()) - 1;
}

uint64_t CorpusIndex::memory_bytes() const {
  return doc_first_sentence_.capacity() * 8 + doc_first_token_.capacity() * 8 + sentence_ends_.capacity() * 4 +
         nonempty_.capacity() * 8 + tokens16_.capacity() * 2 + tokens32_.capacity() * 4;
}

}  // namespace bert
