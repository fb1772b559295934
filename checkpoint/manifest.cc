// Manifest (de)serialisation and validation, and the resharding arithmetic.
// Every FromJson error is one line: "SOURCE: FIELD: what is wrong".
#include <glog/logging.h>

#include <cstdio>
#include <set>

#include "checkpoint/checkpoint.h"
#include "checkpoint/checkpoint_internal.h"

namespace bert {
namespace {

using json = nlohmann::json;

// A JSON value for an error message, cut to keep the message one short line.
std::string Shown(const json& value) {
  std::string text = value.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

// Reads fields of one JSON object; the first failure is kept and later
// reads become no-ops, so a parser reads like the list of its fields.
class FieldReader {
 public:
  FieldReader(const json& object, std::string source, std::string prefix, Status* status)
      : object_(object), source_(std::move(source)), prefix_(std::move(prefix)), status_(status) {}

  std::string Field(const std::string& key) const { return prefix_.empty() ? key : prefix_ + "." + key; }
  void Fail(const std::string& field, const std::string& what) {
    if (status_->ok()) *status_ = Status::Corruption(source_ + ": " + field + ": " + what);
  }
  bool ok() const { return status_->ok(); }
  // For the reader of a nested object: failures land in the same status.
  FieldReader Nested(const json& object, const std::string& prefix) const {
    return FieldReader(object, source_, prefix, status_);
  }

  const json* Get(const std::string& key) {
    if (!ok()) return nullptr;
    auto it = object_.find(key);
    if (it == object_.end()) {
      Fail(Field(key), "missing");
      return nullptr;
    }
    return &*it;
  }
  uint64_t U64(const std::string& key) {
    const json* value = Get(key);
    if (value == nullptr) return 0;
    if (value->is_number_unsigned()) return value->get<uint64_t>();
    if (value->is_number_integer() && value->get<int64_t>() >= 0) return value->get<uint64_t>();
    Fail(Field(key), "expected a non-negative integer, got " + Shown(*value));
    return 0;
  }
  uint32_t U32(const std::string& key) {
    const uint64_t value = U64(key);
    if (value > UINT32_MAX) Fail(Field(key), std::to_string(value) + " does not fit in 32 bits");
    return static_cast<uint32_t>(value);
  }
  std::string String(const std::string& key) {
    const json* value = Get(key);
    if (value == nullptr) return "";
    if (!value->is_string()) {
      Fail(Field(key), "expected a string, got " + Shown(*value));
      return "";
    }
    return value->get<std::string>();
  }
  // An opaque state record: an object, or null when there is none.
  json ObjectOrNull(const std::string& key) {
    const json* value = Get(key);
    if (value == nullptr) return json();
    if (!value->is_object() && !value->is_null()) {
      Fail(Field(key), "expected an object or null, got " + Shown(*value));
      return json();
    }
    return *value;
  }
  const json& Array(const std::string& key) {
    static const json kEmpty = json::array();
    const json* value = Get(key);
    if (value == nullptr) return kEmpty;
    if (!value->is_array()) {
      Fail(Field(key), "expected an array, got " + Shown(*value));
      return kEmpty;
    }
    return *value;
  }

 private:
  const json& object_;
  std::string source_, prefix_;
  Status* status_;
};

// An element of an array field, checked to be an object.
bool IsObjectAt(const json& array, size_t i, const std::string& field, FieldReader* reader) {
  if (array[i].is_object()) return true;
  reader->Fail(field + "[" + std::to_string(i) + "]", "expected an object, got " + Shown(array[i]));
  return false;
}

bool IsSafeFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

bool IsHex64(const std::string& text) {
  if (text.size() != 16) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

void ParseSections(const json& array, FieldReader* reader, Manifest* manifest) {
  if (reader->ok() && array.empty()) reader->Fail("sections", "must not be empty");
  std::set<std::string> seen;
  for (size_t i = 0; i < array.size() && reader->ok(); ++i) {
    const std::string field = "sections[" + std::to_string(i) + "]";
    if (!array[i].is_string() || array[i].get<std::string>().empty()) {
      reader->Fail(field, "expected a non-empty string, got " + Shown(array[i]));
    } else if (!seen.insert(array[i].get<std::string>()).second) {
      reader->Fail(field, "\"" + array[i].get<std::string>() + "\" appears twice");
    } else {
      manifest->sections.push_back(array[i].get<std::string>());
    }
  }
}

// The tensors must lie back to back in array order and cover exactly
// [0, total_elements): that is how FlatParameters lays them out.
void ParseLayout(const json& array, FieldReader* reader, Manifest* manifest) {
  std::set<std::string> names;
  uint64_t next_offset = 0;
  for (size_t i = 0; i < array.size() && reader->ok(); ++i) {
    const std::string field = "layout[" + std::to_string(i) + "]";
    if (!IsObjectAt(array, i, "layout", reader)) return;
    FieldReader entry = reader->Nested(array[i], field);
    TensorLayout tensor;
    tensor.name = entry.String("name");
    tensor.dtype = entry.String("dtype");
    const json& shape = entry.Array("shape");
    tensor.offset = entry.U64("offset");
    if (entry.ok() && tensor.name.empty()) entry.Fail(entry.Field("name"), "must not be empty");
    if (entry.ok() && !names.insert(tensor.name).second) {
      entry.Fail(entry.Field("name"), "\"" + tensor.name + "\" appears twice");
    }
    if (entry.ok() && tensor.dtype != "float32") {
      entry.Fail(entry.Field("dtype"), "\"" + tensor.dtype + "\" is not supported (shards hold float32)");
    }
    uint64_t numel = 1;
    for (size_t d = 0; d < shape.size() && entry.ok(); ++d) {
      const std::string dim_field = entry.Field("shape") + "[" + std::to_string(d) + "]";
      if (!shape[d].is_number_integer() || shape[d].get<int64_t>() < 0) {
        entry.Fail(dim_field, "expected a non-negative integer, got " + Shown(shape[d]));
      } else if (__builtin_mul_overflow(numel, shape[d].get<uint64_t>(), &numel)) {
        entry.Fail(entry.Field("shape"), "element count overflows 64 bits");
      } else {
        tensor.shape.push_back(shape[d].get<int64_t>());
      }
    }
    if (entry.ok() && tensor.offset != next_offset) {
      entry.Fail(entry.Field("offset"), std::to_string(tensor.offset) + " but the tensors before it end at " +
                                            std::to_string(next_offset) + " (tensors lie back to back)");
    }
    if (entry.ok() && __builtin_add_overflow(next_offset, numel, &next_offset)) {
      entry.Fail(entry.Field("shape"), "element count overflows 64 bits");
    }
    if (!entry.ok()) return;
    manifest->layout.push_back(std::move(tensor));
  }
  if (reader->ok() && next_offset != manifest->total_elements) {
    reader->Fail("layout", "the tensors cover [0, " + std::to_string(next_offset) + ") but total_elements is " +
                               std::to_string(manifest->total_elements));
  }
}

void ParseShards(const json& array, FieldReader* reader, Manifest* manifest) {
  if (reader->ok() && array.size() != manifest->world_size) {
    reader->Fail("shards", std::to_string(array.size()) + " entries but world_size is " +
                               std::to_string(manifest->world_size));
  }
  if (!reader->ok()) return;
  const std::vector<ShardRange> ranges = ShardRanges(manifest->total_elements, manifest->world_size);
  std::set<std::string> files;
  for (size_t r = 0; r < array.size() && reader->ok(); ++r) {
    const std::string field = "shards[" + std::to_string(r) + "]";
    if (!IsObjectAt(array, r, "shards", reader)) return;
    FieldReader entry = reader->Nested(array[r], field);
    ShardInfo shard;
    shard.file = entry.String("file");
    shard.rank = entry.U32("rank");
    shard.begin = entry.U64("begin");
    shard.end = entry.U64("end");
    shard.bytes = entry.U64("bytes");
    shard.xxh3 = entry.String("xxh3");
    if (entry.ok()) {
      auto it = array[r].find("rank_state");  // optional: ranks without state omit it
      if (it != array[r].end()) shard.rank_state = entry.ObjectOrNull("rank_state");
    }
    const ShardRange& expected = ranges[r];
    const std::string expected_range = "ShardRanges(" + std::to_string(manifest->total_elements) + ", " +
                                       std::to_string(manifest->world_size) + ")[" + std::to_string(r) + "] is [" +
                                       std::to_string(expected.begin) + ", " + std::to_string(expected.end) + ")";
    if (!entry.ok()) return;
    if (!IsSafeFileName(shard.file) || shard.file == "manifest.json") {
      entry.Fail(entry.Field("file"), "\"" + shard.file + "\" is not a plain file name in the checkpoint directory");
    } else if (!files.insert(shard.file).second) {
      entry.Fail(entry.Field("file"), "\"" + shard.file + "\" appears twice");
    } else if (shard.rank != r) {
      entry.Fail(entry.Field("rank"), std::to_string(shard.rank) + " but shards are in rank order");
    } else if (shard.begin != expected.begin) {
      entry.Fail(entry.Field("begin"), std::to_string(shard.begin) + " but " + expected_range);
    } else if (shard.end != expected.end) {
      entry.Fail(entry.Field("end"), std::to_string(shard.end) + " but " + expected_range);
    } else if (shard.bytes != ShardFileBytes(manifest->sections, shard.end - shard.begin)) {
      entry.Fail(entry.Field("bytes"),
                 std::to_string(shard.bytes) + " but a shard of " + std::to_string(manifest->sections.size()) +
                     " sections x " + std::to_string(shard.end - shard.begin) + " floats has " +
                     std::to_string(ShardFileBytes(manifest->sections, shard.end - shard.begin)));
    } else if (!IsHex64(shard.xxh3)) {
      entry.Fail(entry.Field("xxh3"), "\"" + shard.xxh3 + "\" is not 16 lower-case hex digits");
    }
    if (!entry.ok()) return;
    manifest->shards.push_back(std::move(shard));
  }
}

}  // namespace

std::vector<ShardRange> ShardRanges(uint64_t total_elements, uint32_t world_size) {
  CHECK_GT(world_size, 0u) << "ShardRanges: world size 0";
  std::vector<ShardRange> ranges(world_size);
  const uint64_t base = total_elements / world_size, extra = total_elements % world_size;
  uint64_t begin = 0;
  for (uint32_t r = 0; r < world_size; ++r) {
    ranges[r].rank = r;
    ranges[r].begin = begin;
    ranges[r].end = begin + base + (r < extra ? 1 : 0);
    begin = ranges[r].end;
  }
  return ranges;
}

std::string ShardFileName(uint32_t rank, uint32_t world_size) {
  char name[64];
  std::snprintf(name, sizeof(name), "shard-%05u-of-%05u.bin", rank, world_size);
  return name;
}

uint64_t ShardFileBytes(const std::vector<std::string>& section_names, uint64_t num_elements) {
  uint64_t bytes = checkpoint_internal::kShardFixedHeaderBytes;
  for (const std::string& name : section_names) bytes += 4 + name.size();
  uint64_t array_bytes = 0;
  // An absurd element count (a forged manifest) saturates instead of wrapping,
  // so it can never match a real file size.
  if (__builtin_mul_overflow(num_elements, uint64_t{4} * section_names.size(), &array_bytes) ||
      __builtin_add_overflow(bytes, array_bytes, &bytes)) {
    return UINT64_MAX;
  }
  return bytes;
}

json Manifest::ToJson() const {
  json layout_json = json::array();
  for (const TensorLayout& tensor : layout) {
    layout_json.push_back({{"name", tensor.name}, {"dtype", tensor.dtype}, {"shape", tensor.shape},
                           {"offset", tensor.offset}});
  }
  json shards_json = json::array();
  for (const ShardInfo& shard : shards) {
    shards_json.push_back({{"file", shard.file}, {"rank", shard.rank}, {"begin", shard.begin},
                           {"end", shard.end}, {"bytes", shard.bytes}, {"xxh3", shard.xxh3},
                           {"rank_state", shard.rank_state}});
  }
  json j{{"format_version", format_version}, {"run_id", run_id}, {"step", step}, {"epoch", epoch},
              {"data_cursor", data_cursor}, {"world_size", world_size}, {"total_elements", total_elements},
              {"sections", sections}, {"layout", layout_json}, {"shards", shards_json},
              {"optimizer", optimizer}, {"scheduler", scheduler}, {"rng", rng}, {"config_yaml", config_yaml},
              {"vocab_checksum", vocab_checksum}, {"created_at", created_at}, {"model_config", model_config}};
  if (!anomaly.is_null()) j["anomaly"] = anomaly;
  return j;
}

Result<Manifest> Manifest::FromJson(const json& j, const std::string& source) {
  if (!j.is_object()) return Status::Corruption(source + ": expected a JSON object, got " + Shown(j));
  Status status;
  FieldReader reader(j, source, "", &status);
  Manifest manifest;
  const json* version = reader.Get("format_version");
  if (version != nullptr && !version->is_number_integer()) {
    reader.Fail("format_version", "expected an integer, got " + Shown(*version));
  } else if (version != nullptr && version->get<int64_t>() != kCheckpointFormatVersion) {
    reader.Fail("format_version", std::to_string(version->get<int64_t>()) +
                                      " is not supported (this build reads version " +
                                      std::to_string(kCheckpointFormatVersion) + ")");
  }
  manifest.run_id = reader.String("run_id");
  manifest.step = reader.U64("step");
  manifest.epoch = reader.U64("epoch");
  manifest.data_cursor = reader.U64("data_cursor");
  manifest.world_size = reader.U32("world_size");
  if (reader.ok() && manifest.world_size == 0) reader.Fail("world_size", "must be at least 1");
  manifest.total_elements = reader.U64("total_elements");
  ParseSections(reader.Array("sections"), &reader, &manifest);
  ParseLayout(reader.Array("layout"), &reader, &manifest);
  ParseShards(reader.Array("shards"), &reader, &manifest);
  manifest.optimizer = reader.ObjectOrNull("optimizer");
  manifest.scheduler = reader.ObjectOrNull("scheduler");
  manifest.rng = reader.ObjectOrNull("rng");
  manifest.config_yaml = reader.String("config_yaml");
  manifest.vocab_checksum = reader.String("vocab_checksum");
  manifest.created_at = reader.String("created_at");
  if (reader.ok() && j.contains("model_config")) {  // optional: older checkpoints lack it
    manifest.model_config = reader.ObjectOrNull("model_config");
  }
  if (reader.ok() && j.contains("anomaly")) manifest.anomaly = reader.ObjectOrNull("anomaly");  // optional too
  if (!status.ok()) return status;
  return manifest;
}

TimeBudgetAccount TimeBudgetAccountOf(const Manifest& manifest) {
  TimeBudgetAccount account;
  const nlohmann::json& scheduler = manifest.scheduler;
  if (!scheduler.is_object()) return account;
  const nlohmann::json spent = scheduler.value("train_seconds", nlohmann::json(0.0));
  if (spent.is_number() && spent.get<double>() >= 0) account.train_seconds = spent.get<double>();
  account.spent = scheduler.value("budget_spent", false) == true;
  return account;
}

}  // namespace bert
