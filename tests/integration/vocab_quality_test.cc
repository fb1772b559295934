// Quality of a learned vocabulary on real text: trained on 90% of the Linux
// kernel documentation (Debian's linux-doc-6.1, ~42 MB of reStructuredText
// in 8848 gzip files, the whole training part, no subset), a 30522-entry
// uncased vocabulary must split the held-out 10% into no more tokens per
// whitespace word than bert-base-uncased's vocabulary does. Both merge
// scores are measured; the default (frequency) is the one asserted.
// Also checks `bertctl vocab` end to end: output, summary and argument errors.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "common/file_util.h"
#include "datapipe/document_reader.h"
#include "datapipe/tokenizer.h"
#include "datapipe/vocab.h"
#include "datapipe/vocab_trainer.h"
#include "test_util.h"

namespace bert {
namespace {

// A file is held out when the xxh3 hash of its path below the corpus root is
// 0 mod 10: a fixed split that does not depend on listing order.
bool IsHeldOut(const std::string& path, const std::string& root) {
  std::string relative = std::filesystem::path(path).lexically_relative(root).string();
  return XXH3_64bits(relative.data(), relative.size()) % 10 == 0;
}

size_t CountWhitespaceWords(const std::string& text) {
  size_t words = 0;
  bool in_word = false;
  for (char c : text) {
    bool space = std::isspace(static_cast<unsigned char>(c)) != 0;
    words += (!space && !in_word) ? 1 : 0;
    in_word = !space;
  }
  return words;
}

struct HeldOutText {
  std::vector<std::string> documents;
  uint64_t whitespace_words = 0;
};

HeldOutText ReadDocuments(const std::vector<std::string>& files) {
  HeldOutText held_out;
  DocumentReader reader(files, ReaderOptions());
  SourceDocument doc;
  while (reader.Next(&doc)) {
    held_out.whitespace_words += CountWhitespaceWords(doc.text);
    held_out.documents.push_back(std::move(doc.text));
  }
  return held_out;
}

struct Encoded {
  double tokens_per_word = 0;
  double unk_fraction = 0;  // of all tokens
};

Encoded Measure(std::shared_ptr<const Vocab> vocab, const HeldOutText& text) {
  FullTokenizer tokenizer(std::move(vocab), TokenizerOptions());
  TokenizeStats stats;
  std::vector<int32_t> ids;
  uint64_t tokens = 0;
  for (const std::string& doc : text.documents) {
    ids.clear();
    tokenizer.Encode(doc, &ids, &stats);
    tokens += ids.size();
  }
  return Encoded{static_cast<double>(tokens) / static_cast<double>(text.whitespace_words),
                 static_cast<double>(stats.num_unk) / static_cast<double>(std::max<uint64_t>(tokens, 1))};
}

TEST(VocabQualityTest, LearnedVocabularyBeatsBertBaseUncasedOnHeldOutKernelDocs) {
  const std::string root = testing::LinuxDocDir();
  if (!std::filesystem::is_directory(root)) GTEST_SKIP() << root << " is missing (Debian package linux-doc-6.1)";
  std::vector<std::string> errors;
  std::vector<std::string> train_files, held_out_files;
  for (const std::string& file : ExpandInputPaths({root}, &errors)) {
    (IsHeldOut(file, root) ? held_out_files : train_files).push_back(file);
  }
  ASSERT_GT(held_out_files.size(), 500u);
  ASSERT_GT(train_files.size(), 7000u);

  WordCountOptions count_options;
  count_options.num_threads = 2;
  Result<WordCountResult> counts = CountWordsInFiles(train_files, count_options);
  ASSERT_TRUE(counts.ok()) << counts.status().ToString();
  HeldOutText held_out = ReadDocuments(held_out_files);
  Result<std::shared_ptr<const Vocab>> reference = Vocab::Load(testing::UncasedVocab());
  ASSERT_TRUE(reference.ok()) << reference.status().ToString();
  Encoded bert = Measure(*reference, held_out);
  std::printf("train: %zu files, %llu words, %zu unique, counted in %.1f s; held out: %zu files, %llu words\n",
              train_files.size(), static_cast<unsigned long long>(counts->num_words), counts->words.size(),
              counts->seconds, held_out_files.size(), static_cast<unsigned long long>(held_out.whitespace_words));
  std::printf("bert-base-uncased:       %.4f tokens per whitespace word, %.4f%% [UNK]\n", bert.tokens_per_word,
              100 * bert.unk_fraction);

  for (MergeScore score : {MergeScore::kFrequency, MergeScore::kLikelihood}) {
    VocabTrainerOptions options;
    options.score = score;
    Result<TrainedVocab> trained = LearnWordPiece(counts->words, options);
    ASSERT_TRUE(trained.ok()) << trained.status().ToString();
    ASSERT_EQ(trained->tokens.size(), 30522u);
    Result<std::shared_ptr<const Vocab>> vocab = Vocab::FromTokens(trained->tokens);
    ASSERT_TRUE(vocab.ok());
    Encoded learned = Measure(*vocab, held_out);
    std::printf("learned (%-10s):   %.4f tokens per whitespace word, %.4f%% [UNK] (learned in %.1f s)\n",
                MergeScoreName(score), learned.tokens_per_word, 100 * learned.unk_fraction, trained->seconds);
    if (score == MergeScore::kFrequency) {
      EXPECT_LE(learned.tokens_per_word, bert.tokens_per_word);
    }
  }
}

class BertctlVocabTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::WriteText(dir_ / "a.txt", "The quick brown fox jumps over the lazy dog. The dog sleeps.\n");
    testing::WriteText(dir_ / "b.jsonl", "{\"text\": \"Quick thinking: the fox jumped again.\"}\n");
  }
  testing::CommandResult Vocab(const std::string& args) {
    return testing::RunCommand(testing::Bertctl() + " vocab " + args);
  }
  testing::TempDir dir_;
};

