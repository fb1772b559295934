// Regression tests for what fuzz/safetensors_fuzz and fuzz/manifest_fuzz
// found: a JSON number too large for a double ("1e999") made nlohmann::json
// throw out_of_range (not parse_error, the only exception caught), so a
// corrupt header or manifest killed the process through std::terminate
// instead of giving an error (and, for a manifest, a fallback).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>

#include "checkpoint/checkpoint.h"
#include "common/file_util.h"
#include "interop/safetensors.h"
#include "test_util.h"

namespace bert {
namespace {

TEST(FuzzRegressionTest, SafetensorsHeaderWithAnOverflowingNumberIsAnError) {
  const std::string header = R"({"a": {"dtype": 555555e555555, "shape": [1], "data_offsets": [0, 4]}})";
  std::string file(8, '\0');
  const uint64_t header_bytes = header.size();
  std::memcpy(file.data(), &header_bytes, 8);
  file += header + std::string(4, '\0');
  Result<SafetensorsHeader> parsed = ParseSafetensorsHeader(file, file.size(), "model.safetensors");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().message().rfind("model.safetensors: header is not valid JSON: ", 0), 0u)
      << parsed.status().message();
}

// safetensors_fuzz: a tensor name holding a newline was quoted raw in errors.
TEST(FuzzRegressionTest, SafetensorsTensorNameWithANewlineGivesAOneLineError) {
  const std::string header = R"({"a.n\nn": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "format": 1}})";
  std::string file(8, '\0');
  const uint64_t header_bytes = header.size();
  std::memcpy(file.data(), &header_bytes, 8);
  file += header + std::string(4, '\0');
  Result<SafetensorsHeader> parsed = ParseSafetensorsHeader(file, file.size(), "model.safetensors");
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("a.n\\nn"), std::string::npos) << parsed.status().message();
  EXPECT_EQ(parsed.status().message().find('\n'), std::string::npos) << parsed.status().message();
}

TEST(FuzzRegressionTest, ManifestWithAnOverflowingNumberIsSkippedNotFatal) {
  testing::TempDir run;
  const std::string step_dir = run / "checkpoints/step-000001";
  std::filesystem::create_directories(step_dir);
  ASSERT_TRUE(WriteFileAtomic(step_dir + "/manifest.json", R"({"format_version": 1, "step": 1e999})").ok());
  CheckpointStore store(run.path());
  std::vector<std::string> skipped;
  Result<LoadedCheckpoint> loaded = store.LoadLatest(&skipped);
  ASSERT_FALSE(loaded.ok());
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find("manifest.json: bad JSON"), std::string::npos) << skipped[0];
}

}  // namespace
}  // namespace bert
