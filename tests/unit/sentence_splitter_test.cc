#include "datapipe/sentence_splitter.h"

#include <gtest/gtest.h>
#include <utf8proc.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace bert {
namespace {

using Sentences = std::vector<std::string>;

Sentences Split(std::string_view text) {
  Sentences out;
  for (std::string_view s : SplitSentences(text)) out.emplace_back(s);
  return out;
}

struct Case {
  const char* text;
  Sentences want;
};

void ExpectCases(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    EXPECT_EQ(Split(c.text), c.want);
  }
}

TEST(SentenceSplitter, TerminalPunctuation) {
  ExpectCases({
      {"Hello world. This is a test.", {"Hello world.", "This is a test."}},
      {"Is it? Yes! Good.", {"Is it?", "Yes!", "Good."}},
      {"What?! No way...", {"What?!", "No way..."}},
      {"Wait... What happened?", {"Wait...", "What happened?"}},
      {"Wait... what happened?", {"Wait... what happened?"}},
      {"Unicode ellipsis\u2026 Then more.", {"Unicode ellipsis\u2026", "Then more."}},
      {"Why? because I said so.", {"Why? because I said so."}},
      {"The value is high. but wait.", {"The value is high. but wait."}},
      {"Done. - next bullet", {"Done.", "- next bullet"}},
      {"Stop. \u00bfQu\u00e9? Nada.", {"Stop.", "\u00bfQu\u00e9?", "Nada."}},
      {"End, then. , more", {"End, then. , more"}},
      {"no terminator at all", {"no terminator at all"}},
      {".", {"."}},
      {"...", {"..."}},
  });
}

TEST(SentenceSplitter, ClosingQuotesAndBrackets) {
  ExpectCases({
      {"He said \"Stop.\" Then he left.", {"He said \"Stop.\"", "Then he left."}},
      {"\"Why?\" he asked.", {"\"Why?\" he asked."}},
      {"(This is an aside.) Then this.", {"(This is an aside.)", "Then this."}},
      {"She said \u2018no.\u2019 Next one.", {"She said \u2018no.\u2019", "Next one."}},
      {"\u201cReally?\u201d \u201cYes.\u201d", {"\u201cReally?\u201d", "\u201cYes.\u201d"}},
      {"Il a cri\u00e9 \u00abArr\u00eate!\u00bb Puis il partit.",
       {"Il a cri\u00e9 \u00abArr\u00eate!\u00bb", "Puis il partit."}},
      {"It ended.\" Then", {"It ended.\"", "Then"}},
      {"Quoted \"Stop.\"Then glued", {"Quoted \"Stop.\"Then glued"}},
      {"Next: \"Quote starts.\" fine", {"Next: \"Quote starts.\" fine"}},
      {"First. \"Second.\"", {"First.", "\"Second.\""}},
      {"First. (Second.)", {"First.", "(Second.)"}},
  });
}

TEST(SentenceSplitter, CjkTerminatorsSplitWithoutWhitespace) {
  ExpectCases({
      {"我爱你。你爱我吗？是的！", {"我爱你。", "你爱我吗？", "是的！"}},
      {"他说：「你好。」我说：『再见！』", {"他说：「你好。」", "我说：『再见！』"}},
      {"（注：这是括号。）然后继续。", {"（注：这是括号。）", "然后继续。"}},
      {"“你好！”他说。", {"“你好！”", "他说。"}},
      {"真的吗？！是的。", {"真的吗？！", "是的。"}},
      {"半角句号｡下一句", {"半角句号｡", "下一句"}},
      {"数字３．１４不分开。", {"数字３．１４不分开。"}},
      {"他说……我不知道。", {"他说……我不知道。"}},
      {"Hello!你好", {"Hello!你好"}},
  });
}

