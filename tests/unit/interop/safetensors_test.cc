// safetensors (interop/safetensors.h): the exact bytes we write, checked by
// hand against the format description; round trips; every violation of the
// format rejected with an error naming the file and the tensor or field;
// F16/BF16/F64 decoding; and an independent Python reader
// (tests/reference/safetensors_ref.py) agreeing with what we wrote.
#include "interop/safetensors.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <sstream>

#include "common/file_util.h"
#include "test_util.h"

namespace bert {
namespace {

using testing::TempDir;

std::string Le64(uint64_t value) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return out;
}

// A file from its header text and data bytes; `length` overrides N.
std::string MakeFile(const std::string& header, const std::string& data, int64_t length = -1) {
  return Le64(length < 0 ? header.size() : static_cast<uint64_t>(length)) + header + data;
}

std::string FloatBytes(std::initializer_list<float> values) {
  std::string out;
  for (float value : values) {
    uint32_t bits;
    std::memcpy(&bits, &value, 4);
    for (int i = 0; i < 4; ++i) out += static_cast<char>((bits >> (8 * i)) & 0xff);
  }
  return out;
}

TEST(Safetensors, WritesTheExactBytesTheFormatDescribes) {
  TempDir dir;
  const std::string path = dir / "small.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, {{"w", {2, 3}, {0, 1, 2, 3, 4, 5}}, {"b", {2}, {-1.0f, 0.5f}}},
                               {{"step", "7"}})
                  .ok());
  Result<std::string> bytes = ReadFile(path);
  ASSERT_TRUE(bytes.ok());
  // The header, by hand: __metadata__ first with format "pt", then the
  // tensors in the order given, offsets contiguous from 0.
  const std::string json =
      R"({"__metadata__":{"format":"pt","step":"7"},)"
      R"("w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[24,32]}})";
  const size_t padded = json.size() + (8 - (8 + json.size()) % 8) % 8;  // buffer 8-byte aligned
  ASSERT_EQ(bytes->size(), 8 + padded + 32);
  EXPECT_EQ(bytes->substr(0, 8), Le64(padded));  // N, little-endian u64
  EXPECT_EQ(bytes->substr(8, json.size()), json);
  EXPECT_EQ(bytes->substr(8 + json.size(), padded - json.size()), std::string(padded - json.size(), ' '));
  // 1.0f is 0x3f800000, stored low byte first; -1.0f is 0xbf800000, 0.5f 0x3f000000.
  const std::string data = bytes->substr(8 + padded);
  EXPECT_EQ(data.substr(4, 4), std::string("\x00\x00\x80\x3f", 4));
  EXPECT_EQ(data.substr(24, 8), std::string("\x00\x00\x80\xbf\x00\x00\x00\x3f", 8));
  EXPECT_EQ(data, FloatBytes({0, 1, 2, 3, 4, 5, -1.0f, 0.5f}));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(Safetensors, RoundTripsValuesShapesAndMetadata) {
  TempDir dir;
  const std::string path = dir / "model.safetensors";
  std::vector<NamedTensor> tensors = {
      {"bert.embeddings.word_embeddings.weight", {3, 2}, {1.5f, -2.25f, 3e-8f, -0.0f, 65504.0f, 1e30f}},
      {"empty", {0, 4}, {}},
      {"scalar", {}, {42.0f}},
      {"nan_and_inf", {2}, {std::numeric_limits<float>::infinity(), std::nanf("")}}};
  ASSERT_TRUE(WriteSafetensors(path, tensors, {{"origin", "test"}}).ok());
  Result<std::vector<NamedTensor>> read = ReadSafetensors(path);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ((*read)[i].name, tensors[i].name);
    EXPECT_EQ((*read)[i].shape, tensors[i].shape);
    ASSERT_EQ((*read)[i].values.size(), tensors[i].values.size());
    // Bit for bit, NaN and -0 included. An empty tensor's data() may be null,
    // which memcmp must not get even for 0 bytes (UBSan).
    if (tensors[i].values.empty()) continue;
    EXPECT_EQ(0, std::memcmp((*read)[i].values.data(), tensors[i].values.data(), 4 * tensors[i].values.size()))
        << tensors[i].name;
  }
  Result<std::string> bytes = ReadFile(path);
  Result<SafetensorsHeader> header = ParseSafetensorsHeader(*bytes, bytes->size(), path);
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(header->metadata.at("format"), "pt");
  EXPECT_EQ(header->metadata.at("origin"), "test");
  EXPECT_EQ(header->data_start % 8, 0u);
}

