// Regression tests for what the fuzz targets (fuzz/) found, one test per
// bug, named after it. Each input is the minimized crash input, or a
// hand-written one with the same cause.
#include <gtest/gtest.h>

#include <string>

#include "common/error_text.h"
#include "common/run_config.h"

namespace bert {
namespace {

TEST(OneLineTextTest, EscapesControlBytesAndKeepsUtf8) {
  EXPECT_EQ(OneLineText("a\nb\r\tc"), "a\\nb\\r\\tc");
  EXPECT_EQ(OneLineText(std::string("x\0y\x7f", 4)), "x\\x00y\\x7f");
  EXPECT_EQ(OneLineText("caf\xc3\xa9 \xe4\xb8\xad"), "caf\xc3\xa9 \xe4\xb8\xad");
}

// run_config_fuzz: yaml-cpp's error message quotes the offending input
// bytes (here a NUL and the newline after it), which broke the one-line error.
TEST(FuzzRegressionTest, RunConfigYamlErrorQuotingControlBytesStaysOneLine) {
  const char kCrash[] = "model: m.json\ndata:\n  db: [coon\x02\0\ndapaus]\ntrain:\n  steps: 11\n  g4\n";
  const std::string yaml(kCrash, sizeof(kCrash) - 1);
  Result<RunConfig> config = ParseRunConfig(yaml, "run.yaml", "/cfg");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message().rfind("run.yaml: not valid YAML: ", 0), 0u) << config.status().message();
  EXPECT_EQ(config.status().message().find('\n'), std::string::npos) << config.status().message();
}

// finetune_config_fuzz (and the same code in run_config.cc): an unknown key
// holding a newline ("tr\n" as a quoted YAML key) was quoted raw in the error.
TEST(FuzzRegressionTest, RunConfigUnknownKeyWithANewlineStaysOneLine) {
  Result<RunConfig> config = ParseRunConfig("\"tr\\n\": 1\n", "run.yaml", "/cfg");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("tr\\n"), std::string::npos) << config.status().message();
  EXPECT_EQ(config.status().message().find('\n'), std::string::npos) << config.status().message();
}

// run_config_fuzz: a list used as a key ("[a, b]: 1") made yaml-cpp's
// as<std::string>() throw out of the key check: std::terminate, not an error.
TEST(FuzzRegressionTest, RunConfigListAsAKeyIsAnErrorNotACrash) {
  Result<RunConfig> config = ParseRunConfig("model: m.json\ndata:\n  [cb d: x]: 1\n", "run.yaml", "/cfg");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("keys must be plain strings"), std::string::npos)
      << config.status().message();
}

// finetune_config_fuzz found this in finetune_config.cc (its regression test is
// in tests/unit/finetune/finetune_config_test.cc); run_config.cc had the same code.
TEST(FuzzRegressionTest, RunConfigBadEnumValueWithANewlineStaysOneLine) {
  Result<RunConfig> config = ParseRunConfig(
      "model: m.json\ndata:\n  db: d\ntrain:\n  steps: 1\n  optimizer: \"sgd\\n\"\n", "run.yaml", "/cfg");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("got sgd\\n"), std::string::npos) << config.status().message();
  EXPECT_EQ(config.status().message().find('\n'), std::string::npos) << config.status().message();
}

// run_config_fuzz: a data.db path ending in CRs lost one in ToYaml ->
// ParseRunConfig (a plain scalar); strings with control bytes are quoted.
TEST(FuzzRegressionTest, RunConfigPathWithTrailingCarriageReturnsRoundTrips) {
  Result<RunConfig> config =
      ParseRunConfig("model: m.json\ndata:\n  db: \"/x/corpus\\r\\r\\r\"\n", "run.yaml", "/cfg");
  ASSERT_TRUE(config.ok()) << config.status().message();
  ASSERT_EQ(config->data.db, std::vector<std::string>{"/x/corpus\r\r\r"});
  Result<RunConfig> again = ParseRunConfig(config->ToYaml(), "resolved.yaml", "/cfg");
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->data.db, config->data.db);
  EXPECT_EQ(again->ToYaml(), config->ToYaml());
}

}  // namespace
}  // namespace bert
