// safetensors reader and writer (interop/safetensors.h). The rules follow
// the format's reference implementation (huggingface/safetensors,
// safetensors/src/tensor.rs: `validate`): sorted by offset, the entries must
// tile the buffer with no gap or overlap, each entry's byte length must be
// numel * dtype size, and the buffer must end exactly at end of file.
#include "interop/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "common/error_text.h"

namespace bert {
namespace {

// Values are copied with memcpy: the format is little-endian and so is
// every host we build for.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors is little-endian");

// The reference implementation refuses headers above 100 MB
// (MAX_HEADER_SIZE in tensor.rs); so do we, before allocating.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr size_t kWriteChunkBytes = size_t{8} << 20;

// Bytes per element of the dtypes the format defines (tensor.rs `Dtype`).
int DtypeBytes(const std::string& dtype) {
  static const std::pair<const char*, int> kSizes[] = {
      {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4}, {"F64", 8}, {"I64", 8}, {"U64", 8}};
  for (const auto& [name, bytes] : kSizes) {
    if (dtype == name) return bytes;
  }
  return 0;
}

std::string Shown(const nlohmann::json& value) {
  std::string text = value.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

// IEEE 754 binary16 to binary32, subnormals, infinities and NaN included.
float HalfToFloat(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1fu;
  uint32_t mantissa = half & 0x3ffu;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: m * 2^-24, exact in binary32
      const float value = std::ldexp(static_cast<float>(mantissa), -24);
      std::memcpy(&bits, &value, 4);
      bits |= sign;
    }
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

float Bf16ToFloat(uint16_t bf16) {
  const uint32_t bits = static_cast<uint32_t>(bf16) << 16;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

// Decodes one entry's bytes into floats. Errors name the tensor.
Status DecodeValues(const SafetensorsEntry& entry, const char* bytes, uint64_t numel, const std::string& source,
                    std::vector<float>* out) {
  out->resize(numel);
  if (entry.dtype == "F32") {
    // An empty vector's data() may be null, which memcpy must not get even for 0 bytes (UBSan).
    if (numel > 0) std::memcpy(out->data(), bytes, numel * 4);
  } else if (entry.dtype == "F16" || entry.dtype == "BF16") {
    const bool half = entry.dtype == "F16";
    for (uint64_t i = 0; i < numel; ++i) {
      uint16_t raw;
      std::memcpy(&raw, bytes + 2 * i, 2);
      (*out)[i] = half ? HalfToFloat(raw) : Bf16ToFloat(raw);
    }
  } else if (entry.dtype == "F64") {
    for (uint64_t i = 0; i < numel; ++i) {
      double value;
      std::memcpy(&value, bytes + 8 * i, 8);
      (*out)[i] = static_cast<float>(value);
    }
  } else if (entry.dtype == "I8" || entry.dtype == "U8") {
    const bool is_signed = entry.dtype == "I8";
    for (uint64_t i = 0; i < numel; ++i) {
      const auto byte = static_cast<uint8_t>(bytes[i]);
      (*out)[i] = is_signed ? static_cast<float>(static_cast<int8_t>(byte)) : static_cast<float>(byte);
    }
  } else if (entry.dtype == "I16" || entry.dtype == "U16") {
    for (uint64_t i = 0; i < numel; ++i) {
      uint16_t raw;
      std::memcpy(&raw, bytes + 2 * i, 2);
      (*out)[i] = entry.dtype == "I16" ? static_cast<float>(static_cast<int16_t>(raw)) : static_cast<float>(raw);
    }
  } else if (entry.dtype == "I32") {
    constexpr int32_t kExact = int32_t{1} << 24;  // every integer up to here is a float
    for (uint64_t i = 0; i < numel; ++i) {
      int32_t value;
      std::memcpy(&value, bytes + 4 * i, 4);
      if (value > kExact || value < -kExact) {
        return Status::InvalidArgument(source + ": tensor \"" + OneLineText(entry.name) + "\": I32 value " +
                                       std::to_string(value) + " at index " + std::to_string(i) +
                                       " is not exact as a float (|value| <= 2^24 is)");
      }
      (*out)[i] = static_cast<float>(value);
    }
  } else {
    return Status::InvalidArgument(source + ": tensor \"" + OneLineText(entry.name) + "\": dtype " + entry.dtype +
                                   " cannot be read as float (F32, F16, BF16, F64, I8, U8, I16, U16 and I32 can)");
  }
  return Status::Ok();
}

// Parses one tensor entry of the header. Errors name the tensor and field.
Status ParseEntry(const std::string& name, const nlohmann::json& value, const std::string& where,
                  SafetensorsEntry* entry) {
  const std::string at = where + ": tensor \"" + OneLineText(name) + "\"";
  if (name.empty()) return Status::Corruption(where + ": a tensor has an empty name");
  if (!value.is_object()) return Status::Corruption(at + ": expected an object, got " + Shown(value));
  for (const auto& [key, unused] : value.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return Status::Corruption(at + ": unknown field \"" + OneLineText(key) + "\"");
    }
  }
  entry->name = name;
  auto dtype = value.find("dtype");
  if (dtype == value.end() || !dtype->is_string()) return Status::Corruption(at + ": dtype: missing or not a string");
  entry->dtype = dtype->get<std::string>();
  const int dtype_bytes = DtypeBytes(entry->dtype);
  if (dtype_bytes == 0) return Status::Corruption(at + ": dtype: unknown dtype \"" + entry->dtype + "\"");
  auto shape = value.find("shape");
  if (shape == value.end() || !shape->is_array()) return Status::Corruption(at + ": shape: missing or not an array");
  uint64_t numel = 1;
  for (const nlohmann::json& dim : *shape) {
    if (!dim.is_number_integer() || dim.get<int64_t>() < 0) {
      return Status::Corruption(at + ": shape: expected non-negative integers, got " + Shown(*shape));
    }
    if (__builtin_mul_overflow(numel, dim.get<uint64_t>(), &numel)) {
      return Status::Corruption(at + ": shape: element count overflows 64 bits");
    }
    entry->shape.push_back(dim.get<int64_t>());
  }
  auto offsets = value.find("data_offsets");
  if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2 ||
      !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
    return Status::Corruption(at + ": data_offsets: expected [begin, end] of non-negative integers, got " +
                              (offsets == value.end() ? std::string("nothing") : Shown(*offsets)));
  }
  entry->begin = (*offsets)[0].get<uint64_t>();
  entry->end = (*offsets)[1].get<uint64_t>();
  if (entry->end < entry->begin) {
    return Status::Corruption(at + ": data_offsets: end " + std::to_string(entry->end) + " < begin " +
                              std::to_string(entry->begin));
  }
  uint64_t expected_bytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_bytes), &expected_bytes) ||
      entry->end - entry->begin != expected_bytes) {
    return Status::Corruption(at + ": data_offsets: [" + std::to_string(entry->begin) + ", " +
                              std::to_string(entry->end) + ") holds " + std::to_string(entry->end - entry->begin) +
                              " bytes but shape " + Shown(*shape) + " of " + entry->dtype + " needs " +
                              std::to_string(numel) + " x " + std::to_string(dtype_bytes));
  }
  return Status::Ok();
}

