#include "datapipe/corpus_store.h"

#include <rocksdb/db.h>

#include "datapipe/rocksdb_util.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

namespace bert {

std::string CorpusMeta::ToJson() const {
  nlohmann::json j = {
      {"format_version", format_version}, {"complete", complete},
      {"vocab_checksum", vocab_checksum}, {"vocab_size", vocab_size},
      {"unk_id", unk_id},                 {"id_width", id_width},
      {"lower_case", lower_case},         {"max_chars_per_word", max_chars_per_word},
      {"input_format", input_format},     {"shard_index", shard_index},
      {"num_shards", num_shards},         {"shard_set_id", shard_set_id},
      {"ingest_fingerprint", ingest_fingerprint},
      {"num_documents", num_documents},   {"num_sentences", num_sentences},
      {"num_tokens", num_tokens},         {"num_unk", num_unk},
      {"input_bytes", input_bytes},
  };
  return j.dump();
}

Result<CorpusMeta> CorpusMeta::FromJson(std::string_view json, const std::string& where) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Status::Corruption(where + ": meta record is not valid JSON");
  CorpusMeta m;
  try {
    m.format_version = j.at("format_version").get<int>();
    if (m.format_version != kCorpusFormatVersion) {
      return Status::FailedPrecondition(where + ": corpus format version " + std::to_string(m.format_version) +
                                        " is not supported (this build reads version " +
                                        std::to_string(kCorpusFormatVersion) + "); re-run bertctl prepare");
    }
    m.complete = j.at("complete").get<bool>();
    m.vocab_checksum = j.at("vocab_checksum").get<std::string>();
    m.vocab_size = j.at("vocab_size").get<int32_t>();
    m.unk_id = j.at("unk_id").get<int32_t>();
    m.id_width = j.at("id_width").get<int32_t>();
    m.lower_case = j.at("lower_case").get<bool>();
    m.max_chars_per_word = j.at("max_chars_per_word").get<int32_t>();
    m.input_format = j.at("input_format").get<std::string>();
    m.shard_index = j.at("shard_index").get<uint32_t>();
    m.num_shards = j.at("num_shards").get<uint32_t>();
    m.shard_set_id = j.at("shard_set_id").get<std::string>();
    m.ingest_fingerprint = j.at("ingest_fingerprint").get<std::string>();
    m.num_documents = j.at("num_documents").get<uint64_t>();
    m.num_sentences = j.at("num_sentences").get<uint64_t>();
    m.num_tokens = j.at("num_tokens").get<uint64_t>();
    m.num_unk = j.at("num_unk").get<uint64_t>();
    m.input_bytes = j.at("input_bytes").get<uint64_t>();
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(where + ": meta record: " + e.what());
  }
  if ((m.id_width != 2 && m.id_width != 4) || m.vocab_size <= 0 || m.num_shards == 0 ||
      m.shard_index >= m.num_shards) {
    return Status::Corruption(where + ": meta record has inconsistent values");
  }
  return m;
}

namespace {

void PutVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

bool GetVarint(std::string_view* in, uint64_t* value) {
  uint64_t result = 0;
  for (int shift = 0; shift <= 63 && !in->empty(); shift += 7) {
    uint64_t byte = static_cast<unsigned char>(in->front());
    in->remove_prefix(1);
    result |= (byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) {
      *value = result;
      return true;
    }
  }
  return false;
}

}  // namespace

std::string DocumentKey(uint64_t doc_id) {
  std::string key(9, '\0');
  key[0] = 'd';
  for (int i = 0; i < 8; ++i) key[1 + i] = static_cast<char>((doc_id >> (56 - 8 * i)) & 0xFF);
  return key;
}

void EncodeDocument(const Document& doc, int32_t id_width, std::string* out) {
  out->clear();
  PutVarint(doc.sentence_ends.size(), out);
  uint32_t prev = 0;
  for (uint32_t end : doc.sentence_ends) {
    PutVarint(end - prev, out);
    prev = end;
  }
  size_t header = out->size();
  out->resize(header + doc.token_ids.size() * static_cast<size_t>(id_width));
  char* p = &(*out)[header];
  for (int32_t id : doc.token_ids) {
    uint32_t v = static_cast<uint32_t>(id);
    for (int b = 0; b < id_width; ++b) *p++ = static_cast<char>((v >> (8 * b)) & 0xFF);
  }
}