TEST(Safetensors, AcceptsAHeaderPaddedWithSpacesAndEntriesOutOfOffsetOrder) {
  TempDir dir;
  const std::string path = dir / "hand.safetensors";
  const std::string header = R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                             R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}     )";
  testing::WriteText(path, MakeFile(header, FloatBytes({1.0f, 2.0f})));
  Result<std::vector<NamedTensor>> read = ReadSafetensors(path);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->size(), 2u);
  EXPECT_EQ((*read)[0].name, "a");  // data-offset order
  EXPECT_EQ((*read)[0].values, std::vector<float>({1.0f}));
  EXPECT_EQ((*read)[1].values, std::vector<float>({2.0f}));
}

struct Violation {
  const char* what;
  std::string file;      // the whole file
  const char* expected;  // a part of the one-line error
};

TEST(Safetensors, RejectsEveryViolationWithAnErrorNamingFileAndField) {
  const std::string one = FloatBytes({1.0f});
  const std::string entry_a = R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  const std::vector<Violation> cases = {
      {"truncated", std::string("\x10\x00\x00", 3), "too short for the 8-byte header length"},
      {"header length past EOF", MakeFile("{" + entry_a + "}", one, 1000), "header length 1000 runs past the end"},
      {"header not an object", MakeFile("[1,2]", ""), "not a JSON object"},
      {"invalid JSON", MakeFile(R"({"a":{"dtype":)", ""), "not valid JSON"},
      {"trailing garbage after JSON", MakeFile("{" + entry_a + "}x", one), "not valid JSON"},
      {"unknown dtype", MakeFile(R"({"a":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}})", one),
       "tensor \"a\": dtype: unknown dtype \"F12\""},
      {"negative dimension", MakeFile(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", one),
       "tensor \"a\": shape"},
      {"offsets not matching shape", MakeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", one),
       "tensor \"a\": data_offsets: [0, 4) holds 4 bytes but shape [2] of F32 needs 2 x 4"},
      {"offsets end before begin", MakeFile(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", one),
       "tensor \"a\": data_offsets: end 0 < begin 4"},
      {"missing offsets", MakeFile(R"({"a":{"dtype":"F32","shape":[1]}})", one), "tensor \"a\": data_offsets"},
      {"unknown field", MakeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", one),
       "tensor \"a\": unknown field \"x\""},
      {"gap", MakeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", one + one),
       "tensor \"a\": data_offsets begin at 4 but the tensors before it end at 0 (a gap)"},
      {"overlap",
       MakeFile("{" + entry_a + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", one + one),
       "(an overlap)"},
      {"data past EOF", MakeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", one),
       "the tensors cover 8 bytes but the data buffer has 4 (data past end of file)"},
      {"trailing bytes", MakeFile("{" + entry_a + "}", one + "xy"),
       "the tensors cover 4 bytes but the data buffer has 6 (trailing bytes)"},
      {"duplicate names", MakeFile("{" + entry_a + "," + entry_a + "}", one), "tensor \"a\" appears twice"},
      {"metadata not strings", MakeFile(R"({"__metadata__":{"format":1}})", ""),
       "__metadata__.format: expected a string"},
      {"entry not an object", MakeFile(R"({"a":[1]})", ""), "tensor \"a\": expected an object"},
  };
  TempDir dir;
  for (const Violation& c : cases) {
    const std::string path = dir / "bad.safetensors";
    testing::WriteText(path, c.file);
    Result<std::vector<NamedTensor>> read = ReadSafetensors(path);
    ASSERT_FALSE(read.ok()) << c.what;
    const std::string& message = read.status().message();
    EXPECT_NE(message.find(path), std::string::npos) << c.what << ": " << message;
    EXPECT_NE(message.find(c.expected), std::string::npos) << c.what << ": " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << c.what << ": one line";
  }
}

TEST(Safetensors, DecodesF16Bf16AndF64IntoFloat) {
  TempDir dir;
  const std::string path = dir / "halves.safetensors";
  // F16: 1, -2, 65504 (largest), 2^-24 (smallest subnormal), inf, -0.
  const uint16_t f16[] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x8000};
  // BF16: the top half of the float32 bits: 1, -3.140625, 2^-126.
  const uint16_t bf16[] = {0x3f80, 0xc049, 0x0080};
  const double f64[] = {0.1, -1e10};
  std::string data(reinterpret_cast<const char*>(f16), sizeof(f16));
  data.append(reinterpret_cast<const char*>(bf16), sizeof(bf16));
  data.append(reinterpret_cast<const char*>(f64), sizeof(f64));
  const std::string header = R"({"h":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]},)"
                             R"("bf":{"dtype":"BF16","shape":[3],"data_offsets":[12,18]},)"
                             R"("d":{"dtype":"F64","shape":[2],"data_offsets":[18,34]}})";
  testing::WriteText(path, MakeFile(header, data));
  Result<std::vector<NamedTensor>> read = ReadSafetensors(path);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->size(), 3u);
  const std::vector<float>& h = (*read)[0].values;
  EXPECT_EQ((*read)[0].shape, std::vector<int64_t>({2, 3}));
  EXPECT_EQ(h[0], 1.0f);
  EXPECT_EQ(h[1], -2.0f);
  EXPECT_EQ(h[2], 65504.0f);
  EXPECT_EQ(h[3], std::ldexp(1.0f, -24));
  EXPECT_EQ(h[4], std::numeric_limits<float>::infinity());
  EXPECT_TRUE(h[5] == 0.0f && std::signbit(h[5]));
  EXPECT_EQ((*read)[1].values, std::vector<float>({1.0f, -3.140625f, std::ldexp(1.0f, -126)}));
  EXPECT_EQ((*read)[2].values, std::vector<float>({0.1f, -1e10f}));
}

TEST(Safetensors, IntegerTensorsAreAnErrorUnlessSkipped) {
  TempDir dir;
  const std::string path = dir / "ids.safetensors";
  const int64_t ids[] = {0, 1};
  const std::string header = R"({"position_ids":{"dtype":"I64","shape":[1,2],"data_offsets":[0,16]},)"
                             R"("w":{"dtype":"F32","shape":[1],"data_offsets":[16,20]}})";
  testing::WriteText(path, MakeFile(header, std::string(reinterpret_cast<const char*>(ids), 16) + FloatBytes({3})));
  Result<std::vector<NamedTensor>> all = ReadSafetensors(path);
  ASSERT_FALSE(all.ok());
  EXPECT_NE(all.status().message().find("tensor \"position_ids\": dtype I64 cannot be read as float"),
            std::string::npos)
      << all.status().message();
  Result<std::vector<NamedTensor>> floats =
      ReadSafetensors(path, [](const SafetensorsEntry& entry) { return entry.dtype != "I64"; });
  ASSERT_TRUE(floats.ok()) << floats.status().ToString();
  ASSERT_EQ(floats->size(), 1u);
  EXPECT_EQ((*floats)[0].values, std::vector<float>({3.0f}));
}

// Int8 models (bertctl quantize) store I8 weights and U8 zero points; they
// read back exactly, as does I32, with the dtype kept.
TEST(Safetensors, RoundTripsI8AndU8AndReadsI32Exactly) {
  TempDir dir;
  const std::string path = dir / "int8.safetensors";
  NamedTensor weight{"w", {2, 2}, {-128, -1, 0, 127}, "I8"};
  NamedTensor zero{"z", {3}, {0, 128, 255}, "U8"};
  NamedTensor scale{"s", {2}, {0.5f, 0.25f}};
  ASSERT_TRUE(WriteSafetensors(path, {weight, zero, scale}).ok());
  Result<std::vector<NamedTensor>> read = ReadSafetensors(path);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->size(), 3u);
  EXPECT_EQ((*read)[0].dtype, "I8");
  EXPECT_EQ((*read)[0].values, weight.values);
  EXPECT_EQ((*read)[1].dtype, "U8");
  EXPECT_EQ((*read)[1].values, zero.values);
  EXPECT_EQ((*read)[2].dtype, "F32");
  EXPECT_EQ((*read)[2].values, scale.values);
  // One byte per element: 4 + 3 bytes of integers, then 8 of floats.
  Result<std::string> bytes = ReadFile(path);
  ASSERT_TRUE(bytes.ok());
  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, bytes->data(), 8);
  EXPECT_EQ(bytes->size(), 8 + header_bytes + 4 + 3 + 8);

  for (const NamedTensor& bad : {NamedTensor{"w", {1}, {128}, "I8"}, NamedTensor{"w", {1}, {-1}, "U8"},
                                 NamedTensor{"w", {1}, {0.5f}, "I8"}, NamedTensor{"w", {1}, {1}, "I64"}}) {
    Status status = WriteSafetensors(dir / "bad.safetensors", {bad});
    EXPECT_EQ(status.code(), Status::Code::kInvalidArgument) << bad.dtype;
    EXPECT_NE(status.message().find("tensor \"w\""), std::string::npos) << status.message();
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "bad.safetensors"));

  const std::string i32_path = dir / "i32.safetensors";
  const int32_t ints[] = {-7, 1 << 24};
  testing::WriteText(i32_path, MakeFile(R"({"i":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})",
                                        std::string(reinterpret_cast<const char*>(ints), 8)));
  Result<std::vector<NamedTensor>> i32 = ReadSafetensors(i32_path);
  ASSERT_TRUE(i32.ok()) << i32.status().ToString();
  EXPECT_EQ((*i32)[0].values, std::vector<float>({-7.0f, 16777216.0f}));
  const int32_t too_big[] = {(1 << 24) + 1};
  testing::WriteText(i32_path, MakeFile(R"({"i":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})",
                                        std::string(reinterpret_cast<const char*>(too_big), 4)));
  Result<std::vector<NamedTensor>> inexact = ReadSafetensors(i32_path);
  ASSERT_FALSE(inexact.ok());
  EXPECT_NE(inexact.status().message().find("not exact as a float"), std::string::npos)
      << inexact.status().message();
}

