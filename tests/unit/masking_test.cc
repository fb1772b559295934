// Masking: the reference's count rule (Python rounding), special tokens never
// masked, the 80/10/10 split and position uniformity over 100k samples,
// whole-word masking, and determinism of the keyed draws.
#include "datapipe/masking.h"

#include <gtest/gtest.h>

#include <random>

#include "datapipe/chinese_words.h"
#include "datapipe/random.h"
#include "unit/synthetic_corpus.h"

namespace bert {
namespace {

using testing::SyntheticVocab;

// [CLS] A [SEP] B [SEP] of random words, `length` tokens in all.
TrainingSample RandomSample(std::mt19937_64* rng, size_t length) {
  TrainingSample s;
  size_t len_a = 1 + (*rng)() % (length - 4);
  s.input_ids.push_back(101);
  while (s.input_ids.size() < len_a + 1) testing::AppendWord(rng, &s.input_ids);
  s.input_ids.resize(len_a + 1);
  s.input_ids.push_back(102);
  s.segment_b_start = static_cast<uint32_t>(s.input_ids.size());
  while (s.input_ids.size() < length - 1) testing::AppendWord(rng, &s.input_ids);
  s.input_ids.resize(length - 1);
  s.input_ids.push_back(102);
  return s;
}

TEST(MaskingTest, NumToPredictFollowsTheReferenceRounding) {
  MaskingOptions options;  // 0.15, at most 20
  // Python: min(20, max(1, int(round(n * 0.15)))); round() is half-to-even.
  EXPECT_EQ(NumToPredict(options, 3), 1);    // 0.45 -> 0 -> at least 1
  EXPECT_EQ(NumToPredict(options, 10), 2);   // 1.5 -> 2
  EXPECT_EQ(NumToPredict(options, 30), 4);   // 4.5 -> 4 (half to even)
  EXPECT_EQ(NumToPredict(options, 70), 10);  // 10.5 -> 10
  EXPECT_EQ(NumToPredict(options, 50), 8);   // 7.5 -> 8
  EXPECT_EQ(NumToPredict(options, 128), 19);
  EXPECT_EQ(NumToPredict(options, 130), 20);
  EXPECT_EQ(NumToPredict(options, 512), 20);
  options.max_predictions = 80;
  EXPECT_EQ(NumToPredict(options, 512), 77);
  options.masked_lm_prob = 0.2;
  EXPECT_EQ(NumToPredict(options, 128), 26);  // 25.6
}

TEST(MaskingTest, RateSplitAndPositionsOver100kSamples) {
  const MaskingVocab vocab = SyntheticVocab();
  MaskingOptions options;
  std::mt19937_64 rng(1);
  uint64_t masked = 0, as_mask = 0, kept = 0, replaced = 0;
  std::vector<uint64_t> per_position(128, 0);
  const int kSamples = 100000;
  for (int i = 0; i < kSamples; ++i) {
    TrainingSample s = RandomSample(&rng, 128);
    const TrainingSample original = s;
    ApplyMasking(options, vocab, rnd::Hash(3, rnd::kStreamMasking, 0, i), &s);
    ASSERT_EQ(s.masked_positions.size(), 19u);  // every sample has >= 19 candidates
    ASSERT_EQ(s.masked_labels.size(), 19u);
    for (size_t k = 0; k < s.masked_positions.size(); ++k) {
      const uint16_t pos = s.masked_positions[k];
      if (k > 0) {
        ASSERT_LT(s.masked_positions[k - 1], pos);
      }
      ASSERT_FALSE(vocab.IsSpecial(original.input_ids[pos])) << "masked a special token at " << pos;
      ASSERT_EQ(s.masked_labels[k], original.input_ids[pos]);
      ++per_position[pos];
      int32_t now = s.input_ids[pos];
      if (now == vocab.mask_id) ++as_mask;
      else if (now == original.input_ids[pos]) ++kept;
      else ++replaced;
    }
    masked += s.masked_positions.size();
    // Positions not chosen are untouched.
    std::vector<int32_t> restored = s.input_ids;
    for (size_t k = 0; k < s.masked_positions.size(); ++k) restored[s.masked_positions[k]] = s.masked_labels[k];
    ASSERT_EQ(restored, original.input_ids);
  }
  // 1.9M masked positions: one sigma of a share is < 0.0003; tolerances are ~10 sigma.
  EXPECT_NEAR(static_cast<double>(as_mask) / masked, 0.8, 0.003);
  EXPECT_NEAR(static_cast<double>(replaced) / masked, 0.1, 0.003);  // a random id equal to the original counts as kept
  EXPECT_NEAR(static_cast<double>(kept) / masked, 0.1, 0.003);
  EXPECT_NEAR(static_cast<double>(masked) / (kSamples * 128.0), 19.0 / 128, 1e-9);
  // Every non-special position is equally likely: 100k * 19 / 125 = 15.2k
  // each, sigma ~120; the middle [SEP] takes ~1/124 of each position's turns.
  const double expected = static_cast<double>(masked) / 125;
  for (int pos = 1; pos < 127; ++pos) {
    EXPECT_NEAR(per_position[pos] / expected, 1.0, 0.04) << "position " << pos;
  }
  EXPECT_EQ(per_position[0], 0u);
  EXPECT_EQ(per_position[127], 0u);
}

TEST(MaskingTest, RandomReplacementsCoverTheVocabulary) {
  const MaskingVocab vocab = SyntheticVocab();
  MaskingOptions options;
  options.masked_lm_prob = 1.0;
  options.max_predictions = 1000;
  std::mt19937_64 rng(2);
  std::vector<uint64_t> deciles(10, 0);
  for (int i = 0; i < 2000; ++i) {
    TrainingSample s = RandomSample(&rng, 512), original = s;
    ApplyMasking(options, vocab, rnd::Hash(4, rnd::kStreamMasking, 0, i), &s);
    for (uint16_t pos : s.masked_positions) {
      int32_t now = s.input_ids[pos];
      if (now != vocab.mask_id && now != original.input_ids[pos]) ++deciles[now * 10 / vocab.vocab_size];
    }
  }
  // ~100k replacements, ~10k per decile of the id range.
  for (int d = 0; d < 10; ++d) EXPECT_NEAR(deciles[d], 10100, 700) << "decile " << d;
}

TEST(MaskingTest, WholeWordMaskingTakesWordsWithAllTheirPieces) {
  const MaskingVocab vocab = SyntheticVocab();
  MaskingOptions options;
  options.whole_word = true;
  std::mt19937_64 rng(5);
  uint64_t partial_words_without_wwm = 0;
  for (int i = 0; i < 20000; ++i) {
    TrainingSample s = RandomSample(&rng, 64 + i % 65), original = s, plain = s;
    ApplyMasking(options, vocab, rnd::Hash(5, rnd::kStreamMasking, 0, i), &s);
    const size_t n = original.input_ids.size();
    ASSERT_LE(s.masked_positions.size(), static_cast<size_t>(NumToPredict(options, static_cast<int32_t>(n))));
    ASSERT_GE(s.masked_positions.size() + 3, static_cast<size_t>(NumToPredict(options, static_cast<int32_t>(n))));
    std::vector<bool> chosen(n, false);
    for (uint16_t pos : s.masked_positions) chosen[pos] = true;
    // A word is a non-"##" id followed by its "##" pieces; [SEP] ends a word.
    for (size_t pos = 1; pos < n; ++pos) {
      bool continues = !vocab.IsSpecial(original.input_ids[pos]) && !vocab.IsSpecial(original.input_ids[pos - 1]) &&
                       vocab.is_continuation[original.input_ids[pos]];
      if (continues) {
        ASSERT_EQ(chosen[pos], chosen[pos - 1]) << "sample " << i << " split a word at " << pos;
      }
    }
    MaskingOptions piecewise;
    ApplyMasking(piecewise, vocab, rnd::Hash(5, rnd::kStreamMasking, 0, i), &plain);
    for (size_t pos : plain.masked_positions) {
      if (pos + 1 < n && vocab.is_continuation[original.input_ids[pos + 1]] &&
          !std::binary_search(plain.masked_positions.begin(), plain.masked_positions.end(), pos + 1)) {
        ++partial_words_without_wwm;
      }
    }
  }
  EXPECT_GT(partial_words_without_wwm, 1000u);  // the property above is not vacuous
}

TEST(MaskingTest, SameKeySameMasksOtherKeyOtherMasks) {
  const MaskingVocab vocab = SyntheticVocab();
  MaskingOptions options;
  std::mt19937_64 rng(6);
  int same = 0;
  for (int i = 0; i < 1000; ++i) {
    TrainingSample s = RandomSample(&rng, 128), a = s, b = s, c = s;
    ApplyMasking(options, vocab, rnd::Hash(7, rnd::kStreamMasking, 0, i), &a);
    ApplyMasking(options, vocab, rnd::Hash(7, rnd::kStreamMasking, 0, i), &b);
    ApplyMasking(options, vocab, rnd::Hash(7, rnd::kStreamMasking, 1, i), &c);
    ASSERT_TRUE(a == b);
    same += a.masked_positions == c.masked_positions;
  }
  EXPECT_LT(same, 5);
}

TEST(MaskingTest, OptionsAndVocabularyAreValidated) {
  MaskingOptions options;
  EXPECT_TRUE(options.Validate().ok());
  options.masked_lm_prob = 1.5;
  EXPECT_EQ(options.Validate().message().rfind("--masked-lm-prob:", 0), 0u);
  options = MaskingOptions();
  options.max_predictions = -1;
  EXPECT_EQ(options.Validate().message().rfind("--max-predictions:", 0), 0u);
  auto no_mask = Vocab::FromTokens({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "##b"});
  ASSERT_TRUE(no_mask.ok());
  auto refused = MaskingVocab::FromVocab(**no_mask);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("[MASK]"), std::string::npos);
  auto full = Vocab::FromTokens({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "##b", "#"});
  ASSERT_TRUE(full.ok());
  auto vocab = MaskingVocab::FromVocab(**full);
  ASSERT_TRUE(vocab.ok());
  EXPECT_EQ(vocab->mask_id, 4);
  EXPECT_EQ(vocab->is_continuation, (std::vector<uint8_t>{0, 0, 0, 0, 0, 0, 1, 0}));
}

// Chinese whole-word masking: the characters of one word, as ICU's
// segmenter finds them in the Chinese BERT vocabulary's ids, are masked
// together or not at all; without it they are masked one by one.
class ChineseWordsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::shared_ptr<const Vocab>> loaded =
        Vocab::Load(std::string(BERT_SOURCE_DIR) + "/configs/vocab/bert-base-chinese-vocab.txt");
    ASSERT_TRUE(loaded.ok()) << loaded.status().message();
    vocab_ = *loaded;
    table_ = ChineseCharacterTable(*vocab_);
  }
  // [CLS] then one token per character of `text` (UTF-8), then [SEP].
  std::vector<int32_t> Ids(const std::string& text) const {
    std::vector<int32_t> ids = {vocab_->cls_id()};
    for (size_t i = 0; i < text.size();) {
      size_t n = (static_cast<unsigned char>(text[i]) >= 0xF0) ? 4 : (static_cast<unsigned char>(text[i]) >= 0xE0) ? 3
                 : (static_cast<unsigned char>(text[i]) >= 0xC0) ? 2 : 1;
      const int32_t id = vocab_->Find(text.substr(i, n));
      EXPECT_GE(id, 0) << text.substr(i, n);
      ids.push_back(id);
      i += n;
    }
    ids.push_back(vocab_->sep_id());
    return ids;
  }
  std::shared_ptr<const Vocab> vocab_;
  std::vector<char32_t> table_;
};