Status DecodeDocument(std::string_view value, int32_t id_width, int32_t vocab_size, Document* doc) {
  uint64_t num_sentences = 0;
  if (!GetVarint(&value, &num_sentences) || num_sentences > value.size()) {
    return Status::Corruption("document header is truncated");
  }
  doc->sentence_ends.clear();
  doc->sentence_ends.reserve(num_sentences);
  uint64_t total = 0;
  for (uint64_t i = 0; i < num_sentences; ++i) {
    uint64_t len = 0;
    if (!GetVarint(&value, &len) || len == 0 || len > value.size()) {
      return Status::Corruption("sentence length " + std::to_string(i) + " is truncated or invalid");
    }
    total += len;
    doc->sentence_ends.push_back(static_cast<uint32_t>(total));
  }
  if (value.size() != total * static_cast<uint64_t>(id_width)) {
    return Status::Corruption("document holds " + std::to_string(value.size()) + " id bytes, expected " +
                              std::to_string(total * id_width));
  }
  doc->token_ids.resize(total);
  const auto* p = reinterpret_cast<const unsigned char*>(value.data());
  for (uint64_t i = 0; i < total; ++i) {
    uint32_t v = 0;
    for (int b = 0; b < id_width; ++b) v |= static_cast<uint32_t>(*p++) << (8 * b);
    if (v >= static_cast<uint32_t>(vocab_size)) {
      return Status::Corruption("token id " + std::to_string(v) + " is outside the vocabulary");
    }
    doc->token_ids[i] = static_cast<int32_t>(v);
  }
  return Status::Ok();
}

Result<std::unique_ptr<CorpusDb>> CorpusDb::OpenReadOnly(const std::string& dir) {
  if (!std::filesystem::exists(std::filesystem::path(dir) / "CURRENT")) {
    return Status::NotFound(dir + ": not a corpus database (run bertctl prepare --db " + dir + ")");
  }
  rocksdb::Options options = CorpusDbOptions();
  options.create_if_missing = false;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::OpenForReadOnly(options, dir, &raw);
  if (!s.ok()) return Status::IoError(dir + ": cannot open corpus database: " + s.ToString());
  std::unique_ptr<CorpusDb> corpus(new CorpusDb());
  corpus->db_.reset(raw);
  corpus->dir_ = dir;
  std::string meta_json;
  s = raw->Get(rocksdb::ReadOptions(), "meta", &meta_json);
  if (s.IsNotFound()) {
    return Status::FailedPrecondition(dir + ": corpus is incomplete: it has no meta record yet (prepare was "
                                      "interrupted at its start); re-run bertctl prepare");
  }
  if (!s.ok()) return Status::IoError(dir + ": cannot read the meta record: " + s.ToString());
  Result<CorpusMeta> meta = CorpusMeta::FromJson(meta_json, dir);
  if (!meta.ok()) return meta.status();
  if (!meta->complete) {
    return Status::FailedPrecondition(dir + ": corpus is incomplete (prepare was interrupted); re-run the same "
                                      "bertctl prepare command to finish it");
  }
  corpus->meta_ = std::move(meta).value();
  return corpus;
}

CorpusDb::~CorpusDb() = default;

std::string VocabRecord(const Vocab& vocab) {
  std::string record;
  for (const std::string& token : vocab.tokens()) record += token + "\n";
  return record;
}

Result<std::shared_ptr<const Vocab>> CorpusDb::LoadVocab() const {
  std::string record;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), "vocab", &record);
  if (!s.ok()) {
    return Status::NotFound(dir_ + ": corpus holds no vocabulary record (prepared by an older bertctl?); pass "
                                   "--vocab, or re-run bertctl prepare");
  }
  std::vector<std::string> tokens;
  size_t begin = 0;
  for (size_t end; (end = record.find('\n', begin)) != std::string::npos; begin = end + 1) {
    tokens.push_back(record.substr(begin, end - begin));
  }
  Result<std::shared_ptr<const Vocab>> vocab = Vocab::FromTokens(std::move(tokens));
  if (!vocab.ok()) return Status::Corruption(dir_ + ": vocabulary record: " + vocab.status().message());
  if ((*vocab)->checksum() != meta_.vocab_checksum) {
    return Status::Corruption(dir_ + ": vocabulary record does not match the meta record's checksum");
  }
  return vocab;
}

Status CorpusDb::Get(uint64_t local_id, Document* doc) const {
  if (local_id >= meta_.num_documents) {
    return Status::InvalidArgument(dir_ + ": document " + std::to_string(local_id) + " out of range");
  }
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), DocumentKey(local_id), &value);
  if (!s.ok()) return Status::Corruption(dir_ + ": document " + std::to_string(local_id) + ": " + s.ToString());
  Status st = DecodeDocument(value, meta_.id_width, meta_.vocab_size, doc);
  if (!st.ok()) return Status::Corruption(dir_ + ": document " + std::to_string(local_id) + ": " + st.message());
  return Status::Ok();
}

