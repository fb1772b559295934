// The safetensors format (huggingface/safetensors, "Format" in its README):
//   8 bytes: N, little-endian u64, the header size;
//   N bytes: a UTF-8 JSON object {"name": {"dtype": "F32", "shape": [..],
//            "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}
//            (may be padded with trailing spaces);
//   then the byte buffer: tensors back to back, offsets relative to its start.
// Rules checked on read: N fits in the file, the header is an object, every
// entry has a known dtype, a shape of non-negative ints and offsets with
// end - begin == numel * dtype size, the tensors tile the buffer exactly
// (contiguous, no gaps or overlap) and the buffer ends at end of file.
// We write F32, I8 and U8 (NamedTensor::dtype), tensors in the given order,
// __metadata__ {"format": "pt"} plus the caller's entries. We read F32, F16,
// BF16 and F64 into float, and the integers I8, U8, I16, U16 and I32 (exact
// in a float up to 2^24; larger I32 values are refused), keeping the dtype.
// Thread-safe (no shared state).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace bert {

struct NamedTensor {
  std::string name;            // e.g. "bert.embeddings.word_embeddings.weight"
  std::vector<int64_t> shape;  // row-major
  std::vector<float> values;   // product(shape) elements
  // On write, how the values are stored: "F32", or "I8"/"U8" (each value an
  // integer in the dtype's range, else the write fails naming the tensor).
  // On read, the file's dtype.
  std::string dtype = "F32";
};

struct SafetensorsEntry {
  std::string name;
  std::string dtype;           // "F32", "F16", "BF16", "F64", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0; // byte offsets into the data buffer
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;        // in data-offset order
  std::map<std::string, std::string> metadata;  // __metadata__
  uint64_t data_start = 0;                      // 8 + N: where the buffer begins in the file
};

// Validates a header against a file of `file_size` bytes; `bytes` holds at
// least the first 8 + N bytes of the file. Errors name `source`.
Result<SafetensorsHeader> ParseSafetensorsHeader(std::string_view bytes, uint64_t file_size,
                                                 const std::string& source);

// Writes atomically (temp file, fsync, rename). Names must be unique.
Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                        const std::map<std::string, std::string>& metadata = {});
Result<std::vector<NamedTensor>> ReadSafetensors(const std::string& path);
// Same, decoding only the entries `keep` accepts (in data-offset order); the
// whole header is validated all the same. LoadPretrained uses it to skip
// buffers such as an I64 position_ids.
Result<std::vector<NamedTensor>> ReadSafetensors(const std::string& path,
                                                 const std::function<bool(const SafetensorsEntry&)>& keep);

}  // namespace bert