TEST(SentenceSplitter, MixedScripts) {
  ExpectCases({
      {"This is English. 这是中文。And back again.",
       {"This is English.", "这是中文。", "And back again."}},
      {"It ends. Это начало. \u0645\u0631\u062d\u0628\u0627.",
       {"It ends.", "Это начало.", "\u0645\u0631\u062d\u0628\u0627."}},
      {"Greek follows. \u03b1\u03bb\u03c6\u03b1 is lower case.",
       {"Greek follows. \u03b1\u03bb\u03c6\u03b1 is lower case."}},
  });
}

TEST(SentenceSplitter, DecimalsVersionsAndGluedPeriods) {
  ExpectCases({
      {"Pi is 3.14 roughly. It is irrational.", {"Pi is 3.14 roughly.", "It is irrational."}},
      {"Version v1.2.3 is out. Upgrade now.", {"Version v1.2.3 is out.", "Upgrade now."}},
      {"Ping 192.168.0.1 now. Then wait.", {"Ping 192.168.0.1 now.", "Then wait."}},
      {"It costs $4.50 or .75 today.", {"It costs $4.50 or .75 today."}},
      {"Open file.txt and example.com now.", {"Open file.txt and example.com now."}},
      {"Visit example.com. Then leave.", {"Visit example.com.", "Then leave."}},
      {"The year was 1999. Then came 2000.", {"The year was 1999.", "Then came 2000."}},
      {"Back in 1999. 2000 came next.", {"Back in 1999.", "2000 came next."}},
      {"Upgrade to 2.0. It is faster.", {"Upgrade to 2.0.", "It is faster."}},
  });
}

TEST(SentenceSplitter, Abbreviations) {
  ExpectCases({
      {"Mr. Smith met Dr. Jones at St. Mary's.", {"Mr. Smith met Dr. Jones at St. Mary's."}},
      {"Prof. Xavier and Mrs. Grey and Ms. Lee came.", {"Prof. Xavier and Mrs. Grey and Ms. Lee came."}},
      {"See e.g. the manual, i.e. chapter two.", {"See e.g. the manual, i.e. chapter two."}},
      {"Apples vs. Oranges is a classic.", {"Apples vs. Oranges is a classic."}},
      {"Cf. Smith for details.", {"Cf. Smith for details."}},
      {"Smith et al. (2019) showed it.", {"Smith et al. (2019) showed it."}},
      {"The U.S. Army and the U.K. Navy met.", {"The U.S. Army and the U.K. Navy met."}},
      {"Born Jan. 5, 1990 in Ohio.", {"Born Jan. 5, 1990 in Ohio."}},
      {"Acme Inc. Boston and Foo Ltd. London.", {"Acme Inc. Boston and Foo Ltd. London."}},
      {"Gen. Grant and Sen. Smith and Rev. Moon.", {"Gen. Grant and Sen. Smith and Rev. Moon."}},
      {"It weighs approx. 5 kg.", {"It weighs approx. 5 kg."}},
      {"Approx. Ten people came.", {"Approx. Ten people came."}},
      {"Roe v. Wade was decided.", {"Roe v. Wade was decided."}},
      {"He earned a Ph.D. From Yale.", {"He earned a Ph.D. From Yale."}},
      {"Hello\u00a0Mr. Smith and \u201cDr. Who\u201d met.",
       {"Hello\u00a0Mr. Smith and \u201cDr. Who\u201d met."}},
      {"A very long token averyveryveryveryveryverylongwordMr. Then",
       {"A very long token averyveryveryveryveryverylongwordMr.", "Then"}},
  });
}

TEST(SentenceSplitter, AbbreviationsBeforeNumbersOnly) {
  ExpectCases({
      {"See Fig. 3 for details.", {"See Fig. 3 for details."}},
      {"Refer to No. 5 in Vol. 2, p. 12.", {"Refer to No. 5 in Vol. 2, p. 12."}},
      {"He said No. Then he left.", {"He said No.", "Then he left."}},
      {"No. It is not.", {"No.", "It is not."}},
  });
}