Status CorpusDb::ForEach(const std::function<Status(uint64_t, const Document&)>& fn) const {
  rocksdb::ReadOptions read_options;
  read_options.readahead_size = 4 << 20;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options));
  Document doc;
  uint64_t expected = 0;
  for (it->Seek(DocumentKey(0)); it->Valid() && it->key().starts_with("d"); it->Next()) {
    if (it->key() != DocumentKey(expected)) {
      return Status::Corruption(dir_ + ": document " + std::to_string(expected) + " is missing");
    }
    std::string_view value(it->value().data(), it->value().size());
    Status st = DecodeDocument(value, meta_.id_width, meta_.vocab_size, &doc);
    if (!st.ok()) return Status::Corruption(dir_ + ": document " + std::to_string(expected) + ": " + st.message());
    BERT_RETURN_IF_ERROR(fn(expected, doc));
    ++expected;
  }
  if (!it->status().ok()) return Status::IoError(dir_ + ": " + it->status().ToString());
  if (expected != meta_.num_documents) {
    return Status::Corruption(dir_ + ": holds " + std::to_string(expected) + " documents, meta says " +
                              std::to_string(meta_.num_documents));
  }
  return Status::Ok();
}

Result<std::unique_ptr<Corpus>> Corpus::Open(const std::vector<std::string>& dirs) {
  if (dirs.empty()) return Status::InvalidArgument("--db: no corpus database given");
  std::unique_ptr<Corpus> corpus(new Corpus());
  for (const std::string& dir : dirs) {
    Result<std::unique_ptr<CorpusDb>> db = CorpusDb::OpenReadOnly(dir);
    if (!db.ok()) return db.status();
    corpus->parts_.push_back(std::move(db).value());
  }
  auto& parts = corpus->parts_;
  const CorpusMeta& first = parts.front()->meta();
  for (const auto& part : parts) {
    if (part->meta().vocab_checksum != first.vocab_checksum || part->meta().lower_case != first.lower_case) {
      return Status::FailedPrecondition(part->dir() + ": prepared with a different vocabulary or casing than " +
                                        parts.front()->dir());
    }
  }
  bool sharded = parts.size() > 1 && first.num_shards > 1;
  if (sharded) {
    std::stable_sort(parts.begin(), parts.end(),
                     [](const auto& a, const auto& b) { return a->meta().shard_index < b->meta().shard_index; });
    for (uint32_t i = 0; i < parts.size(); ++i) {
      const CorpusMeta& m = parts[i]->meta();
      if (m.num_shards != parts.size() || m.shard_set_id != first.shard_set_id || m.shard_index != i) {
        return Status::FailedPrecondition(
            parts[i]->dir() + ": shards must be the complete set of one prepare job: expected shard " +
            std::to_string(i) + "/" + std::to_string(first.num_shards) + " of set " + first.shard_set_id +
            ", found " + std::to_string(m.shard_index) + "/" + std::to_string(m.num_shards) + " of set " +
            m.shard_set_id);
      }
    }
  }
  for (const auto& part : parts) {
    corpus->first_id_.push_back(corpus->total_documents_);
    corpus->total_documents_ += part->meta().num_documents;
  }
  return corpus;
}

Status Corpus::Get(uint64_t global_id, Document* doc) const {
  if (global_id >= total_documents_) {
    return Status::InvalidArgument("document " + std::to_string(global_id) + " out of range (corpus has " +
                                   std::to_string(total_documents_) + ")");
  }
  size_t part = static_cast<size_t>(std::upper_bound(first_id_.begin(), first_id_.end(), global_id) -
                                    first_id_.begin()) - 1;
  return parts_[part]->Get(global_id - first_id_[part], doc);
}

Status Corpus::ForEach(const std::function<Status(uint64_t, const Document&)>& fn) const {
  for (size_t p = 0; p < parts_.size(); ++p) {
    uint64_t base = first_id_[p];
    BERT_RETURN_IF_ERROR(parts_[p]->ForEach([&](uint64_t id, const Document& doc) { return fn(base + id, doc); }));
  }
  return Status::Ok();
}

Status Corpus::CheckVocabulary(const std::string& vocab_checksum, int32_t vocab_size, bool lower_case) const {
  const CorpusDb& db = *parts_.front();
  if (db.meta().vocab_checksum != vocab_checksum || db.meta().vocab_size != vocab_size) {
    return Status::FailedPrecondition(db.dir() + ": corpus was prepared with another vocabulary (checksum " +
                                      db.meta().vocab_checksum + ", " + std::to_string(db.meta().vocab_size) +
                                      " tokens) than the one given (checksum " + vocab_checksum + ", " +
                                      std::to_string(vocab_size) + " tokens); re-run bertctl prepare with it");
  }
  if (db.meta().lower_case != lower_case) {
    return Status::FailedPrecondition(db.dir() + ": corpus was prepared " +
                                      (db.meta().lower_case ? "uncased" : "cased") + " but the run is " +
                                      (lower_case ? "uncased" : "cased") + "; match --cased");
  }
  return Status::Ok();
}

}  // namespace bert
