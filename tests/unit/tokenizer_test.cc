// FullTokenizer against Google BERT's tokenization.py, id for id.
//
// The fixtures in tests/fixtures/tokenizer/ were produced by the Python oracle
// (tests/reference/bert_tokenization_ref.py, regenerate with
// tests/fixtures/tokenizer/make_fixtures.py) over the real BERT vocabularies.
#include "datapipe/tokenizer.h"

#include "common/utf8.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <thread>

namespace bert {
namespace {

const std::string kVocabDir = BERT_VOCAB_DIR;
const std::string kFixtureDir = std::string(BERT_FIXTURE_DIR) + "/tokenizer";

std::shared_ptr<const Vocab> LoadVocab(const std::string& name) {
  static std::map<std::string, std::shared_ptr<const Vocab>> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  Result<std::shared_ptr<const Vocab>> vocab = Vocab::Load(kVocabDir + "/" + name);
  EXPECT_TRUE(vocab.ok()) << vocab.status().ToString();
  if (!vocab.ok()) return nullptr;
  return cache[name] = *vocab;
}

std::shared_ptr<const Vocab> ToyVocab(std::vector<std::string> tokens) {
  Result<std::shared_ptr<const Vocab>> vocab = Vocab::FromTokens(std::move(tokens));
  EXPECT_TRUE(vocab.ok()) << vocab.status().ToString();
  return *vocab;
}

std::string FromHex(const std::string& hex) {
  std::string bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return bytes;
}

struct FixtureCase {
  std::string file, name, vocab, text;
  bool lower_case = true;
  int max_chars = 100;
  std::vector<int32_t> ids;
  std::vector<std::string> tokens;
};

std::vector<FixtureCase> LoadFixture(const std::string& file) {
  std::ifstream in(kFixtureDir + "/" + file);
  EXPECT_TRUE(in.good()) << "missing fixture " << kFixtureDir << "/" << file;
  std::vector<FixtureCase> cases;
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json record = nlohmann::json::parse(line);
    FixtureCase c;
    c.file = file;
    c.name = record.at("name").get<std::string>();
    c.vocab = record.at("vocab").get<std::string>();
    c.lower_case = record.at("lower_case").get<bool>();
    c.max_chars = record.at("max_chars").get<int>();
    c.text = FromHex(record.at("text_hex").get<std::string>());
    c.ids = record.at("ids").get<std::vector<int32_t>>();
    c.tokens = record.at("tokens").get<std::vector<std::string>>();
    cases.push_back(std::move(c));
  }
  return cases;
}

std::vector<FixtureCase> AllFixtures() {
  std::vector<FixtureCase> all;
  for (const char* file : {"uncased.jsonl", "cased.jsonl", "chinese.jsonl"}) {
    std::vector<FixtureCase> cases = LoadFixture(file);
    EXPECT_GT(cases.size(), 50u) << file;
    all.insert(all.end(), cases.begin(), cases.end());
  }
  return all;
}

std::unique_ptr<FullTokenizer> MakeTokenizer(const FixtureCase& c) {
  return std::make_unique<FullTokenizer>(LoadVocab(c.vocab), TokenizerOptions{c.lower_case, c.max_chars});
}

TEST(TokenizerFixtureTest, EveryFixtureMatchesTheReferenceIdForId) {
  std::vector<FixtureCase> cases = AllFixtures();
  ASSERT_EQ(cases.size(), 3 * 61u) << "fixture files changed; update this count with make_fixtures.py";
  for (const FixtureCase& c : cases) {
    std::unique_ptr<FullTokenizer> tokenizer = MakeTokenizer(c);
    EXPECT_EQ(tokenizer->Encode(c.text), c.ids) << c.file << " case " << c.name;
    EXPECT_EQ(tokenizer->Tokenize(c.text), c.tokens) << c.file << " case " << c.name;
  }
}

TEST(TokenizerTest, UnaffableSplitsGreedilyWithTheDocstringVocab) {
  // The example of tokenization.py's WordpieceTokenizer docstring.
  FullTokenizer tokenizer(ToyVocab({"[UNK]", "un", "##aff", "##able", "a"}), TokenizerOptions{});
  EXPECT_EQ(tokenizer.Tokenize("unaffable"), (std::vector<std::string>{"un", "##aff", "##able"}));
  EXPECT_EQ(tokenizer.Encode("UNAFFABLE"), (std::vector<int32_t>{1, 2, 3}));
}

TEST(TokenizerTest, UnaffableWithTheRealUncasedVocabPrefersTheLongestFirstPiece) {
  // bert-base-uncased has "una", so greedy longest-match-first does not give "un".
  FullTokenizer tokenizer(LoadVocab("bert-base-uncased-vocab.txt"), TokenizerOptions{});
  EXPECT_EQ(tokenizer.Tokenize("unaffable"), (std::vector<std::string>{"una", "##ffa", "##ble"}));
}

TEST(TokenizerTest, OneUncoverablePositionMakesTheWholeWordUnk) {
  FullTokenizer tokenizer(ToyVocab({"[UNK]", "ab", "##c"}), TokenizerOptions{});
  TokenizeStats stats;
  std::vector<int32_t> ids;
  tokenizer.Encode("abc abd ab", &ids, &stats);
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 2, 0, 1}));
  EXPECT_EQ(stats.num_words, 3u);
  EXPECT_EQ(stats.num_unk, 1u);
}