// Design choice: "etc.", "a.m." and "p.m." end a sentence before a capital.
TEST(SentenceSplitter, SentenceFinalAbbreviationsSplitBeforeCapitals) {
  ExpectCases({
      {"Apples, pears, etc. Bananas are fine.", {"Apples, pears, etc.", "Bananas are fine."}},
      {"Pens, paper, etc. and a ruler.", {"Pens, paper, etc. and a ruler."}},
      {"The meeting is at 5 p.m. Then we eat.", {"The meeting is at 5 p.m.", "Then we eat."}},
      {"It starts at 9 a.m. sharp.", {"It starts at 9 a.m. sharp."}},
  });
}

TEST(SentenceSplitter, InitialsAndAcronyms) {
  ExpectCases({
      {"J. R. R. Tolkien wrote it.", {"J. R. R. Tolkien wrote it."}},
      {"George W. Bush spoke.", {"George W. Bush spoke."}},
      {"А. С. Пушкин был поэтом.", {"А. С. Пушкин был поэтом."}},
      {"He lived in the U.S.A. For years.", {"He lived in the U.S.A. For years."}},
      {"(J. Smith) wrote.", {"(J. Smith) wrote."}},
      {"The answer is x. Next line.", {"The answer is x.", "Next line."}},
  });
}

TEST(SentenceSplitter, ListNumbersAtLineStart) {
  ExpectCases({
      {"Steps:\n1. Open the file.\n2. Close it.", {"Steps:\n1. Open the file.", "2. Close it."}},
      {"  a. First item\n  b. Second item", {"a. First item\n  b. Second item"}},
      {"We counted to 12. Then stopped.", {"We counted to 12.", "Then stopped."}},
  });
}

TEST(SentenceSplitter, ParagraphBreaks) {
  ExpectCases({
      {"First paragraph\n\nSecond paragraph", {"First paragraph", "Second paragraph"}},
      {"Line one\nline two continues.", {"Line one\nline two continues."}},
      {"Line one\nLine two", {"Line one\nLine two"}},
      {"A\n  \t \nB", {"A", "B"}},
      {"A\r\n\r\nB", {"A", "B"}},
      {"A\u2029B", {"A", "B"}},
      {"Ends here.\n\nnext paragraph lower.", {"Ends here.", "next paragraph lower."}},
      {"Dr.\n\nSmith", {"Dr.", "Smith"}},
      {"Heading\n=======\n\n.. note::\n\n   Text here.",
       {"Heading\n=======", ".. note::", "Text here."}},
  });
}

TEST(SentenceSplitter, TrimsWhitespaceAndDropsEmpty) {
  ExpectCases({
      {"", {}},
      {"   \n\n\t ", {}},
      {"\n\n\n\n", {}},
      {"\u3000\u00a0\u2028", {}},
      {"   Hello there.   How are you?  ", {"Hello there.", "How are you?"}},
      {"\u3000全角空格。\u00a0Next.\u2003", {"全角空格。", "Next."}},
      {"Tab\tseparated.\tNext one.", {"Tab\tseparated.", "Next one."}},
      {"Non-breaking.\u00a0Space splits.", {"Non-breaking.", "Space splits."}},
  });
}

TEST(SentenceSplitter, InvalidUtf8IsOrdinaryText) {
  using namespace std::string_literals;
  ExpectCases({
      {"Bad \xff\xfe bytes. Next \xc3 one.", {"Bad \xff\xfe bytes.", "Next \xc3 one."}},
      {"Ends.\xff glued", {"Ends.\xff glued"}},
      {"Ends. \xff starts", {"Ends.", "\xff starts"}},
      {"Truncated \xe3\x80", {"Truncated \xe3\x80"}},
      {"Truncated \xef", {"Truncated \xef"}},
      {"\xe2\x80\xa6\xe2\x80", {"\xe2\x80\xa6\xe2\x80"}},
      {"Overlong \xc0\xae. Next", {"Overlong \xc0\xae.", "Next"}},
  });
  EXPECT_EQ(Split("a\0b. C"s), (Sentences{"a\0b."s, "C"}));
}

