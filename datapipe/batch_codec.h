// Batch codec: the binary layout of a batch of training samples, as sent
// from the coordinator to workers over ZeroMQ and written by
// `bertctl samples --format binary`.
//
// Version 1 layout, all integers little-endian:
//
//   offset size  field
//        0    4  magic "BRTB"
//        4    2  version (1)
//        6    2  id_width: 2 (uint16 ids, when vocab_size <= 65536) or 4
//        8    4  num_samples
//       12    4  seq_len: padded length of every row (>= each sample's length;
//                the longest one, or that rounded up to a bucket multiple)
//       16    4  vocab_size: every id and label is below it
//       20    4  pad_id, 24 cls_id, 28 sep_id
//       32    4  num_masked: masked positions over all samples
//       36    4  reserved, 0
//       40    8  epoch
//       48    8  first_index: global sample index of sample 0 (the rest follow)
//       56    8  checksum: XXH3-64 of bytes [64, end) seeded with XXH3-64 of bytes [0, 56)
//       64       per sample, 8 bytes: u16 length, u16 segment_b_start,
//                u16 num_masked, u8 is_random_next, u8 reserved (0)
//                input ids: num_samples x seq_len ids (id_width bytes each),
//                row-major, padded with pad_id ("lengths instead of masks")
//                masked positions: num_masked x u16, per sample in order
//                masked labels: num_masked x id_width
//
// Token types are not sent: 0 before segment_b_start, 1 from it on.
// A sample is consistent when 5 <= length <= seq_len, [CLS] A [SEP] B [SEP]
// hold cls_id/sep_id at 0, segment_b_start - 1 and length - 1 with A and B
// non-empty, masked positions are strictly increasing and avoid those three
// positions, and labels are non-special ids < vocab_size. A one-segment
// sample (objective mlm) has segment_b_start == length >= 3: [CLS] A [SEP]
// (a packed A may hold more [SEP]s, between documents).
//
// DecodeBatch checks all of this, plus the exact size and the checksum, and
// is safe on hostile input: it never reads out of bounds and allocates only
// after the size is verified against the limits. Errors are one line
// starting with "batch: ". Both functions are pure and thread-safe.
// Requires a little-endian host (checked at compile time).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "datapipe/training_sample.h"

namespace bert {

constexpr uint16_t kBatchFormatVersion = 1;
constexpr size_t kBatchHeaderBytes = 64;

struct Batch {
  uint64_t epoch = 0;
  uint64_t first_index = 0;  // samples[i].index == first_index + i
  int32_t vocab_size = 0;
  int32_t pad_id = 0, cls_id = 0, sep_id = 0;
  uint32_t seq_len = 0;      // padded row length: set by DecodeBatch; EncodeBatch computes its own
  std::vector<TrainingSample> samples;
};

struct BatchEncodeOptions {
  // Length bucketing: the padded length is the longest sample rounded up to
  // a multiple of this (1: exactly the longest), so that workers see few
  // distinct shapes.
  uint32_t pad_to_multiple = 1;
  // 2 or 4 bytes per id; 0 picks 2 when the vocabulary fits.
  int id_width = 0;
};

struct BatchDecodeLimits {
  uint64_t max_bytes = uint64_t{1} << 30;
  uint32_t max_samples = 1u << 16;
  uint32_t max_seq_len = 65535;
};

// Fails (InvalidArgument, naming the sample) on an inconsistent batch.
Status EncodeBatch(const Batch& batch, const BatchEncodeOptions& options, std::string* out);
Result<Batch> DecodeBatch(std::string_view buffer, const BatchDecodeLimits& limits = BatchDecodeLimits());

// A stream of batches (a file): each one preceded by its size as u64 LE.
void AppendBatchFrame(std::string_view encoded_batch, std::string* stream);
Result<std::vector<Batch>> DecodeBatchStream(std::string_view stream,
                                             const BatchDecodeLimits& limits = BatchDecodeLimits());

}  // namespace bert
