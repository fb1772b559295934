#include "coordinator/ledger.h"

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <chrono>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "datapipe/rocksdb_util.h"

namespace bert {
namespace {

constexpr char kMetaKey[] = "meta";
constexpr char kCursorKey[] = "cursor";
constexpr uint8_t kEntryVersion = 1;
// version u8, 3 reserved, 5 x u64, 2 x u32, acked u32, 3 x f32, 2 x i64.
constexpr size_t kEntryBytes = 4 + 5 * 8 + 2 * 4 + 4 + 3 * 4 + 2 * 8;

template <typename T>
void Put(std::string* out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // little-endian host (checked by the batch codec)
  out->append(bytes, sizeof(T));
}

template <typename T>
T Take(const char** p) {
  T value;
  std::memcpy(&value, *p, sizeof(T));
  *p += sizeof(T);
  return value;
}

void PutBigEndian(std::string* out, uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint64_t GetBigEndian(std::string_view in, size_t offset, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value = (value << 8) | static_cast<uint8_t>(in[offset + i]);
  return value;
}

std::string EntryKey(const BatchKey& key) {
  std::string out = "b";
  PutBigEndian(&out, key.step, 8);
  PutBigEndian(&out, key.rank, 4);
  PutBigEndian(&out, key.micro, 4);
  return out;
}

std::string StepPrefix(uint64_t step) {
  std::string out = "b";
  PutBigEndian(&out, step, 8);
  return out;
}

std::string EpochKey(uint64_t epoch) {
  std::string out = "e";
  PutBigEndian(&out, epoch, 8);
  return out;
}

std::string U64Value(uint64_t value) {
  std::string out;
  Put(&out, value);
  return out;
}

int64_t UnixMsNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

rocksdb::WriteOptions LedgerWrite() {
  rocksdb::WriteOptions options;
  options.sync = false;  // see "Durability" in ledger.h
  return options;
}

}  // namespace

std::string LedgerDir(const std::string& run_dir) { return run_dir + "/coordinator/ledger"; }

std::string EncodeEntry(const LedgerEntry& e) {
  std::string out;
  out.reserve(kEntryBytes);
  Put<uint8_t>(&out, kEntryVersion);
  out.append(3, '\0');
  for (uint64_t v : {e.epoch, e.sample_begin, e.sample_end, e.payload_bytes, e.payload_checksum}) Put(&out, v);
  Put(&out, e.dispatch_count);
  Put(&out, e.session);
  Put<uint32_t>(&out, e.acked ? 1 : 0);
  for (float v : {e.loss, e.step_time_ms, e.data_wait_ms}) Put(&out, v);
  Put(&out, e.dispatched_unix_ms);
  Put(&out, e.acked_unix_ms);
  return out;
}

Status DecodeEntry(std::string_view bytes, LedgerEntry* e) {
  if (bytes.size() != kEntryBytes || static_cast<uint8_t>(bytes[0]) != kEntryVersion) {
    return Status::Corruption("ledger entry: " + std::to_string(bytes.size()) + " bytes or unknown version");
  }
  const char* p = bytes.data() + 4;
  e->epoch = Take<uint64_t>(&p);
  e->sample_begin = Take<uint64_t>(&p);
  e->sample_end = Take<uint64_t>(&p);
  e->payload_bytes = Take<uint64_t>(&p);
  e->payload_checksum = Take<uint64_t>(&p);
  e->dispatch_count = Take<uint32_t>(&p);
  e->session = Take<uint32_t>(&p);
  e->acked = Take<uint32_t>(&p) != 0;
  e->loss = Take<float>(&p);
  e->step_time_ms = Take<float>(&p);
  e->data_wait_ms = Take<float>(&p);
  e->dispatched_unix_ms = Take<int64_t>(&p);
  e->acked_unix_ms = Take<int64_t>(&p);
  return Status::Ok();
}

std::string LedgerMeta::ToJson() const {
  nlohmann::json j = {{"run_id", run_id},
                      {"global_batch_size", global_batch_size},
                      {"seed", seed},
                      {"max_seq_len", max_seq_len},
                      {"max_predictions", max_predictions},
                      {"masked_lm_prob", masked_lm_prob},
                      {"short_seq_prob", short_seq_prob},
                      {"whole_word_masking", whole_word_masking},
                      {"chinese_whole_word", chinese_whole_word},
                      {"objective", objective},
                      {"packing", packing},
                      {"corpus_fingerprint", corpus_fingerprint},
                      {"world_size", world_size},
                      {"micro_batch_size", micro_batch_size},
                      {"total_steps", total_steps},
                      {"session", session}};
  return j.dump();
}

Result<LedgerMeta> LedgerMeta::FromJson(std::string_view json, const std::string& where) {
  try {
    nlohmann::json j = nlohmann::json::parse(json);
    LedgerMeta m;
    m.run_id = j.at("run_id").get<std::string>();
    m.global_batch_size = j.at("global_batch_size").get<uint64_t>();
    m.seed = j.at("seed").get<uint64_t>();
    m.max_seq_len = j.at("max_seq_len").get<int32_t>();
    m.max_predictions = j.at("max_predictions").get<int32_t>();
    m.masked_lm_prob = j.at("masked_lm_prob").get<double>();
    m.short_seq_prob = j.at("short_seq_prob").get<double>();
    m.whole_word_masking = j.at("whole_word_masking").get<bool>();
    m.chinese_whole_word = j.value("chinese_whole_word", false);  // before the key existed
    m.objective = j.value("objective", std::string("mlm_nsp"));  // before the key existed
    m.packing = j.value("packing", false);
    m.corpus_fingerprint = j.at("corpus_fingerprint").get<std::string>();
    m.world_size = j.at("world_size").get<uint32_t>();
    m.micro_batch_size = j.at("micro_batch_size").get<uint64_t>();
    m.total_steps = j.at("total_steps").get<uint64_t>();
    m.session = j.at("session").get<uint32_t>();
    return m;
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(where + ": meta: " + e.what());
  }
}

std::string LedgerMeta::PlanDifference(const LedgerMeta& now) const {
  auto differ = [](const std::string& key, const auto& old_value, const auto& new_value) -> std::string {
    if (old_value == new_value) return "";
    nlohmann::json o = old_value, n = new_value;
    return key + ": " + o.dump() + " in the ledger, " + n.dump() + " now";
  };
  for (const std::string& d :
       {differ("run id", run_id, now.run_id), differ("train.global_batch_size", global_batch_size, now.global_batch_size),
        differ("data.seed", seed, now.seed), differ("data.max_seq_len", max_seq_len, now.max_seq_len),
        differ("data.max_predictions", max_predictions, now.max_predictions),
        differ("data.masked_lm_prob", masked_lm_prob, now.masked_lm_prob),
        differ("data.short_seq_prob", short_seq_prob, now.short_seq_prob),
        differ("data.whole_word_masking", whole_word_masking, now.whole_word_masking),
        differ("data.chinese_whole_word", chinese_whole_word, now.chinese_whole_word),
        differ("data.objective", objective, now.objective), differ("data.packing", packing, now.packing),
        differ("data.db (corpus)", corpus_fingerprint, now.corpus_fingerprint)}) {
    if (!d.empty()) return d;
  }
  return "";
}

Ledger::~Ledger() = default;

Result<std::unique_ptr<Ledger>> Ledger::OpenDb(const std::string& dir, bool read_only) {
  std::unique_ptr<Ledger> ledger(new Ledger());
  ledger->dir_ = dir;
  ledger->read_only_ = read_only;
  rocksdb::Options options = CorpusDbOptions();  // routes RocksDB's log to glog (see rocksdb_util.h)
  options.write_buffer_size = 8 << 20;
  rocksdb::DB* raw = nullptr;
  if (read_only) {
    if (!std::filesystem::exists(dir + "/CURRENT")) return Status::NotFound(dir + ": no ledger here");
    BERT_RETURN_IF_ERROR(FromRocks(rocksdb::DB::OpenForReadOnly(options, dir, &raw), dir, "cannot open ledger"));
  } else {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return Status::IoError(dir + ": cannot create ledger directory: " + ec.message());
    BERT_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(options, dir, &raw), dir, "cannot open ledger"));
  }
  ledger->db_.reset(raw);
  return ledger;
}

