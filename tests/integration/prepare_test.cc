// bertctl prepare and bertctl corpus stats end to end, on real text from
// Debian's linux-doc-6.1 and on hand-made bad input: thread-count
// independence, kill-and-rerun equality, shards, refusals and error reports.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace bert {
namespace {

namespace fs = std::filesystem;
using testing::Bertctl;
using testing::CommandResult;
using testing::RunCommand;
using testing::TempDir;
using testing::UncasedVocab;
using testing::WriteText;

// Copies the first `count` gzip files of the kernel docs (sorted) into dir.
void CopyLinuxDocs(const std::string& dir, size_t count) {
  std::vector<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(testing::LinuxDocDir())) {
    if (entry.is_regular_file() && entry.path().extension() == ".gz") files.push_back(entry.path().string());
  }
  ASSERT_GE(files.size(), count) << "linux-doc-6.1 is not installed; run scripts/setup.sh";
  std::sort(files.begin(), files.end());
  fs::create_directories(dir);
  for (size_t i = 0; i < count; ++i) {
    fs::copy_file(files[i], dir + "/" + std::to_string(1000 + i) + "-" + fs::path(files[i]).filename().string());
  }
}

CommandResult Prepare(const std::string& input, const std::string& db, const std::string& extra = "") {
  return RunCommand(Bertctl() + " prepare --input " + input + " --vocab " + UncasedVocab() + " --db " + db + " " +
                    extra);
}

nlohmann::json Stats(const std::string& dbs) {
  CommandResult r = RunCommand(Bertctl() + " corpus stats --json --db " + dbs + " 2>/dev/null");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return nlohmann::json::parse(r.output, nullptr, false);
}

class PrepareTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    corpus_dir_ = new TempDir();
    CopyLinuxDocs(*corpus_dir_ / "docs", 600);
  }
  static void TearDownTestSuite() { delete corpus_dir_; }
  static std::string Docs() { return *corpus_dir_ / "docs"; }
  // All 8848 files (about 42 MB of text) three times: an ingest that takes
  // seconds on one thread, so that a kill lands mid-run.
  static std::string LargeInput() {
    return testing::LinuxDocDir() + " " + testing::LinuxDocDir() + " " + testing::LinuxDocDir();
  }
  static TempDir* corpus_dir_;
  TempDir work_;
};
TempDir* PrepareTest::corpus_dir_ = nullptr;

TEST_F(PrepareTest, RealCorpusStatsAreSaneAndIndependentOfThreadCount) {
  CommandResult one = Prepare(Docs(), work_ / "t1", "--threads 1");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  CommandResult two = Prepare(Docs(), work_ / "t2", "--threads 2");
  ASSERT_EQ(two.exit_code, 0) << two.output;
  nlohmann::json a = Stats(work_ / "t1"), b = Stats(work_ / "t2");
  EXPECT_EQ(a["documents"], 600);
  EXPECT_EQ(a["content_digest"], b["content_digest"]);
  EXPECT_EQ(a["tokens"], b["tokens"]);
  EXPECT_GT(a["sentences"].get<uint64_t>(), 10 * a["documents"].get<uint64_t>());
  EXPECT_GT(a["tokens"].get<uint64_t>(), 100000u);
  EXPECT_LT(a["unk_rate"].get<double>(), 0.01);  // English docs with bert-base-uncased
  EXPECT_GT(a["sentence_tokens"]["p50"].get<uint64_t>(), 3u);
  EXPECT_LE(a["sentence_tokens"]["p50"], a["sentence_tokens"]["p90"]);
  EXPECT_LE(a["sentence_tokens"]["p90"], a["sentence_tokens"]["p99"]);
  EXPECT_LE(a["sentence_tokens"]["p99"], a["sentence_tokens"]["max"]);
  CommandResult text = RunCommand(Bertctl() + " corpus stats --db " + (work_ / "t1"));
  EXPECT_NE(text.output.find("content digest   " + a["content_digest"].get<std::string>()), std::string::npos);
}

TEST_F(PrepareTest, KilledIngestRerunEqualsUninterruptedRun) {
  ASSERT_EQ(Prepare(LargeInput(), work_ / "clean", "--threads 2").exit_code, 0);
  // Killed runs use one thread: slower, and a different thread count must not matter.
  const std::string expected = Stats(work_ / "clean")["content_digest"];
  int interrupted = 0;
  for (const char* delay : {"0.25", "0.7", "1.4"}) {
    std::string db = work_ / (std::string("killed-") + delay);
    CommandResult killed = RunCommand("timeout -s KILL " + std::string(delay) + " " + Bertctl() +
                                      " prepare --input " + LargeInput() + " --vocab " + UncasedVocab() +
                                      " --db " + db + " --threads 1");
    if (killed.exit_code == 137) {
      ++interrupted;
      if (fs::exists(db + "/CURRENT")) {
        CommandResult refused = RunCommand(Bertctl() + " corpus stats --db " + db);
        EXPECT_NE(refused.exit_code, 0);
        EXPECT_NE(refused.output.find("incomplete"), std::string::npos) << refused.output;
      }
    }
    CommandResult rerun = Prepare(LargeInput(), db, "--threads 2");
    ASSERT_EQ(rerun.exit_code, 0) << rerun.output;
    // Counters survive the interruption: the input holds images/logo.gif.gz three times.
    EXPECT_NE(rerun.output.find("skipped: 3 files looked binary"), std::string::npos) << rerun.output;
    EXPECT_EQ(Stats(db)["content_digest"], expected) << "killed after " << delay << " s";
  }
  EXPECT_GT(interrupted, 0) << "no run was actually interrupted; the input is too small for this test";
}