TEST_F(ChineseWordsTest, MarksTheCharactersThatContinueAWord) {
  ASSERT_TRUE(CheckChineseSegmenter().ok()) << CheckChineseSegmenter().message();
  // 我 | 爱 | 北京 | 天安门 | ， | 今天 | 天气 | 很好
  const std::vector<int32_t> ids = Ids("我爱北京天安门，今天天气很好");
  std::vector<uint8_t> continues;
  MarkChineseWordContinuations(table_, ids, &continues);
  const std::vector<uint8_t> expected = {0, 0, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 1, 0};
  EXPECT_EQ(continues, expected);
  EXPECT_EQ(table_[static_cast<size_t>(vocab_->Find("，"))], 0u) << "punctuation is no Chinese character";
  EXPECT_EQ(table_[static_cast<size_t>(vocab_->Find("##京"))], 0u) << "a ## piece is not a bare character";
}

TEST_F(ChineseWordsTest, WholeWordMaskingTakesChineseWordsWhole) {
  Result<MaskingVocab> vocab = MaskingVocab::FromVocab(*vocab_);
  ASSERT_TRUE(vocab.ok());
  const std::vector<int32_t> ids = Ids("我爱北京天安门今天天气很好中华人民共和国成立了");
  std::vector<uint8_t> continues;
  MarkChineseWordContinuations(table_, ids, &continues);
  MaskingOptions options;
  options.masked_lm_prob = 0.3;
  options.whole_word = true;
  int split_words[2] = {0, 0};  // samples with a word partly masked: Chinese WWM off, on
  for (int chinese = 0; chinese < 2; ++chinese) {
    options.chinese_words = chinese == 1;
    for (uint64_t key = 0; key < 2000; ++key) {
      TrainingSample sample;
      sample.input_ids = ids;
      sample.segment_b_start = static_cast<uint32_t>(ids.size());
      ApplyMasking(options, *vocab, key, &sample);
      std::vector<uint8_t> masked(ids.size(), 0);
      for (uint16_t p : sample.masked_positions) masked[p] = 1;
      bool split = false;
      for (size_t i = 1; i < ids.size(); ++i) split |= continues[i] && masked[i] != masked[i - 1];
      split_words[chinese] += split;
    }
  }
  EXPECT_EQ(split_words[1], 0) << "a Chinese word was masked in part";
  EXPECT_GT(split_words[0], 1000) << "without it, characters are masked one by one";
}

}  // namespace
}  // namespace bert