Status Ledger::LoadState() {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), kMetaKey, &value);
  if (s.IsNotFound()) return Status::NotFound(dir_ + ": ledger has no meta record");
  BERT_RETURN_IF_ERROR(FromRocks(s, dir_, "read meta"));
  Result<LedgerMeta> meta = LedgerMeta::FromJson(value, dir_);
  if (!meta.ok()) return meta.status();
  meta_ = *meta;
  s = db_->Get(rocksdb::ReadOptions(), kCursorKey, &value);
  if (s.IsNotFound()) {
    cursor_ = 0;
    return Status::Ok();
  }
  BERT_RETURN_IF_ERROR(FromRocks(s, dir_, "read cursor"));
  if (value.size() != 8) return Status::Corruption(dir_ + ": cursor record of " + std::to_string(value.size()) + " bytes");
  std::memcpy(&cursor_, value.data(), 8);
  return Status::Ok();
}

Result<std::unique_ptr<Ledger>> Ledger::Open(const std::string& dir, LedgerMeta meta,
                                             std::optional<uint64_t> resume_at) {
  Result<std::unique_ptr<Ledger>> opened = OpenDb(dir, /*read_only=*/false);
  if (!opened.ok()) return opened.status();
  std::unique_ptr<Ledger> ledger = std::move(opened).value();
  Status loaded = ledger->LoadState();
  if (loaded.ok()) {
    const std::string difference = ledger->meta_.PlanDifference(meta);
    if (!difference.empty()) {
      return Status::FailedPrecondition(dir + ": cannot resume this run with another sample plan: " + difference);
    }
    meta.session = ledger->meta_.session + 1;
    if (resume_at) {
      ledger->rewound_from_ = ledger->cursor_;
      ledger->cursor_ = *resume_at;
    }
    BERT_RETURN_IF_ERROR(ledger->DropFrom(ledger->cursor_));
  } else if (loaded.code() == Status::Code::kNotFound) {
    meta.session = 1;
    ledger->cursor_ = resume_at.value_or(0);
  } else {
    return loaded;
  }
  ledger->meta_ = meta;
  rocksdb::WriteBatch batch;
  batch.Put(kMetaKey, meta.ToJson());
  batch.Put(kCursorKey, U64Value(ledger->cursor_));
  rocksdb::WriteOptions synced;
  synced.sync = true;  // a session starts durably
  BERT_RETURN_IF_ERROR(FromRocks(ledger->db_->Write(synced, &batch), dir, "write meta"));
  return ledger;
}