TEST_F(PrepareTest, ShardsReadTogetherEqualTheUnshardedCorpus) {
  ASSERT_EQ(Prepare(Docs(), work_ / "whole").exit_code, 0);
  std::string all;
  for (int i = 0; i < 3; ++i) {
    std::string db = work_ / ("shard" + std::to_string(i));
    CommandResult r = Prepare(Docs(), db, "--shard " + std::to_string(i) + "/3");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    all = db + " " + all;  // given out of order on purpose
  }
  nlohmann::json whole = Stats(work_ / "whole"), sharded = Stats(all);
  EXPECT_EQ(sharded["databases"], 3);
  EXPECT_EQ(sharded["documents"], whole["documents"]);
  EXPECT_EQ(sharded["content_digest"], whole["content_digest"]);
  CommandResult partial = RunCommand(Bertctl() + " corpus stats --db " + (work_ / "shard0") + " " + (work_ / "shard2"));
  EXPECT_NE(partial.exit_code, 0);
  EXPECT_NE(partial.output.find("complete set"), std::string::npos) << partial.output;
  EXPECT_NE(Prepare(Docs(), work_ / "bad", "--shard 3/3").exit_code, 0);
}

TEST_F(PrepareTest, RefusesCompleteDatabaseOtherInputAndOtherVocabulary) {
  ASSERT_EQ(Prepare(Docs(), work_ / "db").exit_code, 0);
  CommandResult again = Prepare(Docs(), work_ / "db");  // same input: nothing to do
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("already complete"), std::string::npos) << again.output;
  WriteText(work_ / "other.txt", "Some other text.");
  CommandResult other_input = Prepare(work_ / "other.txt", work_ / "db");
  EXPECT_NE(other_input.exit_code, 0);
  EXPECT_NE(other_input.output.find("--overwrite"), std::string::npos) << other_input.output;
  EXPECT_EQ(Prepare(work_ / "other.txt", work_ / "db", "--overwrite").exit_code, 0);
  EXPECT_EQ(Stats(work_ / "db")["documents"], 1);
  ASSERT_EQ(Prepare(Docs(), work_ / "db", "--overwrite").exit_code, 0);

  CommandResult wrong_vocab = RunCommand(Bertctl() + " corpus stats --db " + (work_ / "db") + " --vocab " +
                                         testing::ChineseVocab());
  EXPECT_NE(wrong_vocab.exit_code, 0);
  EXPECT_NE(wrong_vocab.output.find("another vocabulary"), std::string::npos) << wrong_vocab.output;
  EXPECT_EQ(RunCommand(Bertctl() + " corpus stats --db " + (work_ / "db") + " --vocab " + UncasedVocab()).exit_code,
            0);

  // An interrupted ingest of other input is not silently continued.
  CommandResult killed = RunCommand("timeout -s KILL 1.2 " + Bertctl() + " prepare --input " + LargeInput() +
                                    " --vocab " + UncasedVocab() + " --db " + (work_ / "partial"));
  // Killed before the ingest recorded its meta there is nothing to protect; after it, other input is refused.
  bool started = killed.exit_code == 137 &&
                 RunCommand(Bertctl() + " corpus stats --db " + (work_ / "partial")).output.find("interrupted") !=
                     std::string::npos;
  if (started) {
    CommandResult other = Prepare(work_ / "other.txt", work_ / "partial");
    EXPECT_NE(other.exit_code, 0);
    EXPECT_NE(other.output.find("unfinished ingest"), std::string::npos) << other.output;
  }
  CommandResult unwritable = Prepare(Docs(), "/proc/no-such-dir/db");
  EXPECT_NE(unwritable.exit_code, 0);
  EXPECT_NE(unwritable.output.find("/proc/no-such-dir/db"), std::string::npos) << unwritable.output;
}

