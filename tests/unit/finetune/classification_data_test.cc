// Fine-tuning data: JSONL/CSV/TSV readers, one-line errors naming file, line
// and field, the label map's stable order, and encoding with BERT's
// _truncate_seq_pair.
#include "finetune/classification_data.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace bert::finetune {
namespace {

using bert::testing::TempDir;
using bert::testing::WriteText;

class ClassificationDataTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& contents) {
    WriteText(dir_ / name, contents);
    return dir_ / name;
  }
  // The error message of reading `contents` as file `name`.
  std::string ErrorOf(const std::string& name, const std::string& contents, FieldNames fields = {}) {
    Result<std::vector<Example>> r = ReadExamples(Write(name, contents), fields);
    EXPECT_FALSE(r.ok()) << contents;
    return r.ok() ? "" : r.status().message();
  }
  TempDir dir_;
};

TEST_F(ClassificationDataTest, ReadsJsonlWithLinesAndNonStringLabels) {
  const std::string path = Write("a.jsonl", "{\"text\": \"good film\", \"label\": \"pos\"}\n\n"
                                            "{\"text\": \"bad\", \"label\": 0, \"extra\": [1]}\n"
                                            "{\"text\": \"so-so\", \"label\": true}");
  Result<std::vector<Example>> r = ReadExamples(path, FieldNames());
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].text, "good film");
  EXPECT_EQ((*r)[0].label, "pos");
  EXPECT_EQ((*r)[0].line, 1);
  EXPECT_EQ((*r)[1].label, "0");
  EXPECT_EQ((*r)[1].line, 3);  // the blank line counts
  EXPECT_EQ((*r)[2].label, "true");
}

TEST_F(ClassificationDataTest, CsvFollowsRfc4180Quoting) {
  const std::string path = Write("a.csv",
                                 "label,text\r\n"
                                 "pos,\"a, b and \"\"c\"\"\"\r\n"
                                 "neg,\"two\nlines\"\n"
                                 "\n"
                                 "neg,plain\n");
  Result<std::vector<Example>> r = ReadExamples(path, FieldNames());
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].text, "a, b and \"c\"");
  EXPECT_EQ((*r)[0].line, 2);
  EXPECT_EQ((*r)[1].text, "two\nlines");
  EXPECT_EQ((*r)[1].line, 3);
  EXPECT_EQ((*r)[2].text, "plain");
  EXPECT_EQ((*r)[2].line, 6);  // after the quoted line break and a blank line
}

TEST_F(ClassificationDataTest, TsvAndCustomFieldNamesAndPairs) {
  FieldNames fields;
  fields.text = "premise";
  fields.text_pair = "hypothesis";
  fields.label = "gold";
  const std::string path = Write("nli.tsv", "gold\tpremise\thypothesis\nentail\tA \"man\" sleeps.\tSomeone sleeps.\n");
  Result<std::vector<Example>> r = ReadExamples(path, fields);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].text, "A \"man\" sleeps.");  // TSV has no quoting
  EXPECT_EQ((*r)[0].text_pair, "Someone sleeps.");
  EXPECT_EQ((*r)[0].label, "entail");
  const std::string jsonl = Write("nli.jsonl", "{\"premise\": \"p\", \"hypothesis\": \"h\", \"gold\": \"x\"}\n");
  r = ReadExamples(jsonl, fields);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)[0].text_pair, "h");
}

TEST_F(ClassificationDataTest, ExplicitFormatOverridesExtension) {
  const std::string path = Write("data.txt", "text,label\nhello,a\n");
  EXPECT_FALSE(ReadExamples(path, FieldNames()).ok());
  Result<std::vector<Example>> r = ReadExamples(path, FieldNames(), FileFormat::kCsv);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)[0].text, "hello");
  EXPECT_EQ(ParseFileFormat("tsv").value(), FileFormat::kTsv);
  EXPECT_FALSE(ParseFileFormat("xml").ok());
}

TEST_F(ClassificationDataTest, PredictionInputMayLackLabels) {
  const std::string path = Write("in.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\", \"label\": \"x\"}\n");
  Result<std::vector<Example>> r = ReadExamples(path, FieldNames(), FileFormat::kAuto, /*require_label=*/false);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)[0].label, "");
  EXPECT_EQ((*r)[1].label, "x");
  const std::string csv = Write("in.csv", "text\nhello\n");
  r = ReadExamples(csv, FieldNames(), FileFormat::kAuto, false);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ((*r)[0].text, "hello");
}