Result<std::unique_ptr<Ledger>> Ledger::OpenReadOnly(const std::string& dir) {
  Result<std::unique_ptr<Ledger>> opened = OpenDb(dir, /*read_only=*/true);
  if (!opened.ok()) return opened.status();
  BERT_RETURN_IF_ERROR((*opened)->LoadState());
  return opened;
}

Status Ledger::DropFrom(uint64_t step) {
  rocksdb::WriteBatch batch;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(StepPrefix(step)); it->Valid() && it->key().starts_with("b"); it->Next()) {
    batch.Delete(it->key());
    ++dropped_on_resume_;
  }
  BERT_RETURN_IF_ERROR(FromRocks(it->status(), dir_, "scan entries"));
  return FromRocks(db_->Write(LedgerWrite(), &batch), dir_, "drop unfinished steps");
}

Result<std::optional<LedgerEntry>> Ledger::Get(const BatchKey& key) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), EntryKey(key), &value);
  if (s.IsNotFound()) return std::optional<LedgerEntry>();
  BERT_RETURN_IF_ERROR(FromRocks(s, dir_, "read " + key.ToString()));
  LedgerEntry entry;
  Status decoded = DecodeEntry(value, &entry);
  if (!decoded.ok()) return Status::Corruption(dir_ + ": " + key.ToString() + ": " + decoded.message());
  return std::optional<LedgerEntry>(entry);
}

Status Ledger::RecordDispatch(const BatchKey& key, LedgerEntry entry) {
  Result<std::optional<LedgerEntry>> previous = Get(key);
  if (!previous.ok()) return previous.status();
  entry.session = meta_.session;
  entry.dispatch_count = previous->has_value() ? (*previous)->dispatch_count + 1 : 1;
  entry.acked = false;
  return FromRocks(db_->Put(LedgerWrite(), EntryKey(key), EncodeEntry(entry)), dir_, "record " + key.ToString());
}

