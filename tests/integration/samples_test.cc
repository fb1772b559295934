// bertctl samples end to end on a real corpus prepared from Debian's
// linux-doc-6.1: identical output across runs, --threads and token residency,
// random access by --start, JSONL and binary batches agreeing, well-formed
// samples at seq 128 and 512, one-line errors naming the option, and refusal
// of an incomplete corpus.
#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/file_util.h"
#include "datapipe/batch_codec.h"
#include "datapipe/corpus_store.h"
#include "datapipe/masking.h"
#include "test_util.h"

namespace bert {
namespace {

namespace fs = std::filesystem;
using testing::Bertctl;
using testing::CommandResult;
using testing::RunCommand;
using testing::TempDir;
using testing::UncasedVocab;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// glog error lines ("E20260101 12:00:00.000000 123 file.cc:45] message").
std::vector<std::string> ErrorLines(const std::string& output) {
  std::vector<std::string> errors;
  for (const std::string& line : Lines(output)) {
    if (!line.empty() && line[0] == 'E') errors.push_back(line);
  }
  return errors;
}

class SamplesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    std::vector<std::string> files;
    for (const auto& entry : fs::recursive_directory_iterator(testing::LinuxDocDir())) {
      if (entry.is_regular_file() && entry.path().extension() == ".gz") files.push_back(entry.path().string());
    }
    ASSERT_GE(files.size(), 1500u) << "linux-doc-6.1 is not installed; run scripts/setup.sh";
    std::sort(files.begin(), files.end());
    fs::create_directories(*dir_ / "docs");
    for (size_t i = 0; i < 1500; ++i) {
      fs::copy_file(files[i], *dir_ / ("docs/" + std::to_string(1000 + i) + "-" + fs::path(files[i]).filename().string()));
    }
    CommandResult r = RunCommand(Bertctl() + " prepare --input " + (*dir_ / "docs") + " --vocab " + UncasedVocab() +
                                 " --db " + Db());
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string Db() { return *dir_ / "db"; }