TEST_F(ClassificationDataTest, EveryErrorNamesFileLineAndField) {
  const std::string base = dir_.path();
  EXPECT_EQ(ErrorOf("m.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n{\"label\": \"y\"}\n"),
            base + "/m.jsonl:2: missing field \"text\"");
  EXPECT_EQ(ErrorOf("l.jsonl", "{\"text\": \"a\"}\n"), base + "/l.jsonl:1: missing field \"label\"");
  EXPECT_EQ(ErrorOf("e.jsonl", "{\"text\": \"  \", \"label\": \"x\"}\n"), base + "/e.jsonl:1: field \"text\" is empty");
  EXPECT_EQ(ErrorOf("u.jsonl", "{\"text\": \"ok\", \"label\": \"x\"}\n{\"text\": \"\xff\", \"label\": \"x\"}\n"),
            base + "/u.jsonl:2: not valid UTF-8");
  EXPECT_EQ(ErrorOf("j.jsonl", "{\"text\": \"a\", \"label\": \"x\"\n"), base + "/j.jsonl:1: not valid JSON");
  EXPECT_EQ(ErrorOf("t.jsonl", "{\"text\": 5, \"label\": \"x\"}\n"),
            base + "/t.jsonl:1: field \"text\" must be a string, got number");
  EXPECT_EQ(ErrorOf("h.csv", "sentence,label\na,b\n"),
            base + "/h.csv:1: missing field \"text\" in the header (columns: sentence, label)");
  EXPECT_EQ(ErrorOf("n.csv", "text,label\na,b\nc\n"), base + "/n.csv:3: 1 fields, the header has 2");
  EXPECT_EQ(ErrorOf("q.csv", "text,label\n\"open,b\n"),
            base + "/q.csv:2: unterminated quoted field (a \" without its closing \")");
  EXPECT_EQ(ErrorOf("x.csv", "text,label\n\"quoted\"tail,b\n"),
            base + "/x.csv:2: text after a closing quote (write a quote inside a quoted field as \"\")");
  EXPECT_EQ(ErrorOf("v.csv", "text,label\nok,a\nbad\xc3,b\n"), base + "/v.csv:3: not valid UTF-8");
  EXPECT_EQ(ErrorOf("w.tsv", "text\tlabel\n\tb\n"), base + "/w.tsv:2: field \"text\" is empty");
  Result<std::vector<Example>> missing = ReadExamples(base + "/nope.jsonl", FieldNames());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.jsonl"), std::string::npos);
}

TEST(LabelMapTest, SortedByteOrderIndependentOfFileOrder) {
  std::vector<Example> a = {{"t", "", "sports", 1}, {"t", "", "Politics", 2}, {"t", "", "arts", 3}, {"t", "", "sports", 4}};
  std::vector<Example> b(a.rbegin(), a.rend());
  Result<LabelMap> ma = LabelMap::FromExamples(a, "train.jsonl");
  Result<LabelMap> mb = LabelMap::FromExamples(b, "train.jsonl");
  ASSERT_TRUE(ma.ok() && mb.ok());
  EXPECT_EQ(ma->names(), (std::vector<std::string>{"Politics", "arts", "sports"}));
  EXPECT_EQ(mb->names(), ma->names());
  EXPECT_EQ(ma->IdOf("sports", "dev.jsonl", 3).value(), 2);
}

TEST(LabelMapTest, UnknownLabelAndTooFewLabelsAreNamed) {
  std::vector<Example> a = {{"t", "", "neg", 1}, {"t", "", "pos", 2}};
  LabelMap map = LabelMap::FromExamples(a, "train.jsonl").value();
  Result<int32_t> id = map.IdOf("neutral", "dev.jsonl", 7);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().message(), "dev.jsonl:7: unknown label \"neutral\" (the training data has: neg, pos)");
  Result<LabelMap> one = LabelMap::FromExamples({{"t", "", "pos", 1}, {"u", "", "pos", 2}}, "train.jsonl");
  ASSERT_FALSE(one.ok());
  EXPECT_EQ(one.status().message(), "train.jsonl: classification needs at least 2 distinct labels, found only \"pos\"");
  EXPECT_FALSE(LabelMap::FromNames({"a", "b", "a"}, "config.json").ok());
  EXPECT_FALSE(LabelMap::FromNames({"a", ""}, "config.json").ok());
  EXPECT_EQ(LabelMap::FromNames({"z", "a"}, "config.json")->names(), (std::vector<std::string>{"z", "a"}));
}