// An open file written under a temporary name; removed unless committed.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  bool ok() const { return fd_ >= 0; }
  Status Write(const char* data, size_t size) {
    while (size > 0) {
      const ssize_t n = ::write(fd_, data, std::min(size, kWriteChunkBytes));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::IoError(path_ + ": write: " + std::strerror(errno));
      data += n;
      size -= static_cast<size_t>(n);
    }
    return Status::Ok();
  }
  // fsync, close, rename over `target`, fsync the directory.
  Status Commit(const std::string& target) {
    if (::fsync(fd_) != 0) return Status::IoError(path_ + ": fsync: " + std::strerror(errno));
    const int closed = ::close(fd_);
    fd_ = -1;
    if (closed != 0) return Status::IoError(path_ + ": close: " + std::strerror(errno));
    if (std::rename(path_.c_str(), target.c_str()) != 0) {
      return Status::IoError(path_ + ": rename to " + target + ": " + std::strerror(errno));
    }
    committed_ = true;
    std::string dir = std::filesystem::path(target).parent_path().string();
    if (dir.empty()) dir = ".";
    const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) return Status::IoError(dir + ": open for fsync: " + std::strerror(errno));
    const int synced = ::fsync(dir_fd);
    const int saved = errno;
    ::close(dir_fd);
    if (synced != 0) return Status::IoError(dir + ": fsync: " + std::strerror(saved));
    return Status::Ok();
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

