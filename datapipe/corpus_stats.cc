#include "datapipe/corpus_stats.h"

#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "common/file_util.h"

namespace bert {
namespace {

// Exact percentiles from a histogram of lengths.
LengthPercentiles FromHistogram(const std::map<uint64_t, uint64_t>& counts) {
  LengthPercentiles p;
  uint64_t total = 0;
  double sum = 0;
  for (const auto& [length, n] : counts) {
    total += n;
    sum += static_cast<double>(length) * n;
  }
  if (total == 0) return p;
  p.mean = sum / total;
  p.max = counts.rbegin()->first;
  auto rank = [&](double q) {
    uint64_t target = static_cast<uint64_t>(q * (total - 1));  // nearest-rank on 0-based order
    uint64_t seen = 0;
    for (const auto& [length, n] : counts) {
      seen += n;
      if (seen > target) return length;
    }
    return p.max;
  };
  p.p50 = rank(0.50);
  p.p90 = rank(0.90);
  p.p99 = rank(0.99);
  return p;
}

nlohmann::json PercentilesJson(const LengthPercentiles& p) {
  return {{"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}, {"max", p.max}, {"mean", p.mean}};
}

void HashU32(XXH3_state_t* state, uint32_t v) {
  unsigned char bytes[4] = {static_cast<unsigned char>(v), static_cast<unsigned char>(v >> 8),
                            static_cast<unsigned char>(v >> 16), static_cast<unsigned char>(v >> 24)};
  XXH3_64bits_update(state, bytes, 4);
}

}  // namespace

Result<CorpusStats> ComputeCorpusStats(const Corpus& corpus) {
  CorpusStats stats;
  stats.databases = corpus.parts().size();
  stats.vocab_checksum = corpus.vocab_checksum();
  std::map<uint64_t, uint64_t> doc_lengths, sentence_lengths;
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  std::vector<uint32_t> scratch;
  for (const auto& part : corpus.parts()) {
    const int32_t unk_id = part->meta().unk_id;
    stats.input_bytes += part->meta().input_bytes;
    Status st = part->ForEach([&](uint64_t, const Document& doc) {
      stats.documents += 1;
      stats.sentences += doc.num_sentences();
      stats.tokens += doc.token_ids.size();
      ++doc_lengths[doc.token_ids.size()];
      HashU32(state, static_cast<uint32_t>(doc.num_sentences()));
      uint32_t prev = 0;
      for (uint32_t end : doc.sentence_ends) {
        ++sentence_lengths[end - prev];
        HashU32(state, end - prev);
        prev = end;
      }
      scratch.resize(doc.token_ids.size());
      for (size_t i = 0; i < doc.token_ids.size(); ++i) {
        stats.unk_tokens += (doc.token_ids[i] == unk_id);
        uint32_t v = static_cast<uint32_t>(doc.token_ids[i]);
        // Little-endian on every platform this builds on; spelled out for clarity.
        scratch[i] = v;
      }
      XXH3_64bits_update(state, scratch.data(), scratch.size() * sizeof(uint32_t));
      return Status::Ok();
    });
    if (!st.ok()) {
      XXH3_freeState(state);
      return st;
    }
  }
  stats.content_digest = Hex64(XXH3_64bits_digest(state));
  XXH3_freeState(state);
  stats.document_tokens = FromHistogram(doc_lengths);
  stats.sentence_tokens = FromHistogram(sentence_lengths);
  return stats;
}

std::string CorpusStats::ToJson() const {
  nlohmann::json j = {{"databases", databases},
                      {"documents", documents},
                      {"sentences", sentences},
                      {"tokens", tokens},
                      {"unk_tokens", unk_tokens},
                      {"unk_rate", unk_rate()},
                      {"input_bytes", input_bytes},
                      {"document_tokens", PercentilesJson(document_tokens)},
                      {"sentence_tokens", PercentilesJson(sentence_tokens)},
                      {"vocab_checksum", vocab_checksum},
                      {"content_digest", content_digest}};
  return j.dump(2);
}

std::string CorpusStats::ToText() const {
  char buf[1024];
  std::snprintf(buf, sizeof(buf),
                "databases        %llu\n"
                "documents        %llu\n"
                "sentences        %llu\n"
                "tokens           %llu\n"
                "input            %.1f MB\n"
                "tokens/document  p50 %llu  p90 %llu  p99 %llu  max %llu  mean %.1f\n"
                "tokens/sentence  p50 %llu  p90 %llu  p99 %llu  max %llu  mean %.1f\n"
                "[UNK] rate       %.4f%% (%llu tokens)\n"
                "vocab checksum   %s\n"
                "content digest   %s\n",
                (unsigned long long)databases, (unsigned long long)documents, (unsigned long long)sentences,
                (unsigned long long)tokens, input_bytes / 1e6, (unsigned long long)document_tokens.p50,
                (unsigned long long)document_tokens.p90, (unsigned long long)document_tokens.p99,
                (unsigned long long)document_tokens.max, document_tokens.mean,
                (unsigned long long)sentence_tokens.p50, (unsigned long long)sentence_tokens.p90,
                (unsigned long long)sentence_tokens.p99, (unsigned long long)sentence_tokens.max,
                sentence_tokens.mean, 100.0 * unk_rate(), (unsigned long long)unk_tokens, vocab_checksum.c_str(),
                content_digest.c_str());
  return buf;
}

}  // namespace bert
