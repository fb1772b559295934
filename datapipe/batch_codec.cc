#include "datapipe/batch_codec.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

namespace bert {

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "batch_codec.cc writes and reads little-endian integers with memcpy"
#endif

namespace {

constexpr char kMagic[4] = {'B', 'R', 'T', 'B'};
constexpr size_t kSampleRecordBytes = 8;
constexpr size_t kChecksumOffset = 56;

template <typename T>
void Store(char* p, T value) {
  std::memcpy(p, &value, sizeof(T));
}
template <typename T>
T Load(const char* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

uint64_t Checksum(const char* buffer, size_t size) {
  return XXH3_64bits_withSeed(buffer + kBatchHeaderBytes, size - kBatchHeaderBytes,
                              XXH3_64bits(buffer, kChecksumOffset));
}

Status Bad(const std::string& what) { return Status::Corruption("batch: " + what); }
Status BadSample(size_t i, const std::string& what) {
  return Status::Corruption("batch: sample " + std::to_string(i) + ": " + what);
}

// The consistency rules of the header comment, for one sample.
Status CheckSample(const Batch& batch, size_t i, const TrainingSample& s) {
  const size_t length = s.input_ids.size();
  const bool one_segment = s.segment_b_start == length;  // [CLS] A [SEP] (objective mlm)
  const size_t least = one_segment ? 3 : 5;
  if (length < least || length > 65535) {
    return BadSample(i, "length " + std::to_string(length) + " is not in [" + std::to_string(least) + ", 65535]");
  }
  if (!one_segment && (s.segment_b_start < 3 || s.segment_b_start + 2 > length)) {
    return BadSample(i, "segment B starts at " + std::to_string(s.segment_b_start) + ", outside [3, " +
                            std::to_string(length - 2) + "] (or at the length, for one segment)");
  }
  if (s.input_ids[0] != batch.cls_id || s.input_ids[s.segment_b_start - 1] != batch.sep_id ||
      s.input_ids[length - 1] != batch.sep_id) {
    return BadSample(i, one_segment ? "is not [CLS] A [SEP]" : "is not [CLS] A [SEP] B [SEP]");
  }
  bool any_outside = false;  // branch-free, so that the loop vectorizes
  const uint32_t vocab_size = static_cast<uint32_t>(batch.vocab_size);
  const int32_t* ids = s.input_ids.data();
  for (size_t k = 0; k < length; ++k) any_outside |= static_cast<uint32_t>(ids[k]) >= vocab_size;
  if (any_outside) {
    for (int32_t id : s.input_ids) {
      if (id < 0 || id >= batch.vocab_size) return BadSample(i, "token id " + std::to_string(id) + " is outside the vocabulary");
    }
  }
  if (s.masked_positions.size() != s.masked_labels.size() || s.masked_positions.size() > length) {
    return BadSample(i, "has " + std::to_string(s.masked_positions.size()) + " masked positions and " +
                            std::to_string(s.masked_labels.size()) + " labels");
  }
  for (size_t k = 0; k < s.masked_positions.size(); ++k) {
    const uint32_t pos = s.masked_positions[k];
    if (k > 0 && pos <= s.masked_positions[k - 1]) return BadSample(i, "masked positions are not increasing");
    if (pos == 0 || pos + 1 >= length || pos + 1 == s.segment_b_start) {
      return BadSample(i, "masked position " + std::to_string(pos) + " is [CLS], [SEP] or beyond the sequence");
    }
    const int32_t label = s.masked_labels[k];
    if (label < 0 || label >= batch.vocab_size || label == batch.cls_id || label == batch.sep_id) {
      return BadSample(i, "masked label " + std::to_string(label) + " is outside the vocabulary or special");
    }
  }
  return Status::Ok();
}

// Writes ids as Word (uint16_t or uint32_t) little-endian values, then
// padding up to `row` ids.
// Raw restrict pointers: the char output could otherwise alias the vector's
// own fields, which keeps the compiler from vectorizing the loops.
template <typename Word>
char* StoreRow(char* __restrict p, const int32_t* __restrict ids, size_t n, size_t row, int32_t pad_id) {
  for (size_t k = 0; k < n; ++k) Store<Word>(p + k * sizeof(Word), static_cast<Word>(ids[k]));
  for (size_t k = n; k < row; ++k) Store<Word>(p + k * sizeof(Word), static_cast<Word>(pad_id));
  return p + row * sizeof(Word);
}

// Reads n ids into out; true when the rest of the row is pad_id.
template <typename Word>
bool LoadRow(const char* __restrict p, int32_t* __restrict out, size_t n, size_t row, int32_t pad_id) {
  for (size_t k = 0; k < n; ++k) out[k] = static_cast<int32_t>(Load<Word>(p + k * sizeof(Word)));
  bool padded = true;
  for (size_t k = n; k < row; ++k) padded &= Load<Word>(p + k * sizeof(Word)) == static_cast<Word>(pad_id);
  return padded;
}

void StoreId(char* p, int width, int32_t id) {
  if (width == 2) {
    Store<uint16_t>(p, static_cast<uint16_t>(id));
  } else {
    Store<uint32_t>(p, static_cast<uint32_t>(id));
  }
}
int32_t LoadId(const char* p, int width) {
  return width == 2 ? static_cast<int32_t>(Load<uint16_t>(p)) : static_cast<int32_t>(Load<uint32_t>(p));
}

}  // namespace

Status EncodeBatch(const Batch& batch, const BatchEncodeOptions& options, std::string* out) {
  if (batch.vocab_size <= 0) return Status::InvalidArgument("batch: vocab_size must be positive");
  for (int32_t id : {batch.pad_id, batch.cls_id, batch.sep_id}) {
    if (id < 0 || id >= batch.vocab_size) return Status::InvalidArgument("batch: special id outside the vocabulary");
  }
  const int width = options.id_width != 0 ? options.id_width : (batch.vocab_size <= 65536 ? 2 : 4);
  if ((width != 2 && width != 4) || (width == 2 && batch.vocab_size > 65536)) {
    return Status::InvalidArgument("batch: id width " + std::to_string(width) + " cannot hold the vocabulary");
  }
  if (batch.samples.size() > UINT32_MAX) return Status::InvalidArgument("batch: too many samples");
  size_t longest = 0, num_masked = 0;
  for (size_t i = 0; i < batch.samples.size(); ++i) {
    const TrainingSample& s = batch.samples[i];
    if (s.index != batch.first_index + i) {
      return Status::InvalidArgument("batch: sample " + std::to_string(i) + " has index " + std::to_string(s.index) +
                                     ", expected " + std::to_string(batch.first_index + i));
    }
    Status st = CheckSample(batch, i, s);
    if (!st.ok()) return Status::InvalidArgument(st.message());
    longest = std::max(longest, s.input_ids.size());
    num_masked += s.masked_positions.size();
  }
  const size_t multiple = std::max<uint32_t>(1, options.pad_to_multiple);
  const size_t seq_len = (longest + multiple - 1) / multiple * multiple;
  if (seq_len > 65535) return Status::InvalidArgument("batch: padded length " + std::to_string(seq_len) + " > 65535");
  const size_t rows = batch.samples.size();
  const size_t total =
      kBatchHeaderBytes + rows * kSampleRecordBytes + rows * seq_len * width + num_masked * (2 + width);
  out->resize(total);  // every byte is written below
  char* p = out->data();
  std::memcpy(p, kMagic, 4);
  Store<uint16_t>(p + 4, kBatchFormatVersion);
  Store<uint16_t>(p + 6, static_cast<uint16_t>(width));
  Store<uint32_t>(p + 8, static_cast<uint32_t>(rows));
  Store<uint32_t>(p + 12, static_cast<uint32_t>(seq_len));
  Store<uint32_t>(p + 16, static_cast<uint32_t>(batch.vocab_size));
  Store<uint32_t>(p + 20, static_cast<uint32_t>(batch.pad_id));
  Store<uint32_t>(p + 24, static_cast<uint32_t>(batch.cls_id));
  Store<uint32_t>(p + 28, static_cast<uint32_t>(batch.sep_id));
  Store<uint32_t>(p + 32, static_cast<uint32_t>(num_masked));
  Store<uint32_t>(p + 36, 0);
  Store<uint64_t>(p + 40, batch.epoch);
  Store<uint64_t>(p + 48, batch.first_index);
  char* record = p + kBatchHeaderBytes;
  char* ids = record + rows * kSampleRecordBytes;
  char* positions = ids + rows * seq_len * width;
  char* labels = positions + num_masked * 2;
  for (const TrainingSample& s : batch.samples) {
    Store<uint16_t>(record, static_cast<uint16_t>(s.input_ids.size()));
    Store<uint16_t>(record + 2, static_cast<uint16_t>(s.segment_b_start));
    Store<uint16_t>(record + 4, static_cast<uint16_t>(s.masked_positions.size()));
    record[6] = s.is_random_next ? 1 : 0;
    record[7] = 0;
    record += kSampleRecordBytes;
    ids = width == 2 ? StoreRow<uint16_t>(ids, s.input_ids.data(), s.input_ids.size(), seq_len, batch.pad_id)
                     : StoreRow<uint32_t>(ids, s.input_ids.data(), s.input_ids.size(), seq_len, batch.pad_id);
    for (size_t k = 0; k < s.masked_positions.size(); ++k) {
      Store<uint16_t>(positions, s.masked_positions[k]);
      StoreId(labels, width, s.masked_labels[k]);
      positions += 2;
      labels += width;
    }
  }
  Store<uint64_t>(p + kChecksumOffset, Checksum(p, total));
  return Status::Ok();
}

Result<Batch> DecodeBatch(std::string_view buffer, const BatchDecodeLimits& limits) {
  const char* p = buffer.data();
  if (buffer.size() < kBatchHeaderBytes) {
    return Bad("truncated: " + std::to_string(buffer.size()) + " bytes, shorter than the " +
               std::to_string(kBatchHeaderBytes) + "-byte header");
  }
  if (std::memcmp(p, kMagic, 4) != 0) return Bad("not a batch (bad magic)");
  const uint16_t version = Load<uint16_t>(p + 4);
  if (version != kBatchFormatVersion) {
    return Bad("format version " + std::to_string(version) + " is not supported (this build reads version " +
               std::to_string(kBatchFormatVersion) + ")");
  }
  const uint32_t width = Load<uint16_t>(p + 6);
  const uint32_t rows = Load<uint32_t>(p + 8), seq_len = Load<uint32_t>(p + 12);
  const uint32_t vocab_size = Load<uint32_t>(p + 16), num_masked = Load<uint32_t>(p + 32);
  Batch batch;
  batch.pad_id = static_cast<int32_t>(Load<uint32_t>(p + 20));
  batch.cls_id = static_cast<int32_t>(Load<uint32_t>(p + 24));
  batch.sep_id = static_cast<int32_t>(Load<uint32_t>(p + 28));
  batch.epoch = Load<uint64_t>(p + 40);
  batch.first_index = Load<uint64_t>(p + 48);
  batch.seq_len = seq_len;
  if (width != 2 && width != 4) return Bad("id width " + std::to_string(width) + " is not 2 or 4");
  if (Load<uint32_t>(p + 36) != 0) return Bad("reserved header field is not 0");
  if (vocab_size == 0 || vocab_size > INT32_MAX || (width == 2 && vocab_size > 65536)) {
    return Bad("vocabulary size " + std::to_string(vocab_size) + " does not fit id width " + std::to_string(width));
  }
  batch.vocab_size = static_cast<int32_t>(vocab_size);
  for (uint32_t id : {Load<uint32_t>(p + 20), Load<uint32_t>(p + 24), Load<uint32_t>(p + 28)}) {
    if (id >= vocab_size) return Bad("special token id " + std::to_string(id) + " is outside the vocabulary");
  }
  if (rows > limits.max_samples) {
    return Bad(std::to_string(rows) + " samples exceed the limit of " + std::to_string(limits.max_samples));
  }
  if (seq_len > limits.max_seq_len || seq_len > 65535 || (rows > 0 && seq_len < 5)) {
    return Bad("padded length " + std::to_string(seq_len) + " is not in [5, " +
               std::to_string(std::min<uint32_t>(limits.max_seq_len, 65535)) + "]");
  }
  if (uint64_t{num_masked} > uint64_t{rows} * seq_len) {
    return Bad(std::to_string(num_masked) + " masked positions exceed the batch's tokens");
  }
  // Bounded by the checks above: at most 2^32 * 2^16 * 4 bytes, no overflow.
  const uint64_t expected = kBatchHeaderBytes + uint64_t{rows} * kSampleRecordBytes +
                            uint64_t{rows} * seq_len * width + uint64_t{num_masked} * (2 + width);
  if (expected > limits.max_bytes) {
    return Bad("oversized: " + std::to_string(expected) + " bytes exceed the limit of " +
               std::to_string(limits.max_bytes));
  }
  if (buffer.size() < expected) {
    return Bad("truncated: " + std::to_string(buffer.size()) + " bytes, the header says " + std::to_string(expected));
  }
  if (buffer.size() > expected) {
    return Bad(std::to_string(buffer.size() - expected) + " bytes after the end the header gives");
  }
  if (Load<uint64_t>(p + kChecksumOffset) != Checksum(p, buffer.size())) return Bad("checksum mismatch");

  const char* record = p + kBatchHeaderBytes;
  const char* ids = record + uint64_t{rows} * kSampleRecordBytes;
  const char* positions = ids + uint64_t{rows} * seq_len * width;
  const char* labels = positions + uint64_t{num_masked} * 2;
  uint64_t masked_so_far = 0;
  batch.samples.resize(rows);
  for (uint32_t i = 0; i < rows; ++i, record += kSampleRecordBytes, ids += uint64_t{seq_len} * width) {
    TrainingSample& s = batch.samples[i];
    const uint32_t length = Load<uint16_t>(record), sample_masked = Load<uint16_t>(record + 4);
    const uint8_t nsp = static_cast<uint8_t>(record[6]);
    if (nsp > 1 || record[7] != 0) return BadSample(i, "NSP label or reserved byte is not 0/1 and 0");
    if (length > seq_len) {
      return BadSample(i, "length " + std::to_string(length) + " exceeds the padded length " + std::to_string(seq_len));
    }
    if (masked_so_far + sample_masked > num_masked) return BadSample(i, "more masked positions than the header's total");
    s.index = batch.first_index + i;
    s.is_random_next = nsp == 1;
    s.segment_b_start = Load<uint16_t>(record + 2);
    s.input_ids.resize(length);
    const bool padded = width == 2 ? LoadRow<uint16_t>(ids, s.input_ids.data(), length, seq_len, batch.pad_id)
                                   : LoadRow<uint32_t>(ids, s.input_ids.data(), length, seq_len, batch.pad_id);
    if (!padded) return BadSample(i, "padding is not [PAD]");
    s.masked_positions.resize(sample_masked);
    s.masked_labels.resize(sample_masked);
    for (uint32_t k = 0; k < sample_masked; ++k, ++masked_so_far) {
      s.masked_positions[k] = Load<uint16_t>(positions + masked_so_far * 2);
      s.masked_labels[k] = LoadId(labels + masked_so_far * width, static_cast<int>(width));
    }
    BERT_RETURN_IF_ERROR(CheckSample(batch, i, s));
  }
  if (masked_so_far != num_masked) return Bad("samples hold fewer masked positions than the header's total");
  return batch;
}

void AppendBatchFrame(std::string_view encoded_batch, std::string* stream) {
  char size[8];
  Store<uint64_t>(size, encoded_batch.size());
  stream->append(size, 8);
  stream->append(encoded_batch);
}

Result<std::vector<Batch>> DecodeBatchStream(std::string_view stream, const BatchDecodeLimits& limits) {
  std::vector<Batch> batches;
  while (!stream.empty()) {
    if (stream.size() < 8) return Bad("stream ends inside a frame size");
    const uint64_t size = Load<uint64_t>(stream.data());
    stream.remove_prefix(8);
    if (size > stream.size()) {
      return Bad("frame " + std::to_string(batches.size()) + " is truncated: " + std::to_string(size) +
                 " bytes announced, " + std::to_string(stream.size()) + " left");
    }
    Result<Batch> batch = DecodeBatch(stream.substr(0, size), limits);
    if (!batch.ok()) return Status::Corruption("frame " + std::to_string(batches.size()) + ": " + batch.status().message());
    batches.push_back(std::move(batch).value());
    stream.remove_prefix(size);
  }
  return batches;
}

}  // namespace bert
