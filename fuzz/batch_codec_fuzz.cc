// libFuzzer target: the batch codec (datapipe/batch_codec.h), as a worker
// decodes a payload frame and `bertctl samples` reads a batch stream.
// Properties: nothing crashes or reads out of bounds; errors are one line
// starting with "batch: "; a decoded batch re-encodes, and that encoding
// decodes to the same batch (decode . encode is the identity on decoded batches).
// The input is decoded as given and again with its checksum field fixed up,
// so that mutations get past the checksum to the field checks behind it.
#include <cstddef>
#include <cstdint>
#include <string>

#include <xxhash.h>

#include <cstring>

#include "datapipe/batch_codec.h"
#include "fuzz/fuzz_util.h"

namespace {

// Small limits keep each run fast; the checks are the same.
bert::BatchDecodeLimits FuzzLimits() {
  bert::BatchDecodeLimits limits;
  limits.max_bytes = 1 << 20;
  limits.max_samples = 1024;
  limits.max_seq_len = 4096;
  return limits;
}

void CheckError(const bert::Status& status) {
  const std::string& message = status.message();
  FUZZ_CHECK(message.rfind("batch: ", 0) == 0 || message.rfind("batch stream", 0) == 0,
             "error not naming the batch: " + message);
  FUZZ_CHECK(message.find('\n') == std::string::npos, "multi-line error: " + message);
}

void CheckRoundTrip(const bert::Batch& batch) {
  for (int id_width : {0, 4}) {
    bert::BatchEncodeOptions options;
    options.id_width = id_width;
    std::string encoded;
    const bert::Status status = bert::EncodeBatch(batch, options, &encoded);
    FUZZ_CHECK(status.ok(), "a decoded batch does not re-encode: " + status.message());
    bert::Result<bert::Batch> again = bert::DecodeBatch(encoded);
    FUZZ_CHECK(again.ok(), "a re-encoded batch does not decode: " + again.status().message());
    FUZZ_CHECK(again->samples == batch.samples, "samples changed in the round trip");
    FUZZ_CHECK(again->epoch == batch.epoch && again->first_index == batch.first_index &&
                   again->vocab_size == batch.vocab_size && again->pad_id == batch.pad_id &&
                   again->cls_id == batch.cls_id && again->sep_id == batch.sep_id,
               "header fields changed in the round trip");
  }
}

// The input with bytes [56, 64) set to the checksum the header defines.
std::string WithValidChecksum(std::string_view input) {
  std::string fixed(input);
  if (fixed.size() < bert::kBatchHeaderBytes) return fixed;
  const uint64_t seed = XXH3_64bits(fixed.data(), 56);
  const uint64_t checksum = XXH3_64bits_withSeed(fixed.data() + bert::kBatchHeaderBytes,
                                                 fixed.size() - bert::kBatchHeaderBytes, seed);
  std::memcpy(&fixed[56], &checksum, sizeof(checksum));
  return fixed;
}

void DecodeOne(std::string_view input) {
  bert::Result<bert::Batch> batch = bert::DecodeBatch(input, FuzzLimits());
  if (batch.ok()) {
    CheckRoundTrip(*batch);
  } else {
    CheckError(batch.status());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = bert::fuzz::AsView(data, size);
  DecodeOne(input);
  DecodeOne(WithValidChecksum(input));
  bert::Result<std::vector<bert::Batch>> stream = bert::DecodeBatchStream(input, FuzzLimits());
  if (!stream.ok()) {
    FUZZ_CHECK(stream.status().message().find('\n') == std::string::npos,
               "multi-line error: " + stream.status().message());
  }
  return 0;
}
