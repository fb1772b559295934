#include "datapipe/corpus_ingest.h"

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>
#include <xxhash.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <future>
#include <set>
#include <utility>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/logging.h"
#include "datapipe/corpus_store.h"
#include "datapipe/rocksdb_util.h"
#include "datapipe/sentence_splitter.h"

namespace bert {
namespace {

using Clock = std::chrono::steady_clock;

// Documents read from the input, cut at a batch boundary.
struct RawBatch {
  std::vector<SourceDocument> docs;
  ReaderPosition end_position;  // reader position after the batch
  ReaderStats reader_stats;     // reader counters at that position (since start or seek)
};

struct EncodedBatch {
  std::vector<std::string> values;  // EncodeDocument() of each non-empty document
  uint64_t sentences = 0, tokens = 0, unk_tokens = 0, invalid_utf8_bytes = 0, empty = 0;
  // Documents that lost invalid UTF-8 bytes: (origin "FILE:LINE", bytes),
  // the first of each file in this batch; named in the log.
  std::vector<std::pair<std::string, uint64_t>> invalid_utf8_at;
  ReaderPosition end_position;
  ReaderStats reader_stats;
};

constexpr size_t kInvalidUtf8FilesNamed = 20;  // files named in the log; the rest are counted

// The file of an origin "FILE:LINE".
std::string FileOf(const std::string& origin) { return origin.substr(0, origin.rfind(':')); }

// Running totals; persisted in the progress record so a resumed run adds to them.
struct Totals {
  uint64_t next_doc_id = 0, sentences = 0, tokens = 0, unk_tokens = 0, invalid_utf8_bytes = 0, empty = 0;
  ReaderStats reader;  // totals before the current reader's seek point
};

nlohmann::json ReaderStatsToJson(ReaderStats s) {
  nlohmann::json j = nlohmann::json::object();
  s.ForEachCounter([&](const char* name, uint64_t& value) { j[name] = value; });
  return j;
}

ReaderStats ReaderStatsFromJson(const nlohmann::json& j) {
  ReaderStats s;
  s.ForEachCounter([&](const char* name, uint64_t& value) { value = j.at(name).get<uint64_t>(); });
  return s;
}

ReaderStats AddStats(const ReaderStats& a, ReaderStats b) {
  ReaderStats sum = a;
  std::vector<uint64_t*> out;
  sum.ForEachCounter([&](const char*, uint64_t& value) { out.push_back(&value); });
  size_t i = 0;
  b.ForEachCounter([&](const char*, uint64_t& value) { *out[i++] += value; });
  return sum;
}

std::string ProgressJson(const std::string& fingerprint, const Totals& t, const ReaderPosition& position) {
  nlohmann::json j = {{"fingerprint", fingerprint},
                      {"file_index", position.file_index},
                      {"byte_offset", position.byte_offset},
                      {"line_number", position.line_number},
                      {"next_doc_id", t.next_doc_id},
                      {"sentences", t.sentences},
                      {"tokens", t.tokens},
                      {"unk_tokens", t.unk_tokens},
                      {"invalid_utf8_bytes", t.invalid_utf8_bytes},
                      {"empty", t.empty},
                      {"reader", ReaderStatsToJson(t.reader)}};
  return j.dump();
}

EncodedBatch EncodeBatch(const FullTokenizer& tokenizer, RawBatch batch, int32_t id_width) {
  EncodedBatch out;
  out.end_position = batch.end_position;
  out.reader_stats = batch.reader_stats;
  const int32_t unk_id = tokenizer.vocab().unk_id();
  TokenizeStats token_stats;
  Document doc;
  std::string value;
  auto add_sentence = [&](std::string_view sentence) {
    size_t before = doc.token_ids.size();
    tokenizer.Encode(sentence, &doc.token_ids, &token_stats);
    if (doc.token_ids.size() > before) doc.sentence_ends.push_back(static_cast<uint32_t>(doc.token_ids.size()));
  };
  for (const SourceDocument& source : batch.docs) {
    doc.token_ids.clear();
    doc.sentence_ends.clear();
    const uint64_t invalid_before = token_stats.invalid_utf8_bytes;
    if (source.presplit) {
      for (const std::string& line : source.lines) add_sentence(line);
    } else {
      for (std::string_view sentence : SplitSentences(source.text)) add_sentence(sentence);
    }
    if (token_stats.invalid_utf8_bytes > invalid_before &&
        (out.invalid_utf8_at.empty() || FileOf(out.invalid_utf8_at.back().first) != FileOf(source.origin))) {
      out.invalid_utf8_at.emplace_back(source.origin, token_stats.invalid_utf8_bytes - invalid_before);
    }
    if (doc.sentence_ends.empty()) {
      ++out.empty;
      continue;
    }
    out.sentences += doc.sentence_ends.size();
    out.tokens += doc.token_ids.size();
    for (int32_t id : doc.token_ids) out.unk_tokens += (id == unk_id);
    EncodeDocument(doc, id_width, &value);
    out.values.push_back(value);
  }
  out.invalid_utf8_bytes = token_stats.invalid_utf8_bytes;
  return out;
}

}  // namespace

std::vector<std::string> IngestReport::Summary() const {
  std::vector<std::string> lines = reader.Summary();
  if (invalid_utf8_bytes > 0) lines.push_back(std::to_string(invalid_utf8_bytes) + " invalid UTF-8 bytes were dropped");
  if (empty_after_tokenize > 0) {
    lines.push_back(std::to_string(empty_after_tokenize) + " documents had no tokens after cleaning and were skipped");
  }
  return lines;
}

std::vector<std::string> ShardSlice(const std::vector<std::string>& files, uint32_t index, uint32_t count) {
  size_t begin = files.size() * index / count, end = files.size() * (index + 1) / count;
  return std::vector<std::string>(files.begin() + begin, files.begin() + end);
}

std::string FingerprintFiles(const std::vector<std::string>& files) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  for (const std::string& path : files) {
    struct stat st;
    int64_t size = -1, mtime = -1;
    if (::stat(path.c_str(), &st) == 0) {
      size = st.st_size;
      mtime = st.st_mtime;
    }
    XXH3_64bits_update(state, path.data(), path.size() + 1);
    XXH3_64bits_update(state, &size, sizeof(size));
    XXH3_64bits_update(state, &mtime, sizeof(mtime));
  }
  std::string hex = Hex64(XXH3_64bits_digest(state));
  XXH3_freeState(state);
  return hex;
}

