// Batch codec: round trips (uint16 and uint32 ids, length bucketing), the
// documented layout, and hostile input: every truncation and extension,
// random buffers, flipped bytes, and re-sealed mutations, which must be
// rejected with a message or decode to exactly what re-encodes to them.
#include "datapipe/batch_codec.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>
#include <random>

#include "datapipe/random.h"
#include "unit/synthetic_corpus.h"

namespace bert {
namespace {

// A consistent batch of n samples of up to max_len tokens.
Batch MakeBatch(std::mt19937_64* rng, size_t n, int32_t vocab_size, size_t max_len = 128) {
  MaskingVocab vocab = testing::SyntheticVocab();
  vocab.vocab_size = vocab_size;
  vocab.is_continuation.resize(vocab_size, 0);
  Batch batch;
  batch.epoch = (*rng)() % 5;
  batch.first_index = (*rng)() % 100000;
  batch.vocab_size = vocab_size;
  batch.pad_id = vocab.pad_id, batch.cls_id = vocab.cls_id, batch.sep_id = vocab.sep_id;
  for (size_t i = 0; i < n; ++i) {
    TrainingSample s;
    s.index = batch.first_index + i;
    const size_t length = 5 + (*rng)() % (max_len - 4);
    const size_t len_a = 1 + (*rng)() % (length - 4);
    s.input_ids.push_back(vocab.cls_id);
    for (size_t k = 0; k < len_a; ++k) s.input_ids.push_back(1000 + static_cast<int32_t>((*rng)() % (vocab_size - 1000)));
    s.input_ids.push_back(vocab.sep_id);
    s.segment_b_start = static_cast<uint32_t>(s.input_ids.size());
    while (s.input_ids.size() < length - 1) s.input_ids.push_back(1000 + static_cast<int32_t>((*rng)() % (vocab_size - 1000)));
    s.input_ids.push_back(vocab.sep_id);
    s.is_random_next = (*rng)() % 2;
    MaskingOptions options;
    ApplyMasking(options, vocab, (*rng)(), &s);
    batch.samples.push_back(std::move(s));
  }
  return batch;
}

std::string Encode(const Batch& batch, uint32_t pad_to_multiple = 1, int id_width = 0) {
  BatchEncodeOptions options;
  options.pad_to_multiple = pad_to_multiple;
  options.id_width = id_width;
  std::string out;
  Status st = EncodeBatch(batch, options, &out);
  EXPECT_TRUE(st.ok()) << st.message();
  return out;
}

// Recomputes the checksum as the header comment defines it.
void Reseal(std::string* buffer) {
  if (buffer->size() < kBatchHeaderBytes) return;
  uint64_t sum = XXH3_64bits_withSeed(buffer->data() + kBatchHeaderBytes, buffer->size() - kBatchHeaderBytes,
                                      XXH3_64bits(buffer->data(), 56));
  std::memcpy(&(*buffer)[56], &sum, 8);
}

template <typename T>
void Put(std::string* buffer, size_t offset, T value) {
  std::memcpy(&(*buffer)[offset], &value, sizeof(T));
}

std::string DecodeError(const std::string& buffer) {
  Result<Batch> r = DecodeBatch(buffer);
  return r.ok() ? "decoded" : r.status().message();
}

TEST(BatchCodecTest, RoundTripsWithBothIdWidthsAndLengthBuckets) {
  std::mt19937_64 rng(1);
  for (int32_t vocab_size : {30522, 250000}) {
    for (uint32_t multiple : {1u, 8u, 64u}) {
      for (size_t n : {0, 1, 13, 100}) {
        Batch batch = MakeBatch(&rng, n, vocab_size);
        std::string encoded = Encode(batch, multiple);
        Result<Batch> back = DecodeBatch(encoded);
        ASSERT_TRUE(back.ok()) << back.status().message();
        EXPECT_TRUE(back->samples == batch.samples);
        EXPECT_EQ(back->epoch, batch.epoch);
        EXPECT_EQ(back->first_index, batch.first_index);
        size_t longest = 0, masked = 0;
        for (const auto& s : batch.samples) longest = std::max(longest, s.input_ids.size()), masked += s.masked_positions.size();
        const size_t seq_len = (longest + multiple - 1) / multiple * multiple;
        EXPECT_EQ(back->seq_len, seq_len);
        const size_t width = vocab_size <= 65536 ? 2 : 4;  // uint16 ids when the vocabulary fits
        EXPECT_EQ(encoded.size(), kBatchHeaderBytes + n * 8 + n * seq_len * width + masked * (2 + width));
      }
    }
  }
}

TEST(BatchCodecTest, LayoutIsTheDocumentedOne) {
  std::mt19937_64 rng(2);
  Batch batch = MakeBatch(&rng, 3, 30522);
  std::string b = Encode(batch);
  EXPECT_EQ(b.substr(0, 4), "BRTB");
  uint16_t version, width;
  uint32_t rows, seq_len, first_length;
  std::memcpy(&version, &b[4], 2);
  std::memcpy(&width, &b[6], 2);
  std::memcpy(&rows, &b[8], 4);
  std::memcpy(&seq_len, &b[12], 4);
  EXPECT_EQ(version, 1);
  EXPECT_EQ(width, 2);
  EXPECT_EQ(rows, 3u);
  first_length = static_cast<uint8_t>(b[64]) | static_cast<uint8_t>(b[65]) << 8;
  EXPECT_EQ(first_length, batch.samples[0].input_ids.size());
  // Row 0 starts with [CLS] (101) and is padded with [PAD] (0) to seq_len.
  const size_t ids = 64 + 3 * 8;
  EXPECT_EQ(static_cast<uint8_t>(b[ids]), 101);
  for (size_t k = first_length; k < seq_len; ++k) EXPECT_EQ(b[ids + 2 * k], 0) << k;
}

TEST(BatchCodecTest, RejectsEveryTruncationAndExtension) {
  std::mt19937_64 rng(3);
  std::string b = Encode(MakeBatch(&rng, 4, 30522, 40));
  for (size_t cut = 0; cut < b.size(); ++cut) {
    std::string message = DecodeError(b.substr(0, cut));
    ASSERT_EQ(message.rfind("batch: ", 0), 0u) << cut << ": " << message;
  }
  EXPECT_NE(DecodeError(b + "x").find("after the end"), std::string::npos);
  EXPECT_NE(DecodeError(b.substr(0, 10)).find("truncated"), std::string::npos);
  EXPECT_NE(DecodeError(b.substr(0, b.size() - 1)).find("truncated"), std::string::npos);
}

TEST(BatchCodecTest, RejectsRandomBuffersAndFlippedBytes) {
  std::mt19937_64 rng(4);
  std::string valid = Encode(MakeBatch(&rng, 3, 30522, 30));
  for (int trial = 0; trial < 20000; ++trial) {
    std::string garbage(rng() % 600, '\0');
    for (char& c : garbage) c = static_cast<char>(rng());
    if (trial % 2 == 0 && garbage.size() >= 8) garbage.replace(0, 8, valid.substr(0, 8));  // get past the magic
    ASSERT_FALSE(DecodeBatch(garbage).ok()) << trial;
  }
  for (size_t pos = 0; pos < valid.size(); ++pos) {
    for (uint8_t flip : {0x01, 0x80, 0xFF}) {
      std::string mutated = valid;
      mutated[pos] = static_cast<char>(mutated[pos] ^ flip);
      ASSERT_FALSE(DecodeBatch(mutated).ok()) << "byte " << pos;
    }
  }
}

TEST(BatchCodecTest, ResealedMutationsAreRejectedOrDecodeToTheirOwnEncoding) {
  std::mt19937_64 rng(5);
  int accepted = 0, rejected = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    int32_t vocab_size = trial % 4 == 0 ? 70000 : 30522;
    Batch batch = MakeBatch(&rng, 1 + rng() % 4, vocab_size, 24);
    std::string mutated = Encode(batch);
    for (int k = 0, n = 1 + static_cast<int>(rng() % 3); k < n; ++k) {
      size_t pos = rng() % mutated.size();
      if (pos >= 56 && pos < 64) continue;  // the checksum itself: covered above
      mutated[pos] = static_cast<char>(rng() % 4 == 0 ? rng() : mutated[pos] ^ (1u << (rng() % 8)));
    }
    Reseal(&mutated);
    Result<Batch> back = DecodeBatch(mutated);
    if (!back.ok()) {
      ++rejected;
      ASSERT_EQ(back.status().message().rfind("batch: ", 0), 0u);
      continue;
    }
    ++accepted;
    // Accepted bytes are canonical: the decoded batch encodes to exactly them.
    uint16_t width;
    std::memcpy(&width, &mutated[6], 2);
    ASSERT_EQ(Encode(*back, back->seq_len, width), mutated) << "trial " << trial;
  }
  EXPECT_GT(rejected, 1000);
  EXPECT_GT(accepted, 100);  // e.g. a changed id, epoch or NSP label is still a valid batch
}

TEST(BatchCodecTest, InconsistentFieldsAreRejectedWithAMessage) {
  std::mt19937_64 rng(6);
  Batch batch;
  do {
    batch = MakeBatch(&rng, 2, 30522, 20);
  } while (batch.samples[1].input_ids.size() < 10);
  batch.samples[0].input_ids.resize(4);  // make sample 0 the shorter one, with padding
  batch.samples[0].input_ids.push_back(102);
  batch.samples[0].segment_b_start = 3;
  batch.samples[0].input_ids[2] = 102;
  batch.samples[0].masked_positions = {1};
  batch.samples[0].masked_labels = {1234};
  const std::string valid = Encode(batch);
  Result<Batch> ok = DecodeBatch(valid);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  const uint32_t seq_len = ok->seq_len;
  ASSERT_GT(seq_len, 5u);
  const size_t ids = 64 + 2 * 8;
  const size_t positions = ids + 2 * seq_len * 2;
  auto check = [&](const char* what, auto mutate, const char* expected) {
    std::string b = valid;
    mutate(&b);
    Reseal(&b);
    std::string message = DecodeError(b);
    EXPECT_NE(message.find(expected), std::string::npos) << what << ": " << message;
  };
  check("magic", [](std::string* b) { (*b)[0] = 'X'; }, "bad magic");
  check("version", [](std::string* b) { Put<uint16_t>(b, 4, 2); }, "format version 2 is not supported");
  check("width", [](std::string* b) { Put<uint16_t>(b, 6, 3); }, "id width 3");
  check("samples", [](std::string* b) { Put<uint32_t>(b, 8, 1u << 20); }, "exceed the limit");
  check("huge", [](std::string* b) { Put<uint32_t>(b, 8, 60000), Put<uint32_t>(b, 12, 60000); }, "oversized");
  check("pad id", [](std::string* b) { Put<uint32_t>(b, 20, 40000); }, "outside the vocabulary");
  check("length", [](std::string* b) { Put<uint16_t>(b, 64, 60000); }, "exceeds the padded length");
  check("nsp", [](std::string* b) { (*b)[64 + 6] = 2; }, "NSP");
  check("segment", [](std::string* b) { Put<uint16_t>(b, 64 + 2, 1); }, "segment B starts at 1");
  check("padding", [&](std::string* b) { Put<uint16_t>(b, ids + 2 * (seq_len - 1), 7); }, "padding is not [PAD]");
  check("cls", [&](std::string* b) { Put<uint16_t>(b, ids, 7); }, "[CLS] A [SEP] B [SEP]");
  check("token", [&](std::string* b) { Put<uint16_t>(b, ids + 2, 40000); }, "token id 40000");
  check("position", [&](std::string* b) { Put<uint16_t>(b, positions, 0); }, "masked position 0");
  check("masked", [](std::string* b) { Put<uint16_t>(b, 64 + 4, 9); }, "masked positions");
  check("checksum", [](std::string* b) {}, "decoded");
  std::string unsealed = valid;
  unsealed[ids + 2] ^= 1;
  EXPECT_NE(DecodeError(unsealed).find("checksum mismatch"), std::string::npos);
}

TEST(BatchCodecTest, EncodeRefusesInconsistentSamples) {
  std::mt19937_64 rng(7);
  std::string out;
  Batch batch = MakeBatch(&rng, 3, 30522);
  batch.samples[1].index += 1;
  EXPECT_NE(EncodeBatch(batch, {}, &out).message().find("has index"), std::string::npos);
  batch = MakeBatch(&rng, 3, 30522);
  batch.samples[2].masked_positions = {static_cast<uint16_t>(batch.samples[2].segment_b_start - 1)};
  batch.samples[2].masked_labels = {2000};
  EXPECT_FALSE(EncodeBatch(batch, {}, &out).ok());
  batch = MakeBatch(&rng, 3, 70000);
  BatchEncodeOptions narrow;
  narrow.id_width = 2;
  EXPECT_FALSE(EncodeBatch(batch, narrow, &out).ok());
}

TEST(BatchCodecTest, StreamsOfFramesRoundTripAndRejectTruncation) {
  std::mt19937_64 rng(8);
  std::string stream;
  std::vector<Batch> batches;
  for (int i = 0; i < 5; ++i) {
    batches.push_back(MakeBatch(&rng, 1 + i, 30522));
    AppendBatchFrame(Encode(batches.back()), &stream);
  }
  auto back = DecodeBatchStream(stream);
  ASSERT_TRUE(back.ok()) << back.status().message();
  ASSERT_EQ(back->size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE((*back)[i].samples == batches[i].samples);
  for (size_t cut : {stream.size() - 1, stream.size() - 100, size_t{3}}) {
    EXPECT_FALSE(DecodeBatchStream(stream.substr(0, cut)).ok()) << cut;
  }
}

}  // namespace
}  // namespace bert