// Words w0..w9 are single tokens (ids 5..14).
std::shared_ptr<const Vocab> TestVocab() {
  std::vector<std::string> tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (int i = 0; i < 10; ++i) tokens.push_back("w" + std::to_string(i));
  return Vocab::FromTokens(tokens).value();
}

std::string Words(int from, int n) {
  std::string text;
  for (int i = 0; i < n; ++i) text += (text.empty() ? "" : " ") + std::string("w") + std::to_string(from + i);
  return text;
}

// BERT's run_classifier.py _truncate_seq_pair, transcribed.
void ReferenceTruncate(std::vector<int>* a, std::vector<int>* b, size_t max_length) {
  while (a->size() + b->size() > max_length) {
    if (a->size() > b->size()) {
      a->pop_back();
    } else {
      b->pop_back();
    }
  }
}

TEST(EncodeTest, SingleTextGetsClsSepAndTypeZero) {
  FullTokenizer tokenizer(TestVocab(), TokenizerOptions());
  LabelMap labels = LabelMap::FromNames({"a", "b"}, "x").value();
  Result<EncodedSet> set = EncodeExamples({{"w0 W1", "", "b", 1}, {"w2", "", "", 2}}, labels, tokenizer, 8, "d.jsonl");
  ASSERT_TRUE(set.ok()) << set.status().message();
  EXPECT_EQ(set->features[0].input_ids, (std::vector<int32_t>{2, 5, 6, 3}));
  EXPECT_EQ(set->features[0].token_type_ids, (std::vector<int32_t>{0, 0, 0, 0}));
  EXPECT_EQ(set->features[0].label, 1);
  EXPECT_EQ(set->features[1].label, -1);
  EXPECT_EQ(set->truncated, 0);
  set = EncodeExamples({{Words(0, 10), "", "a", 1}}, labels, tokenizer, 5, "d.jsonl");
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->features[0].input_ids, (std::vector<int32_t>{2, 5, 6, 7, 3}));
  EXPECT_EQ(set->truncated, 1);
}

TEST(EncodeTest, PairTruncationMatchesTruncateSeqPair) {
  FullTokenizer tokenizer(TestVocab(), TokenizerOptions());
  LabelMap labels = LabelMap::FromNames({"a", "b"}, "x").value();
  for (int len_a = 1; len_a <= 10; ++len_a) {
    for (int len_b = 1; len_b <= 10; ++len_b) {
      for (int32_t max_seq_len = 4; max_seq_len <= 16; ++max_seq_len) {
        std::vector<int> a, b;
        for (int i = 0; i < len_a; ++i) a.push_back(5 + i);
        for (int i = 0; i < len_b; ++i) b.push_back(5 + i);
        ReferenceTruncate(&a, &b, max_seq_len - 3);
        std::vector<int32_t> expected = {2};
        expected.insert(expected.end(), a.begin(), a.end());
        expected.push_back(3);
        std::vector<int32_t> types(expected.size(), 0);
        expected.insert(expected.end(), b.begin(), b.end());
        expected.push_back(3);
        types.resize(expected.size(), 1);
        Result<EncodedSet> set =
            EncodeExamples({{Words(0, len_a), Words(0, len_b), "a", 1}}, labels, tokenizer, max_seq_len, "p.jsonl");
        ASSERT_TRUE(set.ok()) << set.status().message();
        ASSERT_EQ(set->features[0].input_ids, expected) << len_a << " " << len_b << " " << max_seq_len;
        ASSERT_EQ(set->features[0].token_type_ids, types);
        ASSERT_EQ(set->truncated, len_a + len_b > max_seq_len - 3 ? 1 : 0);
      }
    }
  }
}

TEST(EncodeTest, UnknownLabelIsNamedWithFileAndLine) {
  FullTokenizer tokenizer(TestVocab(), TokenizerOptions());
  LabelMap labels = LabelMap::FromNames({"a", "b"}, "x").value();
  Result<EncodedSet> set = EncodeExamples({{"w0", "", "a", 1}, {"w1", "", "c", 4}}, labels, tokenizer, 8, "dev.csv");
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().message(), "dev.csv:4: unknown label \"c\" (the training data has: a, b)");
}

}  // namespace
}  // namespace bert::finetune
