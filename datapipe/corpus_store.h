// Corpus store: tokenized documents in RocksDB.
//
// Layout of one database:
//   "meta"              JSON CorpusMeta (format version, vocabulary checksum,
//                       tokenizer settings, counts, completeness, shard)
//   "progress"          JSON ingest progress; present only while incomplete
//   "vocab"             the vocabulary's tokens, one per line (so later stages
//                       need no separate vocab.txt; checked against meta)
//   "d" + big-endian u64 document id -> EncodeDocument()
//
// Document ids are dense, start at 0 and follow input order. A corpus may be
// several databases (shards from `prepare --shard I/N`, or separately prepared
// corpora); Corpus presents them as one, with global ids in shard order.
// A database whose meta is not marked complete is refused by every reader.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "datapipe/vocab.h"

namespace rocksdb {
class DB;
}

namespace bert {

constexpr int kCorpusFormatVersion = 1;

struct CorpusMeta {
  int format_version = kCorpusFormatVersion;
  bool complete = false;          // set only after the last document is durable
  std::string vocab_checksum;     // Vocab::checksum() of the vocabulary used
  int32_t vocab_size = 0;
  int32_t unk_id = -1;
  int32_t id_width = 4;           // bytes per stored id: 2 when the vocabulary fits
  bool lower_case = true;         // tokenizer settings
  int32_t max_chars_per_word = 100;
  std::string input_format;       // auto|jsonl|lines|text
  uint32_t shard_index = 0;       // this database's slice of the input list
  uint32_t num_shards = 1;
  std::string shard_set_id;       // same for all shards of one prepare job
  std::string ingest_fingerprint; // input files (paths, sizes, mtimes) and settings
  uint64_t num_documents = 0;
  uint64_t num_sentences = 0;
  uint64_t num_tokens = 0;
  uint64_t num_unk = 0;
  uint64_t input_bytes = 0;       // bytes read from the input files (decompressed)

  std::string ToJson() const;
  static Result<CorpusMeta> FromJson(std::string_view json, const std::string& where);
};

// A tokenized document: all token ids, and where each sentence ends.
struct Document {
  std::vector<int32_t> token_ids;
  std::vector<uint32_t> sentence_ends;  // exclusive end offset into token_ids, one per sentence

  size_t num_sentences() const { return sentence_ends.size(); }
  // Token ids of sentence i.
  std::pair<const int32_t*, const int32_t*> Sentence(size_t i) const {
    uint32_t begin = i == 0 ? 0 : sentence_ends[i - 1];
    return {token_ids.data() + begin, token_ids.data() + sentence_ends[i]};
  }
};

// varint sentence count, varint sentence lengths, then ids (id_width bytes, LE).
void EncodeDocument(const Document& doc, int32_t id_width, std::string* out);
// Rejects truncated or inconsistent values and ids >= vocab_size.
Status DecodeDocument(std::string_view value, int32_t id_width, int32_t vocab_size, Document* doc);

std::string DocumentKey(uint64_t doc_id);
// The "vocab" record's value: tokens joined by '\n'.
std::string VocabRecord(const Vocab& vocab);

// One RocksDB corpus database opened read-only.
class CorpusDb {
 public:
  // Fails when the directory is not a corpus, its format version is unknown,
  // or it is incomplete (an interrupted prepare), naming the directory.
  static Result<std::unique_ptr<CorpusDb>> OpenReadOnly(const std::string& dir);
  ~CorpusDb();

  const CorpusMeta& meta() const { return meta_; }
  const std::string& dir() const { return dir_; }
  // The vocabulary the corpus was prepared with. Fails, naming the database,
  // when the record is missing or does not match meta's checksum.
  Result<std::shared_ptr<const Vocab>> LoadVocab() const;
  Status Get(uint64_t local_id, Document* doc) const;
  // Calls fn(local_id, doc) for every document in id order; stops on a non-OK status.
  Status ForEach(const std::function<Status(uint64_t, const Document&)>& fn) const;

 private:
  CorpusDb() = default;
  std::string dir_;
  CorpusMeta meta_;
  std::unique_ptr<rocksdb::DB> db_;
};

// Several databases as one corpus with stable global document ids. Either all
// are single databases (concatenated in the order given) or they are the
// complete set of shards of one prepare job (ordered by shard index).
// All must share one vocabulary. Thread-safe for concurrent Get().
class Corpus {
 public:
  static Result<std::unique_ptr<Corpus>> Open(const std::vector<std::string>& dirs);

  uint64_t num_documents() const { return total_documents_; }
  const std::string& vocab_checksum() const { return parts_.front()->meta().vocab_checksum; }
  int32_t vocab_size() const { return parts_.front()->meta().vocab_size; }
  const std::vector<std::unique_ptr<CorpusDb>>& parts() const { return parts_; }
  // The vocabulary stored with the corpus (all parts share it).
  Result<std::shared_ptr<const Vocab>> LoadVocab() const { return parts_.front()->LoadVocab(); }

  Status Get(uint64_t global_id, Document* doc) const;
  Status ForEach(const std::function<Status(uint64_t, const Document&)>& fn) const;

  // Fails, naming the database and both checksums, when the corpus was not
  // prepared with this vocabulary (checksum, size) and casing.
  Status CheckVocabulary(const std::string& vocab_checksum, int32_t vocab_size, bool lower_case) const;

 private:
  std::vector<std::unique_ptr<CorpusDb>> parts_;
  std::vector<uint64_t> first_id_;  // global id of each part's document 0
  uint64_t total_documents_ = 0;
};

}  // namespace bert