// A full disk is fatal (continuing would be wrong), names the database, leaves
// it incomplete, and a re-run with space again finishes with the same content.
TEST_F(PrepareTest, FullDiskFailsCleanlyAndRerunWithSpaceCompletes) {
  ASSERT_EQ(Prepare(Docs(), work_ / "clean").exit_code, 0);
  std::string mount_point = work_ / "small-disk";
  fs::create_directories(mount_point);
  CommandResult mounted = RunCommand("mount -t tmpfs -o size=1m tmpfs " + mount_point);
  ASSERT_EQ(mounted.exit_code, 0) << "this test mounts a 1 MiB tmpfs and needs root: " << mounted.output;
  std::string db = mount_point + "/db";
  CommandResult full = Prepare(Docs(), db);
  EXPECT_EQ(full.exit_code, 1) << "an error exit, not a crash: " << full.output;
  EXPECT_NE(full.output.find(db + ": write failed"), std::string::npos) << full.output;
  EXPECT_NE(full.output.find("No space left on device"), std::string::npos) << full.output;
  EXPECT_EQ(full.output.find("prepared "), std::string::npos) << "a failed run must not report success";
  if (fs::exists(db + "/CURRENT")) {
    CommandResult refused = RunCommand(Bertctl() + " corpus stats --db " + db);
    EXPECT_NE(refused.exit_code, 0) << refused.output;
  }
  ASSERT_EQ(RunCommand("mount -o remount,size=256m " + mount_point).exit_code, 0);
  CommandResult rerun = Prepare(Docs(), db);
  EXPECT_EQ(rerun.exit_code, 0) << rerun.output;
  EXPECT_EQ(Stats(db)["content_digest"], Stats(work_ / "clean")["content_digest"]);
  RunCommand("umount " + mount_point);
}

TEST_F(PrepareTest, BadInputIsReportedWithFileAndLineCountedAndSkipped) {
  std::string in = work_ / "in";
  fs::create_directories(in);
  WriteText(in + "/a.jsonl",
            "{\"text\": \"The first document. It has two sentences.\"}\n"
            "this is not json\n"
            "{\"body\": \"no text field\"}\n"
            "{\"text\": \"\"}\n"
            "{\"text\": \"Invalid \xc3\x28 UTF-8 is dropped. Still here.\"}\n"
            "{\"text\": \"" + std::string(3 << 20, 'a') + "\"}\n");
  WriteText(in + "/b.bin", std::string("\0\1\2\3binary\0", 11));
  WriteText(in + "/c.txt", "\n\n   \n");
  CommandResult r = Prepare(in + " " + (work_ / "missing.txt"), work_ / "db", "--format auto");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(in + "/a.jsonl:2: not a JSON object"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(in + "/a.jsonl:3: no string field"), std::string::npos);
  EXPECT_NE(r.output.find(in + "/a.jsonl:6: line longer than"), std::string::npos);
  EXPECT_NE(r.output.find("b.bin: looks binary"), std::string::npos);
  EXPECT_NE(r.output.find("missing.txt: no such file"), std::string::npos);
  EXPECT_NE(r.output.find("skipped: 1 JSONL lines were not valid JSON"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("skipped: 1 invalid UTF-8 bytes"), std::string::npos) << r.output;
  // The file (and line) where bytes were dropped is named, as for binary files.
  EXPECT_NE(r.output.find(in + "/a.jsonl:5: 1 invalid UTF-8 byte(s) dropped"), std::string::npos) << r.output;
  nlohmann::json stats = Stats(work_ / "db");
  EXPECT_EQ(stats["documents"], 2);
  EXPECT_EQ(stats["sentences"], 4);
}

// Invalid UTF-8 in plain text (dropped by the tokenizer, not the reader):
// each file with such bytes is named once, with the document's line.
TEST_F(PrepareTest, InvalidUtf8InTextFilesNamesEachFileOnce) {
  const std::string in = work_ / "in";
  fs::create_directories(in);
  WriteText(in + "/clean.txt", "Nothing wrong here.\n\nOr here.\n");
  WriteText(in + "/bad.txt", "A first document.\n\nA second one with \xff\xfe two bad bytes.\n\nAnd \xc3 one more.\n");
  CommandResult r = Prepare(in, work_ / "db", "--format lines");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(in + "/bad.txt:3: 2 invalid UTF-8 byte(s) dropped"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("bad.txt:5:"), std::string::npos) << "each file once\n" << r.output;
  EXPECT_EQ(r.output.find("clean.txt:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("3 invalid UTF-8 bytes were dropped"), std::string::npos) << r.output;
}

TEST_F(PrepareTest, LinesAndJsonlFormatsGiveTheSameCorpusAsExpected) {
  // The same two documents in BERT's one-sentence-per-line format and as JSONL.
  WriteText(work_ / "c.txt", "Dr. Smith arrived at 3.15 p.m. today.\nHe left soon after.\n\nAnother document here.\n");
  WriteText(work_ / "c.jsonl",
            "{\"text\": \"Dr. Smith arrived at 3.15 p.m. today. He left soon after.\"}\n"
            "{\"text\": \"Another document here.\"}\n");
  ASSERT_EQ(Prepare(work_ / "c.txt", work_ / "lines", "--format lines").exit_code, 0);
  ASSERT_EQ(Prepare(work_ / "c.jsonl", work_ / "jsonl").exit_code, 0);
  nlohmann::json a = Stats(work_ / "lines"), b = Stats(work_ / "jsonl");
  EXPECT_EQ(a["documents"], 2);
  EXPECT_EQ(a["sentences"], 3);
  EXPECT_EQ(a["content_digest"], b["content_digest"]);
}

}  // namespace
}  // namespace bert
