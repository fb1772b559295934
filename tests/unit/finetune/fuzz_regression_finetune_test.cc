// Regression tests for what fuzz/finetune_config_fuzz and
// fuzz/classification_data_fuzz found (one test per bug).
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "finetune/classification_data.h"
#include "finetune/finetune_config.h"
#include "test_util.h"

namespace bert::finetune {
namespace {

// A map used as a key ("? wio: 0.1") made yaml-cpp's as<std::string>() throw
// out of the unknown-key check: std::terminate instead of an error.
TEST(FuzzRegressionTest, FinetuneConfigMapAsAKeyIsAnErrorNotACrash) {
  Result<FinetuneConfig> config = ParseFinetuneConfig("train:\n  ? {wio: 0.1}\n  : 1\n", "ft.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("keys must be plain strings"), std::string::npos)
      << config.status().message();
}

// A quoted CSV header column holding a newline was quoted raw in the
// "missing field" error, which then spanned two lines.
TEST(FuzzRegressionTest, CsvHeaderColumnWithANewlineGivesAOneLineError) {
  testing::TempDir dir;
  const std::string path = dir / "train.csv";
  std::ofstream(path) << "egreal,\"\n\"\nx,y\n";
  Result<std::vector<Example>> examples = ReadExamples(path, FieldNames());
  ASSERT_FALSE(examples.ok());
  EXPECT_NE(examples.status().message().find("missing field \"text\""), std::string::npos)
      << examples.status().message();
  EXPECT_EQ(examples.status().message().find('\n'), std::string::npos) << examples.status().message();
}

}  // namespace
}  // namespace bert::finetune
