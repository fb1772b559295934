// bertctl's command-line mistakes (cli/usage_errors.h), as a user types
// them: every one exits 2 with one line that names the command and the flag,
// and a mistyped flag or command gets the nearest real one. Help and
// version still exit 0.
#include <gtest/gtest.h>

#include <string>

#include "test_util.h"

namespace bert {
namespace {

using testing::Bertctl;
using testing::CommandResult;
using testing::RunCommand;

struct Case {
  std::string args;
  std::string expected;  // the line must contain this
};

TEST(UsageErrorsTest, EveryParseErrorExitsTwoWithOneLineNamingTheFlag) {
  const Case cases[] = {
      {"finetune --bogus", "bertctl finetune: unknown flag --bogus"},
      {"finetune --epoch 3", "bertctl finetune: unknown flag --epoch; did you mean --epochs?"},
      {"finetune --workers 0", "bertctl finetune: --workers: Value 0 not in range"},
      {"predict", "bertctl predict: --model is required"},
      {"eval --modle m", "bertctl eval: unknown flag --modle; did you mean --model?"},
      {"pretrain --config", "bertctl pretrain: --config"},
      {"evaluate", "bertctl: unknown command 'evaluate'; did you mean 'eval'?"},
      {"evaluate --help", "bertctl: unknown command 'evaluate'; did you mean 'eval'?"},
      {"foo", "bertctl: unknown command 'foo'"},
  };
  for (const Case& c : cases) {
    CommandResult r = RunCommand(Bertctl() + " " + c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << ": " << r.output;
    EXPECT_NE(r.output.find(c.expected), std::string::npos) << c.args << ": " << r.output;
    // One line, with where to look next.
    EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << c.args << ": " << r.output;
    EXPECT_NE(r.output.find("--help"), std::string::npos) << c.args << ": " << r.output;
  }
}

TEST(UsageErrorsTest, HelpAndVersionStillExitZero) {
  for (const std::string args : {"--help", "finetune --help", "eval --help", "--version"}) {
    CommandResult r = RunCommand(Bertctl() + " " + args);
    EXPECT_EQ(r.exit_code, 0) << args << ": " << r.output;
    EXPECT_FALSE(r.output.empty()) << args;
  }
  CommandResult help = RunCommand(Bertctl() + " finetune --help");
  EXPECT_NE(help.output.find("Fine-tune a model"), std::string::npos) << "the subcommand's own help";
}

}  // namespace
}  // namespace bert