Status Ledger::RecordAck(const BatchKey& key, float loss, float step_time_ms, float data_wait_ms,
                         std::optional<uint64_t> new_cursor) {
  Result<std::optional<LedgerEntry>> previous = Get(key);
  if (!previous.ok()) return previous.status();
  if (!previous->has_value()) return Status::FailedPrecondition(dir_ + ": ack of " + key.ToString() + " never dispatched");
  LedgerEntry entry = **previous;
  entry.acked = true;
  entry.loss = loss;
  entry.step_time_ms = step_time_ms;
  entry.data_wait_ms = data_wait_ms;
  entry.acked_unix_ms = UnixMsNow();
  rocksdb::WriteBatch batch;
  batch.Put(EntryKey(key), EncodeEntry(entry));
  if (new_cursor) {
    batch.Put(kCursorKey, U64Value(*new_cursor));
    cursor_ = *new_cursor;
  }
  return FromRocks(db_->Write(LedgerWrite(), &batch), dir_, "record ack of " + key.ToString());
}

Result<std::optional<uint64_t>> Ledger::EpochSize(uint64_t epoch) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), EpochKey(epoch), &value);
  if (s.IsNotFound()) return std::optional<uint64_t>();
  BERT_RETURN_IF_ERROR(FromRocks(s, dir_, "read epoch size"));
  if (value.size() != 8) return Status::Corruption(dir_ + ": epoch " + std::to_string(epoch) + " size record");
  uint64_t size;
  std::memcpy(&size, value.data(), 8);
  return std::optional<uint64_t>(size);
}

Status Ledger::PutEpochSize(uint64_t epoch, uint64_t num_samples) {
  if (read_only_) return Status::FailedPrecondition(dir_ + ": opened read-only");
  return FromRocks(db_->Put(LedgerWrite(), EpochKey(epoch), U64Value(num_samples)), dir_, "record epoch size");
}

Status Ledger::ForEach(const std::function<Status(const BatchKey&, const LedgerEntry&)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek("b"); it->Valid() && it->key().starts_with("b"); it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    if (key.size() != 17) return Status::Corruption(dir_ + ": entry key of " + std::to_string(key.size()) + " bytes");
    BatchKey batch_key;
    batch_key.step = GetBigEndian(key, 1, 8);
    batch_key.rank = static_cast<uint32_t>(GetBigEndian(key, 9, 4));
    batch_key.micro = static_cast<uint32_t>(GetBigEndian(key, 13, 4));
    LedgerEntry entry;
    Status decoded = DecodeEntry(std::string_view(it->value().data(), it->value().size()), &entry);
    if (!decoded.ok()) return Status::Corruption(dir_ + ": " + batch_key.ToString() + ": " + decoded.message());
    BERT_RETURN_IF_ERROR(fn(batch_key, entry));
  }
  return FromRocks(it->status(), dir_, "scan entries");
}

Status Ledger::DumpJsonLines(std::ostream& out) const {
  nlohmann::json meta = nlohmann::json::parse(meta_.ToJson());
  meta["type"] = "meta";
  meta["cursor"] = cursor_;
  out << meta.dump() << "\n";
  for (uint64_t epoch = 0;; ++epoch) {
    Result<std::optional<uint64_t>> size = EpochSize(epoch);
    if (!size.ok()) return size.status();
    if (!size->has_value()) break;
    out << nlohmann::json{{"type", "epoch"}, {"epoch", epoch}, {"num_samples", **size}}.dump() << "\n";
  }
  return ForEach([&out](const BatchKey& key, const LedgerEntry& e) {
    nlohmann::json j = {{"type", "batch"},
                        {"step", key.step},
                        {"rank", key.rank},
                        {"micro", key.micro},
                        {"epoch", e.epoch},
                        {"begin", e.sample_begin},
                        {"end", e.sample_end},
                        {"payload_bytes", e.payload_bytes},
                        {"checksum", Hex64(e.payload_checksum)},
                        {"dispatch_count", e.dispatch_count},
                        {"session", e.session},
                        {"acked", e.acked}};
    if (e.acked) {
      j["loss"] = e.loss;  // NaN dumps as null
      j["step_time_ms"] = e.step_time_ms;
      j["data_wait_ms"] = e.data_wait_ms;
    }
    out << j.dump() << "\n";
    return Status::Ok();
  });
}

}  // namespace bert