TEST(Safetensors, BadWritesLeaveNoFileBehind) {
  TempDir dir;
  const std::string path = dir / "out.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, {{"a", {1}, {1.0f}}}).ok());
  Status duplicate = WriteSafetensors(path, {{"a", {1}, {1.0f}}, {"a", {1}, {2.0f}}});
  EXPECT_FALSE(duplicate.ok());
  EXPECT_NE(duplicate.message().find("tensor \"a\": appears twice"), std::string::npos) << duplicate.message();
  Status count = WriteSafetensors(path, {{"a", {2, 2}, {1.0f}}});
  EXPECT_NE(count.message().find("shape holds 4 elements but 1 values"), std::string::npos) << count.message();
  // The earlier good file is untouched and no temporary is left.
  Result<std::vector<NamedTensor>> read = ReadSafetensors(path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ((*read)[0].values, std::vector<float>({1.0f}));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  Status no_dir = WriteSafetensors(dir / "missing/out.safetensors", {{"a", {1}, {1.0f}}});
  EXPECT_EQ(no_dir.code(), Status::Code::kIoError);
  EXPECT_NE(no_dir.message().find("missing/out.safetensors.tmp"), std::string::npos) << no_dir.message();
}

TEST(Safetensors, AnIndependentPythonReaderAgreesWithWhatWeWrote) {
  TempDir dir;
  const std::string path = dir / "model.safetensors";
  std::vector<NamedTensor> tensors;
  uint32_t state = 12345;
  for (int t = 0; t < 5; ++t) {
    NamedTensor tensor{"layer." + std::to_string(t) + ".weight", {t + 1, 3}, {}};
    for (int i = 0; i < 3 * (t + 1); ++i) {
      state = state * 1664525u + 1013904223u;
      tensor.values.push_back(static_cast<float>(static_cast<int32_t>(state)) / 1e9f);
    }
    tensors.push_back(tensor);
  }
  ASSERT_TRUE(WriteSafetensors(path, tensors, {{"source", "bert"}}).ok());
  testing::CommandResult run =
      testing::RunCommand("python3 " + std::string(BERT_SOURCE_DIR) + "/tests/reference/safetensors_ref.py " + path);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  std::istringstream lines(run.output);
  std::string line;
  for (const NamedTensor& tensor : tensors) {
    ASSERT_TRUE(std::getline(lines, line));
    std::istringstream fields(line);
    std::string name, dtype, shape, crc, sum;
    std::getline(fields, name, '\t');
    std::getline(fields, dtype, '\t');
    std::getline(fields, shape, '\t');
    std::getline(fields, crc, '\t');
    std::getline(fields, sum, '\t');
    EXPECT_EQ(name, tensor.name);
    EXPECT_EQ(dtype, "F32");
    EXPECT_EQ(shape, std::to_string(tensor.shape[0]) + "," + std::to_string(tensor.shape[1]));
    const uLong our_crc = crc32(0L, reinterpret_cast<const Bytef*>(tensor.values.data()),
                                static_cast<uInt>(4 * tensor.values.size()));
    char hex[16];
    std::snprintf(hex, sizeof(hex), "%08lx", our_crc);
    EXPECT_EQ(crc, hex) << name;
    double our_sum = 0;  // the same additions in the same order: the same double
    for (float value : tensor.values) our_sum += value;
    EXPECT_EQ(std::stod(sum), our_sum) << name;
  }
  ASSERT_TRUE(std::getline(lines, line));
  EXPECT_EQ(line, R"(metadata	{"format": "pt", "source": "bert"})");
}

}  // namespace
}  // namespace bert