  // Runs bertctl samples on the corpus (with the vocabulary stored in it).
  static CommandResult Samples(const std::string& args) {
    return RunCommand(Bertctl() + " samples --db " + Db() + " " + args);
  }
  static std::string Jsonl(const std::string& args) {
    TempDir out;
    CommandResult r = Samples(args + " --output " + (out / "s.jsonl"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    Result<std::string> text = ReadFile(out / "s.jsonl");
    return text.ok() ? *text : "";
  }

  static TempDir* dir_;
  TempDir work_;
};
TempDir* SamplesTest::dir_ = nullptr;

TEST_F(SamplesTest, OutputIsIdenticalAcrossRunsThreadsAndTokenResidency) {
  const std::string base = Jsonl("--seed 7 --epoch 1 --count 3000");
  ASSERT_EQ(Lines(base).size(), 3000u);
  EXPECT_EQ(Jsonl("--seed 7 --epoch 1 --count 3000"), base);
  EXPECT_EQ(Jsonl("--seed 7 --epoch 1 --count 3000 --threads 2"), base);
  EXPECT_EQ(Jsonl("--seed 7 --epoch 1 --count 3000 --threads 2 --resident-mb 0"), base);  // via Corpus::Get
  EXPECT_EQ(Jsonl("--seed 7 --epoch 1 --count 3000 --vocab " + UncasedVocab()), base);  // same as the stored one
  EXPECT_NE(Jsonl("--seed 7 --epoch 2 --count 3000"), base);
  EXPECT_NE(Jsonl("--seed 8 --epoch 1 --count 3000"), base);
  // Random access: a window equals the same lines of the full run.
  std::vector<std::string> all = Lines(base), window = Lines(Jsonl("--seed 7 --epoch 1 --start 2990 --count 10"));
  ASSERT_EQ(window.size(), 10u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(window[i], all[2990 + i]);
}

TEST_F(SamplesTest, BinaryBatchesCarryExactlyTheJsonlSamples) {
  const std::string jsonl = Jsonl("--seed 3 --start 100 --count 1000 --wwm");
  CommandResult r = Samples("--seed 3 --start 100 --count 1000 --wwm --format binary --batch-size 96 "
                            "--pad-to-multiple 8 --output " + (work_ / "s.bin"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Result<std::string> bytes = ReadFile(work_ / "s.bin");
  ASSERT_TRUE(bytes.ok());
  Result<std::vector<Batch>> batches = DecodeBatchStream(*bytes);
  ASSERT_TRUE(batches.ok()) << batches.status().message();
  ASSERT_EQ(batches->size(), 11u);  // 10 x 96 + 40
  std::vector<std::string> lines = Lines(jsonl);
  size_t n = 0;
  for (const Batch& batch : *batches) {
    EXPECT_EQ(batch.first_index, 100 + n);
    EXPECT_EQ(batch.seq_len % 8, 0u);
    EXPECT_LE(batch.seq_len, 128u);
    for (const TrainingSample& s : batch.samples) {
      nlohmann::json j = nlohmann::json::parse(lines.at(n++));
      ASSERT_EQ(j["index"].get<uint64_t>(), s.index);
      ASSERT_EQ(j["input_ids"].get<std::vector<int32_t>>(), s.input_ids);
      ASSERT_EQ(j["token_type_ids"].get<std::vector<int32_t>>(), s.TokenTypeIds());
      ASSERT_EQ(j["masked_positions"].get<std::vector<uint16_t>>(), s.masked_positions);
      ASSERT_EQ(j["masked_labels"].get<std::vector<int32_t>>(), s.masked_labels);
      ASSERT_EQ(j["is_random_next"].get<bool>(), s.is_random_next);
    }
  }
  EXPECT_EQ(n, 1000u);
}

TEST_F(SamplesTest, SamplesAreWellFormedAt128And512) {
  auto vocab = Vocab::Load(UncasedVocab());
  ASSERT_TRUE(vocab.ok());
  for (int seq : {128, 512}) {
    MaskingOptions masking;
    masking.max_predictions = seq == 128 ? 20 : 80;
    const size_t count = seq == 128 ? 4000 : 1500;
    const std::string args = "--seed 11 --count " + std::to_string(count) + " --max-seq-len " + std::to_string(seq) +
                             " --max-predictions " + std::to_string(masking.max_predictions);
    size_t random_next = 0, full = 0, masked = 0;
    for (const std::string& line : Lines(Jsonl(args))) {
      nlohmann::json j = nlohmann::json::parse(line);
      auto ids = j["input_ids"].get<std::vector<int32_t>>();
      auto types = j["token_type_ids"].get<std::vector<int32_t>>();
      auto positions = j["masked_positions"].get<std::vector<size_t>>();
      auto labels = j["masked_labels"].get<std::vector<int32_t>>();
      ASSERT_LE(ids.size(), static_cast<size_t>(seq));
      ASSERT_EQ(types.size(), ids.size());
      ASSERT_EQ(ids.front(), (*vocab)->cls_id());
      ASSERT_EQ(ids.back(), (*vocab)->sep_id());
      const size_t b_start = std::find(types.begin(), types.end(), 1) - types.begin();
      ASSERT_GE(b_start, 3u);
      ASSERT_LE(b_start + 2, ids.size());
      ASSERT_EQ(ids[b_start - 1], (*vocab)->sep_id());
      ASSERT_EQ(positions.size(), static_cast<size_t>(NumToPredict(masking, static_cast<int32_t>(ids.size()))));
      for (size_t k = 0; k < positions.size(); ++k) {
        ASSERT_TRUE(positions[k] > 0 && positions[k] + 1 < ids.size() && positions[k] + 1 != b_start);
        ASSERT_NE(labels[k], (*vocab)->cls_id());
        ASSERT_NE(labels[k], (*vocab)->sep_id());
        masked += ids[positions[k]] == (*vocab)->mask_id();
      }
      random_next += j["is_random_next"].get<bool>();
      full += ids.size() == static_cast<size_t>(seq);
    }
    // Real documents have many one-sentence chunks (code blocks, long lines),
    // which are always random-next, as in the reference.
    EXPECT_GT(random_next, count * 0.47) << seq;
    EXPECT_LT(random_next, count * 0.70) << seq;
    EXPECT_GT(full, count * 0.5) << seq;
    EXPECT_GT(masked, 0u);
  }
}

TEST_F(SamplesTest, BadArgumentsGiveOneLineErrorsNamingTheOption) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--seed 1 --count 5 --max-seq-len 4", "--max-seq-len: must be between 8 and"},
      {"--seed 1 --count 5 --masked-lm-prob 0", "--masked-lm-prob:"},
      {"--seed 1 --count 5 --short-seq-prob 2", "--short-seq-prob:"},
      {"--seed 1 --count 5 --max-predictions 0", "--max-predictions:"},
      {"--seed 1 --count 5 --format xml", "--format: must be jsonl or binary"},
      {"--seed 1 --count 0", "--count: must be at least 1"},
      {"--seed 1 --count 5 --threads 0", "--threads:"},
      {"--seed 1 --count 100000000", "--count: samples [0, 100000000) are beyond epoch 0"},
  };
  for (const auto& [args, expected] : cases) {
    CommandResult r = Samples(args + " --output " + (work_ / "out"));
    EXPECT_NE(r.exit_code, 0) << args;
    std::vector<std::string> errors = ErrorLines(r.output);
    ASSERT_EQ(errors.size(), 1u) << args << "\n" << r.output;
    EXPECT_NE(errors[0].find(expected), std::string::npos) << args << "\n" << r.output;
    EXPECT_FALSE(fs::exists(work_ / "out") || fs::exists(work_ / "out.tmp")) << args;
  }
  CommandResult not_a_number = Samples("--seed 1 --count 5 --max-seq-len abc");
  EXPECT_NE(not_a_number.exit_code, 0);
  EXPECT_NE(not_a_number.output.find("--max-seq-len"), std::string::npos) << not_a_number.output;
  CommandResult wrong_vocab = RunCommand(Bertctl() + " samples --db " + Db() + " --vocab " + testing::ChineseVocab() +
                                         " --seed 1 --count 5");
  EXPECT_NE(wrong_vocab.exit_code, 0);
  ASSERT_EQ(ErrorLines(wrong_vocab.output).size(), 1u) << wrong_vocab.output;
  EXPECT_NE(wrong_vocab.output.find("another vocabulary"), std::string::npos) << wrong_vocab.output;
  CommandResult no_db = RunCommand(Bertctl() + " samples --db " + (work_ / "nowhere") + " --vocab " + UncasedVocab() +
                                   " --seed 1 --count 5");
  EXPECT_NE(no_db.exit_code, 0);
  EXPECT_NE(no_db.output.find("not a corpus database"), std::string::npos) << no_db.output;
}

TEST_F(SamplesTest, AnIncompleteCorpusIsRefused) {
  // What an interrupted prepare leaves: a database whose meta is not complete.
  const std::string db = work_ / "partial";
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(options, db, &raw).ok());
  std::unique_ptr<rocksdb::DB> handle(raw);
  auto vocab = Vocab::Load(UncasedVocab());
  ASSERT_TRUE(vocab.ok());
  CorpusMeta meta;
  meta.complete = false;
  meta.vocab_checksum = (*vocab)->checksum();
  meta.vocab_size = (*vocab)->size();
  meta.id_width = 2;
  Document doc;
  doc.token_ids = {2023, 2003, 1037, 6251};
  doc.sentence_ends = {4};
  std::string value;
  EncodeDocument(doc, 2, &value);
  ASSERT_TRUE(handle->Put(rocksdb::WriteOptions(), "meta", meta.ToJson()).ok());
  ASSERT_TRUE(handle->Put(rocksdb::WriteOptions(), DocumentKey(0), value).ok());
  handle.reset();
  CommandResult r = RunCommand(Bertctl() + " samples --db " + db + " --vocab " + UncasedVocab() +
                               " --seed 1 --count 1 --output " + (work_ / "out"));
  EXPECT_EQ(r.exit_code, 1);
  ASSERT_EQ(ErrorLines(r.output).size(), 1u) << r.output;
  EXPECT_NE(r.output.find("incomplete"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(work_ / "out"));
}

}  // namespace
}  // namespace bert
