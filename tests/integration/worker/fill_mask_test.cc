// bertctl fill-mask on a pretraining run: the same answers from the run
// directory and from its HF export, equal to `transformers`' own
// masked-LM head and tokenizer on that export (tests/reference/
// transformers_oracle.py), and one-line errors for a text without [MASK] and
// for a model that is not there.
#include <gtest/gtest.h>

#include "integration/worker/pretrain_run.h"

namespace bert {
namespace {

using testing::CommandResult;
using testing::Json;
using testing::RunCommand;
using testing::WriteText;

class FillMaskTest : public testing::PretrainRunTest {};

TEST_F(FillMaskTest, MatchesTransformersOnTheExportAndNamesBadInput) {
  ASSERT_FALSE(Train("filled", 1, testing::kMicroBatch, 12, /*checkpoint_every=*/12).empty());
  const std::string run = work_ / "filled";
  const std::string hf = work_ / "filled-hf";
  CommandResult exported = RunCommand(testing::Bertctl() + " export --checkpoint " + run + " --output " + hf);
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  const std::string texts =
      "\"The kernel [MASK] the memory of each process.\" \"[MASK] and [MASK] are both used, naïvely.\" "
      "\"Linux runs on many [MASK].\"";
  auto fill = [&](const std::string& model, const std::string& out) {
    return RunCommand(testing::Bertctl() + " fill-mask --model " + model + " --top-k 5 --json " + texts + " > " + out +
                      " 2>" + out + ".log");
  };
  ASSERT_EQ(fill(run, work_ / "from-run.jsonl").exit_code, 0) << *ReadFile(work_ / "from-run.jsonl.log");
  ASSERT_EQ(fill(hf, work_ / "from-hf.jsonl").exit_code, 0) << *ReadFile(work_ / "from-hf.jsonl.log");
  Result<std::string> from_run = ReadFile(work_ / "from-run.jsonl");
  ASSERT_TRUE(from_run.ok());
  EXPECT_EQ(*from_run, *ReadFile(work_ / "from-hf.jsonl")) << "the run and its export answer alike";
  const std::vector<Json> lines = testing::JsonLines(*from_run);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[1]["masks"].size(), 2u);
  for (const Json& line : lines) {
    for (const Json& mask : line["masks"]) {
      ASSERT_EQ(mask["candidates"].size(), 5u);
      double previous = 1.0;
      for (const Json& c : mask["candidates"]) {
        EXPECT_LE(c["probability"].get<double>(), previous);
        previous = c["probability"].get<double>();
      }
    }
  }
  CommandResult oracle = RunCommand(std::string(BERT_PYTHON) + " " + std::string(BERT_SOURCE_DIR) +
                                    "/tests/reference/transformers_oracle.py " + hf + " --fill-mask " +
                                    (work_ / "from-run.jsonl"));
  ASSERT_EQ(oracle.exit_code, 0) << oracle.output;
  const Json result = Json::parse(oracle.output.substr(oracle.output.rfind('{')));
  std::printf("transformers (BertForPreTraining's MLM head): %d masks, max |probability diff| %.2e\n", result["masks"].get<int>(),
              result["max_prob_diff"].get<double>());
  EXPECT_EQ(result["masks"].get<int>(), 4);
  EXPECT_TRUE(result["tokens_equal"].get<bool>()) << result.dump();
  EXPECT_TRUE(result["top_equal"].get<bool>()) << result.dump();
  EXPECT_LT(result["max_prob_diff"].get<double>(), 1e-5);

  CommandResult no_mask = RunCommand(testing::Bertctl() + " fill-mask --model " + run + " \"no mask here\"");
  EXPECT_EQ(no_mask.exit_code, 2);
  EXPECT_NE(no_mask.output.find("[fill-mask] text \"no mask here\" has no [MASK] to fill"), std::string::npos)
      << no_mask.output;
  CommandResult missing = RunCommand(testing::Bertctl() + " fill-mask --model " + (work_ / "nothing") + " \"a [MASK]\"");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("--model: " + (work_ / "nothing")), std::string::npos) << missing.output;
}

}  // namespace
}  // namespace bert
