// libFuzzer target: the safetensors header (interop/safetensors.h,
// ParseSafetensorsHeader) and, for a header that validates, the whole file
// through ReadSafetensors. Properties: nothing crashes or allocates without
// bound; an error is one line naming the file; an accepted header's entries
// tile [0, file_size - data_start) exactly, as the header comment promises.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fuzz_util.h"
#include "interop/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes = bert::fuzz::AsView(data, size);
  bert::Result<bert::SafetensorsHeader> header = bert::ParseSafetensorsHeader(bytes, size, "fuzz.safetensors");
  if (!header.ok()) {
    const std::string& message = header.status().message();
    FUZZ_CHECK(message.rfind("fuzz.safetensors", 0) == 0, "error not naming the file: " + message);
    FUZZ_CHECK(message.find('\n') == std::string::npos, "multi-line error: " + message);
    return 0;
  }
  uint64_t next = 0;
  for (const bert::SafetensorsEntry& entry : header->entries) {
    FUZZ_CHECK(entry.begin == next && entry.end >= entry.begin, "entries do not tile the buffer: " + entry.name);
    next = entry.end;
  }
  FUZZ_CHECK(header->data_start + next == size, "the buffer does not end at end of file");

  static bert::fuzz::ScratchFile file(".safetensors");
  bert::Result<std::vector<bert::NamedTensor>> tensors = bert::ReadSafetensors(file.Write(bytes));
  if (tensors.ok()) {
    for (const bert::NamedTensor& tensor : *tensors) {
      uint64_t numel = 1;
      for (int64_t dim : tensor.shape) numel *= static_cast<uint64_t>(dim);
      FUZZ_CHECK(numel == tensor.values.size(), "tensor size differs from its shape: " + tensor.name);
    }
  } else {
    FUZZ_CHECK(tensors.status().message().find('\n') == std::string::npos, tensors.status().message());
  }
  return 0;
}