// Whitespace as the splitter's contract defines it: ASCII \t..\r and space,
// U+0085, and Unicode Zs/Zl/Zp. An undecodable byte is not whitespace.
size_t SpaceLen(std::string_view s, size_t i) {
  utf8proc_int32_t cp = 0;
  auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                            static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
  if (n <= 0) return 0;
  if (cp < 0x80) return (cp == ' ' || (cp >= '\t' && cp <= '\r')) ? 1 : 0;
  auto cat = utf8proc_category(cp);
  bool space = cp == 0x85 || cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL ||
               cat == UTF8PROC_CATEGORY_ZP;
  return space ? static_cast<size_t>(n) : 0;
}

bool AllSpace(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = SpaceLen(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

size_t EndOfLastNonSpace(std::string_view s) {
  size_t end = 0;
  for (size_t i = 0; i < s.size();) {
    size_t n = SpaceLen(s, i);
    i += n == 0 ? 1 : n;
    if (n == 0) end = i;
  }
  return end;
}

std::string WithoutSpace(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    size_t n = SpaceLen(s, i);
    if (n == 0) out += s[i++];
    i += n;
  }
  return out;
}

// The contract: views into `text`, in order, non-empty, trimmed, and nothing
// but whitespace between them (no text lost).
void ExpectLossless(std::string_view text) {
  std::vector<std::string_view> sentences = SplitSentences(text);
  size_t cursor = 0;
  std::string joined;
  for (std::string_view s : sentences) {
    ASSERT_FALSE(s.empty());
    ASSERT_GE(s.data(), text.data() + cursor);
    ASSERT_LE(s.data() + s.size(), text.data() + text.size());
    size_t begin = static_cast<size_t>(s.data() - text.data());
    ASSERT_TRUE(AllSpace(text.substr(cursor, begin - cursor))) << "text lost before: " << s;
    EXPECT_EQ(SpaceLen(s, 0), 0u) << "untrimmed: " << s;
    EXPECT_EQ(EndOfLastNonSpace(s), s.size()) << "untrimmed: " << s;
    cursor = begin + s.size();
    joined += WithoutSpace(s);  // per sentence: bytes of two must not fuse
  }
  ASSERT_TRUE(AllSpace(text.substr(cursor)));
  EXPECT_EQ(joined, WithoutSpace(text));
}

TEST(SentenceSplitterProperty, RandomBytesLoseNothing) {
  // Pieces that exercise every rule, plus fully random bytes.
  const std::vector<std::string> pieces = {
      ".", "!", "?", " ", "  ", "\n", "\n\n", "\t", "\"", "'", ")", "(", "A", "b",
      "Mr", "e.g", "U.S", "3", "\u3002", "\uff01", "\uff1f", "\uff0e", "\uff61",
      "\u2026", "\u201d", "\u300d", "\u3000", "\u00a0", "\u2029", "\u4f60", "\xe3",
      "\xef\xbc", "\xe2\x80", "\xff", "\xc3", "\x80", "No", "1"};
  std::mt19937 rng(12345);
  for (int trial = 0; trial < 3000; ++trial) {
    std::string text;
    const int length = static_cast<int>(rng() % 60);
    for (int i = 0; i < length; ++i) {
      if (rng() % 4 == 0) {
        text += static_cast<char>(rng() % 256);
      } else {
        text += pieces[rng() % pieces.size()];
      }
    }
    SCOPED_TRACE(testing::PrintToString(text));
    ExpectLossless(text);
    if (HasFatalFailure()) return;
  }
}

// Degenerate inputs: long runs must stay linear and lose nothing.
TEST(SentenceSplitterProperty, DegenerateRunsLoseNothing) {
  const size_t kBytes = 1 << 20;
  for (std::string unit : {".", " ", "\n \n", "A. ", "\u3002", "x.", "! ", "\xff", "\xe3"}) {
    std::string text;
    while (text.size() < kBytes) text += unit;
    SCOPED_TRACE(testing::PrintToString(unit));
    ExpectLossless(text);
  }
  std::string spaces(kBytes, ' ');
  ExpectLossless("End." + spaces + "Next" + spaces + "1." + spaces + "x.");
  EXPECT_EQ(SplitSentences(std::string(kBytes, '.')).size(), 1u);
  EXPECT_EQ(SplitSentences(std::string(kBytes, 'a')).size(), 1u);
}

// Real corpus text from Debian packages; empty when the package is missing.
std::string ReadCommand(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buffer[1 << 16];
  size_t n = 0;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  pclose(pipe);
  return out;
}

const char kKernelDocs[] = "/usr/share/doc/linux-doc-6.1/Documentation";

std::string EnglishSample() {
  return ReadCommand(std::string("gzip -dc ") + kKernelDocs + "/process/*.rst.gz " +
                     kKernelDocs + "/memory-barriers.txt.gz 2>/dev/null; " +
                     "cat /usr/share/games/fortunes/literature /usr/share/games/fortunes/news "
                     "2>/dev/null");
}

TEST(SentenceSplitterProperty, RealEnglishTextLosesNothing) {
  std::string text = EnglishSample();
  if (text.size() < 100000) GTEST_SKIP() << "linux-doc / fortunes text not installed";
  ExpectLossless(text);
  // A plausible mean sentence length: fails if nothing or everything splits.
  std::vector<std::string_view> sentences = SplitSentences(text);
  double mean_bytes = static_cast<double>(text.size()) / static_cast<double>(sentences.size());
  EXPECT_GT(mean_bytes, 40.0);
  EXPECT_LT(mean_bytes, 400.0);
  std::printf("[splitter] English sample: %zu bytes, %zu sentences, %.0f bytes/sentence\n",
              text.size(), sentences.size(), mean_bytes);
}

TEST(SentenceSplitterProperty, RealChineseTextEndsAtEveryFullStop) {
  std::string text = ReadCommand(std::string("gzip -dc ") + kKernelDocs +
                                 "/translations/zh_CN/process/*.rst.gz 2>/dev/null");
  if (text.size() < 10000) GTEST_SKIP() << "linux-doc zh_CN translations not installed";
  ExpectLossless(text);
  // 。 may only be followed, inside a sentence, by more terminators or closers.
  for (std::string_view s : SplitSentences(text)) {
    size_t at = s.find("\u3002");
    if (at == std::string_view::npos) continue;
    std::string_view rest = s.substr(at + 3);
    for (std::string_view tail :
         {"\u3002", "\u300d", "\u300f", "\u201d", "\uff09", "\u2019", ")", "\"", "]"}) {
      while (rest.substr(0, tail.size()) == tail) rest.remove_prefix(tail.size());
    }
    EXPECT_TRUE(rest.empty()) << "sentence continues after 。: " << s;
  }
}

TEST(SentenceSplitterProperty, RealDictionaryTextLosesNothing) {
  std::string text = ReadCommand("gzip -dc /usr/share/dictd/gcide.dict.dz 2>/dev/null | head -c 4000000");
  if (text.empty()) GTEST_SKIP() << "dict-gcide not installed";
  ExpectLossless(text);
}

// Not an assertion on time: prints the figure for the ingest budget.
TEST(SentenceSplitterThroughput, PrintsMegabytesPerSecond) {
  std::string sample = EnglishSample();
  if (sample.empty()) GTEST_SKIP() << "no English sample installed";
  std::string text;
  while (text.size() < (32u << 20)) text += sample;
  double best_seconds = 1e9;
  size_t num_sentences = 0;
  for (int run = 0; run < 3; ++run) {
    auto start = std::chrono::steady_clock::now();
    num_sentences = SplitSentences(text).size();
    std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    best_seconds = std::min(best_seconds, elapsed.count());
  }
  ASSERT_GT(num_sentences, 0u);
  std::printf("[splitter] throughput: %.0f MB/s on %zu MB of English (%zu sentences)\n",
              static_cast<double>(text.size()) / 1e6 / best_seconds, text.size() >> 20,
              num_sentences);
}

}  // namespace
}  // namespace bert