TEST(TokenizerTest, MaxCharsPerWordCountsCodePointsNotBytes) {
  auto vocab = ToyVocab({"[UNK]", "\xC3\xA9", "##\xC3\xA9"});  // é, ##é
  FullTokenizer at_limit(vocab, TokenizerOptions{false, 3});
  EXPECT_EQ(at_limit.Encode("\xC3\xA9\xC3\xA9\xC3\xA9"), (std::vector<int32_t>{1, 2, 2}));
  EXPECT_EQ(at_limit.Encode("\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"), (std::vector<int32_t>{0}));
}

TEST(TokenizerTest, DuplicateVocabTokenMapsToItsLaterId) {
  FullTokenizer tokenizer(ToyVocab({"[UNK]", "dup", "##x", "dup", "##x"}), TokenizerOptions{});
  EXPECT_EQ(tokenizer.Encode("dupx"), (std::vector<int32_t>{3, 4}));
}

TEST(TokenizerTest, InvalidUtf8BytesAreDroppedAndCounted) {
  FullTokenizer tokenizer(LoadVocab("bert-base-uncased-vocab.txt"), TokenizerOptions{});
  struct Case {
    std::string bytes;
    uint64_t dropped;
    std::string valid;
  };
  const Case cases[] = {
      {"abc\x80" "def \xbf", 2, "abcdef "},
      {"caf\xc3 x\xe2\x82 y\xf0\x9f\x98", 6, "caf x y"},
      {"\xc0\xaf\xe0\x80\xaf\xf0\x80\x80\xaf", 9, ""},           // overlongs
      {"a\xed\xa0\x80" "b", 3, "ab"},                          // a surrogate
      {"\xf4\x90\x80\x80\xf5\xff", 6, ""},                     // above U+10FFFF
      {"\xe4\xb8\xad\xe4\xb8\xe6\x96\x87", 2, "\xe4\xb8\xad\xe6\x96\x87"},  // resync inside CJK
  };
  for (const Case& c : cases) {
    TokenizeStats stats;
    std::vector<int32_t> ids;
    tokenizer.Encode(c.bytes, &ids, &stats);
    EXPECT_EQ(stats.invalid_utf8_bytes, c.dropped) << c.valid;
    EXPECT_EQ(ids, tokenizer.Encode(c.valid)) << c.valid;
    std::string valid = c.bytes;
    EXPECT_EQ(DropInvalidUtf8(&valid), c.dropped);
    EXPECT_EQ(valid, c.valid);
  }
}

TEST(TokenizerTest, BasicTokenizeSplitsCleansAndLowerCases) {
  FullTokenizer uncased(LoadVocab("bert-base-uncased-vocab.txt"), TokenizerOptions{});
  std::vector<std::string> words;
  TokenizeStats stats;
  uncased.BasicTokenize("  H\xC3\xA9llo,\tW\x01orld!\xE4\xB8\xAD\xE6\x96\x87 \xC4\xB0" "Z\xE2\x80\x8B", &words,
                        &stats);
  EXPECT_EQ(words, (std::vector<std::string>{"hello", ",", "world", "!", "\xE4\xB8\xAD", "\xE6\x96\x87", "iz"}));
  EXPECT_EQ(stats.num_words, 7u);

  FullTokenizer cased(LoadVocab("bert-base-uncased-vocab.txt"), TokenizerOptions{false, 100});
  words.clear();
  cased.BasicTokenize("H\xC3\xA9llo, \xCE\x9F\xCE\xA3.", &words);
  EXPECT_EQ(words, (std::vector<std::string>{"H\xC3\xA9llo", ",", "\xCE\x9F\xCE\xA3", "."}));
}

TEST(TokenizerTest, FinalSigmaLooksAcrossCaseIgnorablePunctuationWithinTheWord) {
  FullTokenizer uncased(LoadVocab("bert-base-uncased-vocab.txt"), TokenizerOptions{});
  std::vector<std::string> words;
  // "ΑΣ." -> final ς (the '.' is case-ignorable); "ΑΣ.Β" -> σ (a cased letter follows).
  uncased.BasicTokenize("\xCE\x91\xCE\xA3. \xCE\x91\xCE\xA3.\xCE\x92", &words);
  EXPECT_EQ(words, (std::vector<std::string>{"\xCE\xB1\xCF\x82", ".", "\xCE\xB1\xCF\x83", ".", "\xCE\xB2"}));
}

TEST(TokenizerTest, EmptyAndBlankTextGiveNoIds) {
  FullTokenizer tokenizer(LoadVocab("bert-base-uncased-vocab.txt"), TokenizerOptions{});
  EXPECT_TRUE(tokenizer.Encode("").empty());
  EXPECT_TRUE(tokenizer.Encode(std::string(" \t\r\n\xE2\x80\xA8\x00\x01\x7F", 11)).empty());
  EXPECT_TRUE(tokenizer.Encode("\xCC\x81\xCC\x82").empty());  // combining marks only
}

TEST(TokenizerTest, ManyThreadsEncodingConcurrentlyAgreeWithOneThread) {
  std::vector<FixtureCase> cases = LoadFixture("uncased.jsonl");
  FullTokenizer tokenizer(LoadVocab("bert-base-uncased-vocab.txt"), TokenizerOptions{});
  std::vector<std::vector<int32_t>> expected;
  for (const FixtureCase& c : cases) expected.push_back(tokenizer.Encode(c.text));
  constexpr int kThreads = 8;
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 50; ++round) {
        for (size_t i = 0; i < cases.size(); ++i) {
          // Each thread walks the cases from a different offset so different paths interleave.
          const size_t k = (i + static_cast<size_t>(t) * 7) % cases.size();
          if (tokenizer.Encode(cases[k].text) != expected[k]) ++mismatches[t];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

}  // namespace
}  // namespace bert