Result<SafetensorsHeader> ParseSafetensorsHeader(std::string_view bytes, uint64_t file_size,
                                                 const std::string& source) {
  if (file_size < 8 || bytes.size() < 8) {
    return Status::Corruption(source + ": " + std::to_string(file_size) +
                              " bytes: too short for the 8-byte header length");
  }
  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, bytes.data(), 8);
  if (header_bytes > file_size - 8) {
    return Status::Corruption(source + ": header length " + std::to_string(header_bytes) + " runs past the end of the " +
                              std::to_string(file_size) + "-byte file");
  }
  if (header_bytes > kMaxHeaderBytes) {
    return Status::Corruption(source + ": header length " + std::to_string(header_bytes) + " exceeds the " +
                              std::to_string(kMaxHeaderBytes) + "-byte limit");
  }
  if (bytes.size() < 8 + header_bytes) {
    return Status::InvalidArgument(source + ": only " + std::to_string(bytes.size()) + " of the " +
                                   std::to_string(8 + header_bytes) + " header bytes were given");
  }
  const std::string_view text = bytes.substr(8, header_bytes);
  if (text.empty() || text.front() != '{') {
    return Status::Corruption(source + ": header is not a JSON object (it must start with '{')");
  }
  // nlohmann keeps the last of duplicate keys silently; the callback sees
  // every key of the top-level object, so a repeated name is caught.
  std::set<std::string> names;
  std::string duplicate;
  auto on_event = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 && !names.insert(parsed.get<std::string>()).second &&
        duplicate.empty()) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text.begin(), text.end(), on_event);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for a number like 1e999
    return Status::Corruption(source + ": header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) return Status::Corruption(source + ": header is not a JSON object");
  if (!duplicate.empty()) {
    return Status::Corruption(source + ": tensor \"" + OneLineText(duplicate) + "\" appears twice in the header");
  }

  SafetensorsHeader result;
  result.data_start = 8 + header_bytes;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) return Status::Corruption(source + ": __metadata__: expected an object of strings");
      for (const auto& [key, item] : value.items()) {
        if (!item.is_string()) {
          return Status::Corruption(source + ": __metadata__." + OneLineText(key) + ": expected a string, got " + Shown(item));
        }
        result.metadata[key] = item.get<std::string>();
      }
      continue;
    }
    SafetensorsEntry entry;
    BERT_RETURN_IF_ERROR(ParseEntry(name, value, source, &entry));
    result.entries.push_back(std::move(entry));
  }
  std::sort(result.entries.begin(), result.entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t next = 0;
  for (const SafetensorsEntry& entry : result.entries) {
    if (entry.begin != next) {
      return Status::Corruption(source + ": tensor \"" + OneLineText(entry.name) + "\": data_offsets begin at " +
                                std::to_string(entry.begin) + " but the tensors before it end at " +
                                std::to_string(next) + (entry.begin > next ? " (a gap)" : " (an overlap)"));
    }
    next = entry.end;
  }
  const uint64_t buffer_bytes = file_size - result.data_start;
  if (next != buffer_bytes) {
    return Status::Corruption(source + ": the tensors cover " + std::to_string(next) + " bytes but the data buffer has " +
                              std::to_string(buffer_bytes) +
                              (next > buffer_bytes ? " (data past end of file)" : " (trailing bytes)"));
  }
  return result;
}

Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  // ordered_json: __metadata__ first, then the tensors in data order, as
  // the reference writer lays them out.
  nlohmann::ordered_json header;
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  meta["format"] = "pt";
  for (const auto& [key, value] : metadata) meta[key] = value;
  header["__metadata__"] = meta;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const NamedTensor& tensor : tensors) {
    const std::string at = path + ": tensor \"" + tensor.name + "\"";
    if (tensor.name.empty() || tensor.name == "__metadata__") {
      return Status::InvalidArgument(path + ": invalid tensor name \"" + tensor.name + "\"");
    }
    if (!names.insert(tensor.name).second) return Status::InvalidArgument(at + ": appears twice");
    uint64_t numel = 1;
    for (int64_t dim : tensor.shape) {
      if (dim < 0) return Status::InvalidArgument(at + ": negative dimension " + std::to_string(dim));
      numel *= static_cast<uint64_t>(dim);
    }
    if (numel != tensor.values.size()) {
      return Status::InvalidArgument(at + ": shape holds " + std::to_string(numel) + " elements but " +
                                     std::to_string(tensor.values.size()) + " values were given");
    }
    const bool is_float = tensor.dtype == "F32";
    if (!is_float && tensor.dtype != "I8" && tensor.dtype != "U8") {
      return Status::InvalidArgument(at + ": dtype " + tensor.dtype + " cannot be written (F32, I8 and U8 can)");
    }
    if (!is_float) {
      const float low = tensor.dtype == "I8" ? -128.0f : 0.0f, high = tensor.dtype == "I8" ? 127.0f : 255.0f;
      for (size_t i = 0; i < tensor.values.size(); ++i) {
        const float value = tensor.values[i];
        if (!(value >= low && value <= high) || value != std::nearbyint(value)) {
          return Status::InvalidArgument(at + ": value " + std::to_string(value) + " at index " + std::to_string(i) +
                                         " is not an integer in the range of " + tensor.dtype);
        }
      }
    }
    const uint64_t bytes = (is_float ? 4 : 1) * numel;
    header[tensor.name] = {{"dtype", tensor.dtype}, {"shape", tensor.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  // Pad with spaces so that the buffer starts 8-byte aligned (as the
  // reference writer does; readers may then map tensors in place).
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');
  const uint64_t header_bytes = text.size();
  char length[8];
  std::memcpy(length, &header_bytes, 8);

  TempFile file(path + ".tmp");
  if (!file.ok()) return Status::IoError(path + ".tmp: cannot create: " + std::strerror(errno));
  BERT_RETURN_IF_ERROR(file.Write(length, 8));
  BERT_RETURN_IF_ERROR(file.Write(text.data(), text.size()));
  std::string narrow;
  for (const NamedTensor& tensor : tensors) {
    if (tensor.dtype == "F32") {
      BERT_RETURN_IF_ERROR(
          file.Write(reinterpret_cast<const char*>(tensor.values.data()), tensor.values.size() * sizeof(float)));
      continue;
    }
    narrow.resize(tensor.values.size());
    for (size_t i = 0; i < tensor.values.size(); ++i) {
      narrow[i] = tensor.dtype == "I8" ? static_cast<char>(static_cast<int8_t>(tensor.values[i]))
                                       : static_cast<char>(static_cast<uint8_t>(tensor.values[i]));
    }
    BERT_RETURN_IF_ERROR(file.Write(narrow.data(), narrow.size()));
  }
  return file.Commit(path);
}

Result<std::vector<NamedTensor>> ReadSafetensors(const std::string& path) {
  return ReadSafetensors(path, [](const SafetensorsEntry&) { return true; });
}

Result<std::vector<NamedTensor>> ReadSafetensors(const std::string& path,
                                                 const std::function<bool(const SafetensorsEntry&)>& keep) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError(path + ": cannot open: " + std::strerror(errno));
  std::error_code ec;
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) return Status::IoError(path + ": cannot stat: " + ec.message());
  std::string head(std::min<uint64_t>(file_size, 8), '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  if (file_size >= 8) {
    uint64_t header_bytes = 0;
    std::memcpy(&header_bytes, head.data(), 8);
    // Only read what the file has; the parser reports a length past EOF.
    if (header_bytes <= std::min(file_size - 8, kMaxHeaderBytes)) {
      head.resize(8 + header_bytes);
      in.read(head.data() + 8, static_cast<std::streamsize>(header_bytes));
    }
  }
  if (!in) return Status::IoError(path + ": read failed");
  Result<SafetensorsHeader> header = ParseSafetensorsHeader(head, file_size, path);
  if (!header.ok()) return header.status();

  std::vector<NamedTensor> tensors;
  std::string bytes;
  for (const SafetensorsEntry& entry : header->entries) {
    if (!keep(entry)) continue;
    const uint64_t num_bytes = entry.end - entry.begin;
    const uint64_t numel = num_bytes / static_cast<uint64_t>(DtypeBytes(entry.dtype));
    bytes.resize(num_bytes);
    in.seekg(static_cast<std::streamoff>(header->data_start + entry.begin));
    in.read(bytes.data(), static_cast<std::streamsize>(num_bytes));
    if (!in) return Status::IoError(path + ": tensor \"" + entry.name + "\": read failed");
    NamedTensor tensor;
    tensor.name = entry.name;
    tensor.shape = entry.shape;
    tensor.dtype = entry.dtype;
    BERT_RETURN_IF_ERROR(DecodeValues(entry, bytes.data(), numel, path, &tensor.values));
    tensors.push_back(std::move(tensor));
  }
  return tensors;
}

}  // namespace bert