TEST_F(BertctlVocabTest, WritesTheVocabularyAndASummary) {
  std::string out = dir_ / "vocab.txt";
  testing::CommandResult run =
      Vocab("--input " + dir_.path() + " --size 60 --min-frequency 1 --threads 3 --output " + out);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("wrote " + out + ": 60 tokens"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("from 2 documents"), std::string::npos) << run.output;
  Result<std::shared_ptr<const bert::Vocab>> vocab = Vocab::Load(out);
  ASSERT_TRUE(vocab.ok()) << vocab.status().ToString();
  EXPECT_EQ((*vocab)->size(), 60);
  EXPECT_EQ((*vocab)->Token(0), "[PAD]");
  EXPECT_EQ((*vocab)->Token(4), "[MASK]");
  EXPECT_FALSE(std::filesystem::exists(out + ".tmp"));

  run = Vocab("--input " + dir_.path() + " --size 5000 --output " + out);  // runs out of frequent pairs
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("note: "), std::string::npos) << run.output;
}

TEST_F(BertctlVocabTest, RejectsBadArgumentsWithOneLineErrors) {
  std::string out = dir_ / "vocab.txt";
  struct Case {
    std::string args, message;
  } cases[] = {
      {"--input " + (dir_ / "missing.txt") + " --input " + dir_.path() + " --input " + (dir_ / "gone") +
           " --size 100 --output " + out,
       "missing.txt: no such file or directory; " + (dir_ / "gone") + ": no such file"},
      {"--input " + dir_.path() + " --size 5 --output " + out, "--size 5 leaves no room"},
      {"--input " + dir_.path() + " --size 20 --output " + out, "use a size of at least"},
      {"--input " + dir_.path() + " --size 100 --output " + (dir_ / "nodir/vocab.txt"), "does not exist"},
      {"--input " + dir_.path() + " --size 100 --format xml --output " + out, "--format"},
      {"--input " + dir_.path() + " --size 100 --score best --output " + out, "--score"},
  };
  for (const Case& c : cases) {
    testing::CommandResult run = Vocab(c.args);
    EXPECT_EQ(run.exit_code, 2) << c.args << "\n" << run.output;
    EXPECT_NE(run.output.find(c.message), std::string::npos) << c.args << "\n" << run.output;
  }
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
}  // namespace bert