class Ingestor {
 public:
  Ingestor(std::string dir, const FullTokenizer& tokenizer, const IngestOptions& options)
      : dir_(std::move(dir)), tokenizer_(tokenizer), options_(options), reader_(options.files, options.reader) {}

  Result<IngestReport> Run() {
    start_ = Clock::now();
    fingerprint_ = Fingerprint();  // before the database exists, so an interrupted start leaves meta or nothing
    BERT_RETURN_IF_ERROR(OpenDb());
    BERT_RETURN_IF_ERROR(LoadOrInitState());
    if (already_complete_) return CompletedReport();
    BERT_RETURN_IF_ERROR(Pump());
    BERT_RETURN_IF_ERROR(Finish());
    return report_;
  }

 private:
  Status OpenDb() {
    if (options_.overwrite && std::filesystem::exists(dir_)) {
      rocksdb::Status s = rocksdb::DestroyDB(dir_, rocksdb::Options());
      if (!s.ok()) return FromRocks(s, dir_, "cannot delete the old database");
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) return Status::IoError(dir_ + ": cannot create directory: " + ec.message());
    rocksdb::DB* raw = nullptr;
    BERT_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(CorpusDbOptions(), dir_, &raw), dir_, "cannot open database"));
    db_.reset(raw);
    return Status::Ok();
  }

  std::string Fingerprint() const {
    const TokenizerOptions& t = tokenizer_.options();
    return FingerprintFiles(options_.files) + "/" + InputFormatName(options_.reader.format) + "/" +
           tokenizer_.vocab().checksum() + "/" + (t.lower_case ? "uncased" : "cased") + "/" +
           std::to_string(t.max_input_chars_per_word) + "/" + std::to_string(options_.shard_index) + "of" +
           std::to_string(options_.num_shards) + "/" + std::to_string(options_.reader.max_line_bytes);
  }

  Status LoadOrInitState() {
    std::string meta_json, progress_json;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), "meta", &meta_json);
    if (s.ok()) {
      Result<CorpusMeta> meta = CorpusMeta::FromJson(meta_json, dir_);
      if (!meta.ok()) return meta.status();
      if (meta->complete && meta->ingest_fingerprint == fingerprint_) {
        already_complete_ = true;  // the same command ran to the end before: nothing to do
        meta_ = std::move(meta).value();
        return Status::Ok();
      }
      if (meta->complete) {
        return Status::FailedPrecondition(dir_ + ": already holds a complete corpus made from other input or "
                                          "settings; pass --overwrite to rebuild it");
      }
      if (meta->ingest_fingerprint != fingerprint_) return UnfinishedOtherIngest();
    } else if (!s.IsNotFound()) {
      return FromRocks(s, dir_, "cannot read meta");
    }
    s = db_->Get(rocksdb::ReadOptions(), "progress", &progress_json);
    if (s.ok()) return Resume(progress_json);
    if (!s.IsNotFound()) return FromRocks(s, dir_, "cannot read progress");
    meta_ = NewMeta();
    rocksdb::WriteBatch batch;
    batch.Put("meta", meta_.ToJson());
    batch.Put("vocab", VocabRecord(tokenizer_.vocab()));
    return FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), dir_, "cannot write meta");
  }

  Status Resume(const std::string& progress_json) {
    nlohmann::json j = nlohmann::json::parse(progress_json, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return Status::Corruption(dir_ + ": progress record is not valid JSON");
    try {
      if (j.at("fingerprint").get<std::string>() != fingerprint_) return UnfinishedOtherIngest();
      ReaderPosition position{j.at("file_index"), j.at("byte_offset"), j.at("line_number")};
      totals_.next_doc_id = j.at("next_doc_id");
      totals_.sentences = j.at("sentences");
      totals_.tokens = j.at("tokens");
      totals_.unk_tokens = j.at("unk_tokens");
      totals_.invalid_utf8_bytes = j.at("invalid_utf8_bytes");
      totals_.empty = j.at("empty");
      totals_.reader = ReaderStatsFromJson(j.at("reader"));
      BERT_RETURN_IF_ERROR(reader_.Seek(position));
    } catch (const nlohmann::json::exception& e) {
      return Status::Corruption(dir_ + ": progress record: " + e.what());
    }
    meta_ = NewMeta();
    report_.resumed = true;
    LOG(INFO) << "[prepare] continuing an interrupted ingest of " << dir_ << " at document " << totals_.next_doc_id;
    return Status::Ok();
  }

  Status UnfinishedOtherIngest() const {
    return Status::FailedPrecondition(dir_ + ": holds an unfinished ingest of different input files or settings; "
                                      "re-run it with the original arguments, or pass --overwrite");
  }

  CorpusMeta NewMeta() const {
    CorpusMeta m;
    const Vocab& vocab = tokenizer_.vocab();
    m.vocab_checksum = vocab.checksum();
    m.vocab_size = vocab.size();
    m.unk_id = vocab.unk_id();
    m.id_width = vocab.size() <= 65536 ? 2 : 4;
    m.lower_case = tokenizer_.options().lower_case;
    m.max_chars_per_word = tokenizer_.options().max_input_chars_per_word;
    m.input_format = InputFormatName(options_.reader.format);
    m.shard_index = options_.shard_index;
    m.num_shards = options_.num_shards;
    m.shard_set_id = options_.shard_set_id;
    m.ingest_fingerprint = fingerprint_;
    return m;
  }

  // Reads up to batch_bytes of documents; empty batch at the end of input.
  RawBatch ReadBatch() {
    RawBatch batch;
    size_t bytes = 0;
    SourceDocument doc;
    while (bytes < options_.batch_bytes && reader_.Next(&doc)) {
      bytes += doc.text.size();
      for (const std::string& line : doc.lines) bytes += line.size() + 1;
      batch.docs.push_back(std::move(doc));
    }
    batch.end_position = reader_.position();
    batch.reader_stats = reader_.stats();
    return batch;
  }

  // Reads, encodes (on up to num_threads threads) and writes batches in order.
  Status Pump() {
    std::deque<std::future<EncodedBatch>> in_flight;
    const size_t max_in_flight = static_cast<size_t>(std::max(1, options_.num_threads));
    const int32_t id_width = meta_.id_width;
    bool input_done = false;
    while (!input_done || !in_flight.empty()) {
      while (!input_done && in_flight.size() < max_in_flight) {
        RawBatch batch = ReadBatch();
        input_done = batch.docs.empty() || batch.end_position.file_index >= options_.files.size();
        if (options_.num_threads <= 1) {
          std::promise<EncodedBatch> done;
          done.set_value(EncodeBatch(tokenizer_, std::move(batch), id_width));
          in_flight.push_back(done.get_future());
        } else {
          in_flight.push_back(std::async(std::launch::async, [this, id_width, b = std::move(batch)]() mutable {
            return EncodeBatch(tokenizer_, std::move(b), id_width);
          }));
        }
      }
      if (in_flight.empty()) break;
      EncodedBatch encoded = in_flight.front().get();
      in_flight.pop_front();
      BERT_RETURN_IF_ERROR(WriteBatch(encoded));
      MaybeLogProgress();
    }
    return Status::Ok();
  }

  Status WriteBatch(const EncodedBatch& encoded) {
    rocksdb::WriteBatch batch;
    for (const std::string& value : encoded.values) batch.Put(DocumentKey(totals_.next_doc_id++), value);
    totals_.sentences += encoded.sentences;
    totals_.tokens += encoded.tokens;
    totals_.unk_tokens += encoded.unk_tokens;
    totals_.invalid_utf8_bytes += encoded.invalid_utf8_bytes;
    totals_.empty += encoded.empty;
    for (const auto& [origin, bytes] : encoded.invalid_utf8_at) {
      // Each file once (its first document with such bytes); all are counted.
      if (!invalid_utf8_files_.insert(FileOf(origin)).second) continue;
      if (invalid_utf8_files_.size() <= kInvalidUtf8FilesNamed) {
        LOG(WARNING) << "[prepare] " << origin << ": " << bytes
                     << " invalid UTF-8 byte(s) dropped (the first document of this file with any; all are counted)";
      } else if (invalid_utf8_files_.size() == kInvalidUtf8FilesNamed + 1) {
        LOG(WARNING) << "[prepare] more files with invalid UTF-8 bytes: counted, not named";
      }
    }
    current_reader_ = encoded.reader_stats;
    Totals persisted = totals_;
    persisted.reader = AddStats(totals_.reader, encoded.reader_stats);
    batch.Put("progress", ProgressJson(fingerprint_, persisted, encoded.end_position));
    return FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), dir_, "write failed (disk full?)");
  }

  void MaybeLogProgress() {
    double now_s = std::chrono::duration<double>(Clock::now() - start_).count();
    if (now_s - last_log_s_ < options_.progress_interval_s) return;
    last_log_s_ = now_s;
    double done = static_cast<double>(reader_.consumed_file_bytes());
    double total = static_cast<double>(std::max<uint64_t>(1, reader_.total_file_bytes()));
    double rate = static_cast<double>(current_reader_.bytes_read) / 1e6 / std::max(1e-9, now_s);
    double eta = done > 0 ? now_s * (total - done) / done : -1;
    LOG(INFO) << "[prepare] " << static_cast<int>(100 * done / total) << "% of input, " << totals_.next_doc_id
              << " documents, " << totals_.tokens << " tokens, " << rate << " MB/s, ETA " << FormatDuration(eta);
  }

  Status Finish() {
    rocksdb::FlushOptions flush;
    flush.wait = true;
    BERT_RETURN_IF_ERROR(FromRocks(db_->Flush(flush), dir_, "flush failed (disk full?)"));
    report_.reader = AddStats(totals_.reader, current_reader_);
    meta_.complete = true;
    meta_.num_documents = totals_.next_doc_id;
    meta_.num_sentences = totals_.sentences;
    meta_.num_tokens = totals_.tokens;
    meta_.num_unk = totals_.unk_tokens;
    meta_.input_bytes = report_.reader.bytes_read;
    rocksdb::WriteBatch batch;
    batch.Delete("progress");
    batch.Put("meta", meta_.ToJson());
    rocksdb::WriteOptions sync;
    sync.sync = true;
    BERT_RETURN_IF_ERROR(FromRocks(db_->Write(sync, &batch), dir_, "cannot mark the corpus complete"));
    BERT_RETURN_IF_ERROR(FromRocks(db_->Flush(flush), dir_, "final flush failed"));
    report_.documents = meta_.num_documents;
    report_.sentences = meta_.num_sentences;
    report_.tokens = meta_.num_tokens;
    report_.unk_tokens = meta_.num_unk;
    report_.input_bytes = meta_.input_bytes;
    report_.invalid_utf8_bytes = totals_.invalid_utf8_bytes + report_.reader.invalid_utf8_bytes;
    report_.empty_after_tokenize = totals_.empty;
    report_.seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    return Status::Ok();
  }

  IngestReport CompletedReport() {
    LOG(INFO) << "[prepare] " << dir_ << " is already complete for this input; nothing to do";
    report_.already_complete = true;
    report_.documents = meta_.num_documents;
    report_.sentences = meta_.num_sentences;
    report_.tokens = meta_.num_tokens;
    report_.unk_tokens = meta_.num_unk;
    report_.input_bytes = meta_.input_bytes;
    return report_;
  }

  std::string dir_;
  bool already_complete_ = false;
  const FullTokenizer& tokenizer_;
  IngestOptions options_;
  DocumentReader reader_;
  std::unique_ptr<rocksdb::DB> db_;
  std::string fingerprint_;
  CorpusMeta meta_;
  Totals totals_;
  std::set<std::string> invalid_utf8_files_;  // files named for invalid UTF-8 bytes (this process)
  ReaderStats current_reader_;  // reader counters at the last written batch
  IngestReport report_;
  Clock::time_point start_;
  double last_log_s_ = 0;
};

Result<IngestReport> IngestCorpus(const std::string& db_dir, const FullTokenizer& tokenizer,
                                  const IngestOptions& options) {
  Ingestor ingestor(db_dir, tokenizer, options);
  return ingestor.Run();
}

}  // namespace bert
