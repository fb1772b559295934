// Tests for the WordPiece vocabulary trainer (datapipe/vocab_trainer.h).
#include "datapipe/vocab_trainer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "common/file_util.h"
#include "datapipe/tokenizer.h"
#include "datapipe/vocab.h"
#include "test_util.h"

namespace bert {
namespace {

const std::vector<std::string> kSpecials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

VocabTrainerOptions Options(int32_t vocab_size, uint64_t min_frequency = 2) {
  VocabTrainerOptions options;
  options.vocab_size = vocab_size;
  options.min_frequency = min_frequency;
  return options;
}

// The pieces learned after the specials and the alphabet.
std::vector<std::string> Learned(const TrainedVocab& vocab) {
  return {vocab.tokens.begin() + vocab.num_special + vocab.num_alphabet, vocab.tokens.end()};
}

// A deterministic pseudo-random corpus: words over a small alphabet with
// Zipf-like frequencies, so there is plenty to merge.
std::vector<std::string> SyntheticDocuments(int num_documents) {
  std::mt19937 rng(12345);
  const std::string letters = "abcdefghijklmnoprstu";
  std::vector<std::string> lexicon;
  for (int i = 0; i < 400; ++i) {
    std::string word;
    for (size_t len = 2 + rng() % 8; word.size() < len;) word.push_back(letters[rng() % letters.size()]);
    lexicon.push_back(word);
  }
  std::vector<std::string> documents;
  for (int d = 0; d < num_documents; ++d) {
    std::string text;
    for (int w = 0; w < 200; ++w) {
      size_t rank = rng() % lexicon.size();
      rank = rank * (rng() % (rank + 1)) / lexicon.size();  // skews toward small ranks
      text += lexicon[rank] + (w % 17 == 16 ? ". " : " ");
    }
    documents.push_back(text);
  }
  return documents;
}

// Sennrich et al. (2016), section 3.2, with BERT's "##" continuations. Ties
// go to the smaller symbol ids: ##es (##e < ##s) before ##st, lo before ##ow,
// and ##west (an alphabet symbol first) before the later-learned ne + ##w.
TEST(LearnWordPieceTest, LearnsKnownMergesInOrder) {
  std::vector<WordCount> words = {{"low", 5}, {"lower", 2}, {"newest", 6}, {"widest", 3}};
  // 5 specials + 10 characters + 8 ## forms (d e i o r s t w occur inside words).
  Result<TrainedVocab> vocab = LearnWordPiece(words, Options(5 + 18 + 7));
  ASSERT_TRUE(vocab.ok()) << vocab.status().ToString();
  EXPECT_EQ(vocab->num_alphabet_chars, 10);
  EXPECT_EQ(vocab->num_alphabet, 18);
  EXPECT_EQ(Learned(*vocab), (std::vector<std::string>{"##es", "##est", "lo", "low", "ne", "##west", "newest"}));
  EXPECT_FALSE(vocab->ran_out_of_merges);
}

TEST(LearnWordPieceTest, LayoutIsSpecialsCharactersContinuationsThenPieces) {
  std::vector<WordCount> words = {{"low", 5}, {"lower", 2}, {"newest", 6}, {"widest", 3}};
  Result<TrainedVocab> vocab = LearnWordPiece(words, Options(26));
  ASSERT_TRUE(vocab.ok()) << vocab.status().ToString();
  std::vector<std::string> expected = kSpecials;
  for (const char* ch : {"d", "e", "i", "l", "n", "o", "r", "s", "t", "w"}) expected.push_back(ch);
  for (const char* ch : {"##d", "##e", "##i", "##o", "##r", "##s", "##t", "##w"}) expected.push_back(ch);
  for (const char* piece : {"##es", "##est", "lo"}) expected.push_back(piece);
  EXPECT_EQ(vocab->tokens, expected);
  EXPECT_EQ(vocab->ToFileContents().substr(0, 12), "[PAD]\n[UNK]\n");
}

// The likelihood score prefers a pair whose parts always occur together
// ("q" + "##u") over a merely frequent one ("t" + "##a").
TEST(LearnWordPieceTest, LikelihoodPrefersPairsThatAlwaysCoOccur) {
  std::vector<WordCount> words = {{"qu", 5}, {"ta", 50}, {"te", 50}, {"to", 50}};
  VocabTrainerOptions options = Options(5 + 10 + 1);  // alphabet: a e o q t u ##a ##e ##o ##u
  Result<TrainedVocab> by_frequency = LearnWordPiece(words, options);
  options.score = MergeScore::kLikelihood;
  Result<TrainedVocab> by_likelihood = LearnWordPiece(words, options);
  ASSERT_TRUE(by_frequency.ok() && by_likelihood.ok());
  EXPECT_EQ(Learned(*by_frequency), std::vector<std::string>{"ta"});
  EXPECT_EQ(Learned(*by_likelihood), std::vector<std::string>{"qu"});
}

TEST(LearnWordPieceTest, HasExactlyTheRequestedSizeWithoutDuplicates) {
  Result<WordCountResult> counts = CountWordsInTexts(SyntheticDocuments(50), WordCountOptions());
  ASSERT_TRUE(counts.ok()) << counts.status().ToString();
  for (MergeScore score : {MergeScore::kFrequency, MergeScore::kLikelihood}) {
    for (int32_t size : {46, 100, 333}) {  // 46: 5 specials + 21 characters + 20 ## forms
      VocabTrainerOptions options = Options(size);
      options.score = score;
      Result<TrainedVocab> vocab = LearnWordPiece(counts->words, options);
      ASSERT_TRUE(vocab.ok()) << vocab.status().ToString();
      EXPECT_EQ(vocab->tokens.size(), static_cast<size_t>(size)) << MergeScoreName(score);
      EXPECT_EQ(std::vector<std::string>(vocab->tokens.begin(), vocab->tokens.begin() + 5), kSpecials);
      EXPECT_EQ(std::set<std::string>(vocab->tokens.begin(), vocab->tokens.end()).size(), vocab->tokens.size());
      EXPECT_FALSE(vocab->ran_out_of_merges);
    }
  }
}

TEST(LearnWordPieceTest, StopsShortWhenNoPairReachesMinFrequency) {
  std::vector<WordCount> words = {{"ab", 3}, {"cd", 1}};
  Result<TrainedVocab> vocab = LearnWordPiece(words, Options(1000));
  ASSERT_TRUE(vocab.ok());
  EXPECT_TRUE(vocab->ran_out_of_merges);
  EXPECT_EQ(Learned(*vocab), std::vector<std::string>{"ab"});  // c and d are too rare for the alphabet
  EXPECT_LT(vocab->tokens.size(), 1000u);
}

TEST(LearnWordPieceTest, RejectsASizeThatCannotHoldSpecialsAndAlphabet) {
  std::vector<WordCount> words = {{"low", 5}, {"lower", 2}, {"newest", 6}, {"widest", 3}};
  Result<TrainedVocab> vocab = LearnWordPiece(words, Options(10));
  ASSERT_FALSE(vocab.ok());
  EXPECT_EQ(vocab.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(vocab.status().message().find("at least 23"), std::string::npos) << vocab.status().message();
  EXPECT_FALSE(LearnWordPiece(words, Options(100, 0)).ok());  // min frequency 0
}

// Rare characters spend no budget; words holding them are left out.
TEST(LearnWordPieceTest, BoundsTheAlphabet) {
  std::vector<WordCount> words = {{"abab", 1000}, {"bab", 1000}, {"xab", 1}, {"ay", 5}};
  Result<TrainedVocab> vocab = LearnWordPiece(words, Options(50));  // x: once, below min frequency
  ASSERT_TRUE(vocab.ok());
  std::set<std::string> tokens(vocab->tokens.begin(), vocab->tokens.end());
  EXPECT_EQ(tokens.count("x"), 0u);
  EXPECT_EQ(tokens.count("##y"), 1u);
  EXPECT_EQ(vocab->words_skipped, 1u);

  VocabTrainerOptions options = Options(50);
  options.alphabet_coverage = 0.999;  // "y" is 5 of 7013 character occurrences
  vocab = LearnWordPiece(words, options);
  ASSERT_TRUE(vocab.ok());
  EXPECT_EQ(vocab->num_alphabet_chars, 2);  // a, b
  EXPECT_EQ(vocab->words_skipped, 2u);
  options = Options(50);
  options.max_alphabet_chars = 1;
  vocab = LearnWordPiece(words, options);
  ASSERT_TRUE(vocab.ok());
  EXPECT_EQ(vocab->num_alphabet_chars, 1);
}

TEST(LearnWordPieceTest, InputOrderAndDuplicatesDoNotMatter) {
  std::vector<WordCount> words = {{"widest", 3}, {"newest", 4}, {"low", 5}, {"lower", 2}, {"newest", 2}};
  std::vector<WordCount> canonical = {{"low", 5}, {"lower", 2}, {"newest", 6}, {"widest", 3}};
  Result<TrainedVocab> a = LearnWordPiece(words, Options(30));
  Result<TrainedVocab> b = LearnWordPiece(canonical, Options(30));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->tokens, b->tokens);
}

// Words a tokenizer produces, counted: the figures the trainer relies on.
TEST(CountWordsTest, CountsBasicTokenizerWords) {
  Result<WordCountResult> counts = CountWordsInTexts({"Hello, hello World!", "world"}, WordCountOptions());
  ASSERT_TRUE(counts.ok()) << counts.status().ToString();
  std::vector<std::pair<std::string, uint64_t>> got;
  for (const WordCount& wc : counts->words) got.emplace_back(wc.word, wc.count);
  EXPECT_EQ(got, (std::vector<std::pair<std::string, uint64_t>>{{"!", 1}, {",", 1}, {"hello", 2}, {"world", 2}}));
  EXPECT_EQ(counts->num_documents, 2u);
  EXPECT_EQ(counts->num_words, 6u);
  WordCountOptions cased;
  cased.lower_case = false;
  counts = CountWordsInTexts({"Hello hello"}, cased);
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->words.size(), 2u);
}

// BERT's input format: the sentences of a document are counted together.
TEST(CountWordsTest, ReadsTheLinesFormat) {
  testing::TempDir dir;
  testing::WriteText(dir / "corpus.txt", "One sentence.\nAnother one\n\nA second document.\n");
  WordCountOptions options;
  options.reader.format = InputFormat::kLines;
  Result<WordCountResult> counts = CountWordsInFiles({dir / "corpus.txt"}, options);
  ASSERT_TRUE(counts.ok()) << counts.status().ToString();
  EXPECT_EQ(counts->num_documents, 2u);
  EXPECT_EQ(counts->num_words, 9u);
  ASSERT_EQ(counts->words.size(), 7u);  // . a another document one second sentence
  EXPECT_EQ(counts->words[0].word, ".");
  EXPECT_EQ(counts->words[0].count, 2u);
  EXPECT_EQ(counts->reader_stats.documents, 2u);
}

// The vocabulary is a function of the corpus alone: byte-identical for 1, 2
// and 4 counting threads, from memory and from files.
TEST(VocabTrainerDeterminismTest, SameVocabularyForAnyThreadCount) {
  std::vector<std::string> documents = SyntheticDocuments(300);
  testing::TempDir dir;
  std::vector<std::string> files;
  for (size_t i = 0; i < 7; ++i) {
    std::string contents;
    for (size_t d = i; d < documents.size(); d += 7) contents += documents[d] + "\n";
    files.push_back(dir / ("part" + std::to_string(i) + ".txt"));
    ASSERT_TRUE(WriteFileAtomic(files.back(), contents).ok());
  }
  std::string reference;
  for (int threads : {1, 2, 4}) {
    WordCountOptions options;
    options.num_threads = threads;
    for (bool from_files : {false, true}) {
      Result<WordCountResult> counts =
          from_files ? CountWordsInFiles(files, options) : CountWordsInTexts(documents, options);
      ASSERT_TRUE(counts.ok()) << counts.status().ToString();
      EXPECT_EQ(counts->num_words, 300u * 200u + 300u * 11u);  // words + ". " every 17th word
      Result<TrainedVocab> vocab = LearnWordPiece(counts->words, Options(500));
      ASSERT_TRUE(vocab.ok()) << vocab.status().ToString();
      std::string contents = vocab->ToFileContents();
      if (reference.empty()) reference = contents;
      EXPECT_EQ(contents, reference) << threads << " threads, from " << (from_files ? "files" : "memory");
    }
  }
}

// The file loads as a BERT vocabulary, and any text made of alphabet
// characters (words never seen in training included) encodes without [UNK]
// and decodes back to the words.
TEST(VocabTrainerRoundTripTest, LoadsAndEncodesWithoutUnknowns) {
  Result<WordCountResult> counts = CountWordsInTexts(SyntheticDocuments(100), WordCountOptions());
  ASSERT_TRUE(counts.ok());
  Result<TrainedVocab> trained = LearnWordPiece(counts->words, Options(300));
  ASSERT_TRUE(trained.ok()) << trained.status().ToString();
  testing::TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir / "vocab.txt", trained->ToFileContents()).ok());
  Result<std::shared_ptr<const Vocab>> vocab = Vocab::Load(dir / "vocab.txt");
  ASSERT_TRUE(vocab.ok()) << vocab.status().ToString();
  EXPECT_EQ((*vocab)->size(), 300);
  EXPECT_EQ((*vocab)->pad_id(), 0);
  EXPECT_EQ((*vocab)->unk_id(), 1);
  EXPECT_EQ((*vocab)->mask_id(), 4);

  FullTokenizer tokenizer(*vocab, TokenizerOptions());
  const std::string text = "Tubular cider. Brandished at dusk. Unseen pandas rummage in cold attics.";
  std::vector<std::string> words;
  tokenizer.BasicTokenize(text, &words);
  std::vector<std::string> pieces = tokenizer.Tokenize(text);
  EXPECT_EQ(std::count(pieces.begin(), pieces.end(), "[UNK]"), 0);
  std::vector<std::string> rejoined;
  for (const std::string& piece : pieces) {
    if (piece.rfind("##", 0) == 0) {
      ASSERT_FALSE(rejoined.empty());
      rejoined.back() += piece.substr(2);
    } else {
      rejoined.push_back(piece);
    }
  }
  EXPECT_EQ(rejoined, words);
  EXPECT_LT(pieces.size(), 2 * words.size() + 30) << "learned pieces should be used, not just characters";
}

}  // namespace
}  // namespace bert
