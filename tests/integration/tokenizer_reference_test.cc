// `bertctl tokenize` and FullTokenizer against the Python oracle
// (tests/reference/bert_tokenization_ref.py, a literal port of Google BERT's
// tokenization.py) on real text and on every Unicode code point.
//
// Real text: linux-doc Documentation (English, and translations/zh_CN for
// Chinese) and the fortune databases, a few MB, with invalid UTF-8 bytes
// injected into some records. Runs in under a minute on two cores; python3
// is required (a missing python3 fails the test, it never skips).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "datapipe/tokenizer.h"

namespace bert {
namespace {

namespace fs = std::filesystem;

const std::string kOracle = std::string(BERT_SOURCE_DIR) + "/tests/reference/bert_tokenization_ref.py";
const std::string kBertctl = std::string(BERT_BIN_DIR) + "/bertctl";
const std::string kVocabDir = BERT_VOCAB_DIR;
const std::string kUncasedVocab = kVocabDir + "/bert-base-uncased-vocab.txt";
const std::string kChineseVocab = kVocabDir + "/bert-base-chinese-vocab.txt";
const std::string kDocs = "/usr/share/doc/linux-doc-6.1/Documentation";
const std::string kFortunes = "/usr/share/games/fortunes";

int Shell(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A fresh directory per test, removed when the test passes (kept for a look when it fails).
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (fs::temp_directory_path() / "tokenizer_ref_XXXXXX").string();
    path_ = ::mkdtemp(pattern.data()) ? pattern : "";
  }
  ~ScratchDir() {
    if (!::testing::Test::HasFailure() && !path_.empty()) fs::remove_all(path_);
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// JSON string body for raw bytes: escapes '"', '\\' and C0 controls, and
// passes every other byte through, invalid UTF-8 included, so both tools see
// the same raw bytes (each drops them before parsing).
std::string JsonLine(std::string_view text) {
  std::string line = "{\"text\":\"";
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      line += '\\';
      line += c;
    } else if (byte < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", byte);
      line += escaped;
    } else {
      line += c;
    }
  }
  return line + "\"}\n";
}

std::string Utf8(char32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
  } else if (cp < 0x10000) {
    out += {static_cast<char>(0xE0 | (cp >> 12)), static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
            static_cast<char>(0x80 | (cp & 0x3F))};
  } else {
    out += {static_cast<char>(0xF0 | (cp >> 18)), static_cast<char>(0x80 | ((cp >> 12) & 0x3F)),
            static_cast<char>(0x80 | ((cp >> 6) & 0x3F)), static_cast<char>(0x80 | (cp & 0x3F))};
  }
  return out;
}

std::vector<std::string> SortedFiles(const std::string& dir, const std::string& extension) {
  std::vector<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file() && !entry.is_symlink() && entry.path().extension() == extension) {
      files.push_back(entry.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Decompresses (gzip -dc, 64 files per process) until `max_bytes`.
std::string Gunzip(const std::vector<std::string>& files, size_t max_bytes) {
  std::string text;
  char buffer[1 << 16];
  for (size_t first = 0; first < files.size() && text.size() < max_bytes; first += 64) {
    std::string command = "gzip -dc";
    for (size_t i = first; i < std::min(files.size(), first + 64); ++i) command += " " + Quote(files[i]);
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) break;
    for (size_t n; (n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0;) text.append(buffer, n);
    ::pclose(pipe);
  }
  return text.substr(0, std::min(text.size(), max_bytes));
}

// Appends one JSONL record per paragraph (text between blank lines, or
// between fortune "%" lines). Every 37th record gets invalid bytes injected.
void AppendRecords(const std::string& text, const std::string& separator, std::string* jsonl, size_t* count) {
  static const char* kInvalid[] = {"\xff", "\xe2\x82", "\xc3", "\xed\xa0\x80", "\x80\x80", "\xf4\x90\x80\x80"};
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find(separator, start);
    if (end == std::string::npos) end = text.size();
    std::string record = text.substr(start, end - start);
    start = end + separator.size();
    if (record.find_first_not_of(" \t\n") == std::string::npos) continue;
    if (++*count % 37 == 0) record.insert(record.size() / 2, kInvalid[*count % 6]);
    *jsonl += JsonLine(record);
  }
}

std::string RealTextJsonl(size_t* records) {
  std::vector<std::string> english_docs;
  for (const std::string& file : SortedFiles(kDocs, ".gz")) {
    if (file.find("/translations/") == std::string::npos) english_docs.push_back(file);
  }
  std::string fortunes;
  for (const auto& entry : fs::directory_iterator(kFortunes)) {
    if (entry.is_regular_file() && !entry.is_symlink() && entry.path().extension().empty() && fortunes.size() < 900000) {
      fortunes += ReadAll(entry.path().string());
    }
  }
  std::string jsonl;
  *records = 0;
  AppendRecords(Gunzip(english_docs, 1400000), "\n\n", &jsonl, records);
  AppendRecords(fortunes, "\n%\n", &jsonl, records);
  AppendRecords(Gunzip(SortedFiles(kDocs + "/translations/zh_CN", ".gz"), 1000000), "\n\n", &jsonl, records);
  return jsonl;
}

class TokenizerReferenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(Shell("python3 -c 'import unicodedata' >/dev/null 2>&1"), 0)
        << "python3 is required: this test compares against the Python oracle " << kOracle
        << " (install python3; the test never skips)";
    ASSERT_TRUE(fs::exists(kBertctl)) << kBertctl << " is missing; build it first (ninja bertctl)";
  }
};

// Compares two JSONL outputs line by line; reports the first few differences.
void ExpectSameLines(const std::string& label, const std::vector<std::string>& input, const std::string& expected_path,
                     const std::string& actual_path) {
  const std::vector<std::string> expected = SplitLines(ReadAll(expected_path));
  const std::vector<std::string> actual = SplitLines(ReadAll(actual_path));
  ASSERT_EQ(expected.size(), input.size()) << label << ": the oracle wrote a different number of lines";
  ASSERT_EQ(actual.size(), input.size()) << label << ": bertctl wrote a different number of lines";
  int reported = 0;
  for (size_t i = 0; i < input.size() && reported < 5; ++i) {
    if (expected[i] == actual[i]) continue;
    ++reported;
    ADD_FAILURE() << label << " line " << i + 1 << ":\n  input:  " << input[i].substr(0, 300)
                  << "\n  python: " << expected[i].substr(0, 300) << "\n  bertctl: " << actual[i].substr(0, 300);
  }
}

TEST_F(TokenizerReferenceTest, BertctlMatchesTheOracleOnRealTextForEveryVocabAndMode) {
  ScratchDir dir;
  size_t records = 0;
  const std::string jsonl = RealTextJsonl(&records);
  ASSERT_GT(jsonl.size(), 2000000u) << "too little real text found under " << kDocs << " and " << kFortunes;
  std::ofstream(dir / "input.jsonl", std::ios::binary) << jsonl;
  const std::vector<std::string> input = SplitLines(jsonl);

  struct Config {
    std::string name, vocab, flags;
  };
  const Config configs[] = {{"uncased", kUncasedVocab, ""}, {"cased", kUncasedVocab, " --cased"},
                            {"chinese", kChineseVocab, ""}};
  std::vector<std::future<int>> runs;
  for (const Config& c : configs) {
    const std::string common = " --vocab " + Quote(c.vocab) + c.flags + " --input " + Quote(dir / "input.jsonl");
    runs.push_back(std::async(std::launch::async, Shell,
                              "python3 " + Quote(kOracle) + common + " --output " + Quote(dir / c.name + ".py.jsonl")));
    runs.push_back(std::async(std::launch::async, Shell,
                              Quote(kBertctl) + " tokenize" + common + " --threads 2 --output " +
                                  Quote(dir / c.name + ".cc.jsonl") + " 2>" + Quote(dir / c.name + ".log")));
  }
  for (auto& run : runs) EXPECT_EQ(run.get(), 0) << "a tokenizer run failed; see " << dir / "";
  for (const Config& c : configs) {
    ExpectSameLines(c.name, input, dir / c.name + ".py.jsonl", dir / c.name + ".cc.jsonl");
    EXPECT_NE(ReadAll(dir / c.name + ".log").find("invalid UTF-8 bytes in " + std::to_string(records / 37) + " of "),
              std::string::npos)
        << c.name << ": expected one warning counting the injected invalid bytes";
  }
}

// Every code point of planes 0, 1 and 14 (others sampled) in contexts that
// exercise cleaning, CJK spacing, lower-casing with Final_Sigma, NFD with
// canonical ordering, accent stripping and punctuation: BasicTokenize must
// give Python's words. Characters that utf8proc's newer Unicode version
// assigns but Python's unicodedata does not yet know are reported, not failed.
void ExpectEveryCodePointLikePython(bool lower_case) {
  ScratchDir dir;
  std::vector<char32_t> code_points;
  for (char32_t cp = 0; cp < 0x110000; ++cp) {
    if (cp >= 0xD800 && cp < 0xE000) continue;
    const char32_t plane = cp >> 16;
    if (plane == 0 || plane == 1 || plane == 14 || cp % (plane <= 3 ? 97 : 4099) == 0) code_points.push_back(cp);
  }
  std::vector<std::string> texts;
  std::string jsonl;
  for (char32_t cp : code_points) {
    const std::string c = Utf8(cp);
    texts.push_back("A" + c + "a " + c + " A" + c + "\u03A3 A\u03A3" + c + " " + c + c + "\u0301 x" + c + "y");
    jsonl += JsonLine(texts.back());
  }
  std::ofstream(dir / "input.jsonl", std::ios::binary) << jsonl;
  ASSERT_EQ(Shell("python3 " + Quote(kOracle) + " --basic --vocab " + Quote(kUncasedVocab) +
                  (lower_case ? "" : " --cased") + " --input " + Quote(dir / "input.jsonl") + " --output " +
                  Quote(dir / "words.jsonl")),
            0);
  const std::vector<std::string> expected = SplitLines(ReadAll(dir / "words.jsonl"));
  ASSERT_EQ(expected.size(), texts.size());

  Result<std::shared_ptr<const Vocab>> vocab = Vocab::Load(kUncasedVocab);
  ASSERT_TRUE(vocab.ok()) << vocab.status().ToString();
  FullTokenizer tokenizer(*vocab, TokenizerOptions{lower_case, 100});
  std::vector<size_t> differing;
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<std::string> words;
    tokenizer.BasicTokenize(texts[i], &words);
    if (nlohmann::json::parse(expected[i]).at("words").get<std::vector<std::string>>() != words) {
      differing.push_back(i);
    }
  }
  if (differing.empty()) return;
  // Ask Python which of the differing code points it considers unassigned (Cn).
  std::string command = "python3 -c 'import sys, unicodedata as u; print(\" \".join(u.category(chr(int(x))) "
                        "for x in sys.argv[1:]))'";
  for (size_t i : differing) command += " " + std::to_string(static_cast<uint32_t>(code_points[i]));
  command += " > " + Quote(dir / "categories.txt");
  ASSERT_EQ(Shell(command), 0);
  std::stringstream categories(ReadAll(dir / "categories.txt"));
  size_t unicode_version_gaps = 0;
  for (size_t i : differing) {
    std::string category;
    categories >> category;
    if (category == "Cn") {
      ++unicode_version_gaps;
      continue;
    }
    ADD_FAILURE() << "U+" << std::hex << static_cast<uint32_t>(code_points[i]) << std::dec << " (Python category "
                  << category << ") in " << texts[i] << "\n  python: " << expected[i];
  }
  std::printf("%zu code points differ only because Python's Unicode database predates utf8proc's\n",
              unicode_version_gaps);
}

TEST_F(TokenizerReferenceTest, EveryCodePointBasicTokenizesLikePythonUncased) { ExpectEveryCodePointLikePython(true); }

TEST_F(TokenizerReferenceTest, EveryCodePointBasicTokenizesLikePythonCased) { ExpectEveryCodePointLikePython(false); }

TEST_F(TokenizerReferenceTest, BadLineFailsNamingTheLineAndLeavesNoOutput) {
  ScratchDir dir;
  for (const std::string bad : {"not json", "{\"txt\":\"a\"}", "{\"text\":3}", "[\"text\"]", ""}) {
    std::ofstream(dir / "in.jsonl") << "{\"text\":\"fine\"}\n{\"text\":\"also fine\"}\n" << bad << "\n{\"text\":\"x\"}\n";
    const int rc = Shell(Quote(kBertctl) + " tokenize --vocab " + Quote(kUncasedVocab) + " --input " +
                         Quote(dir / "in.jsonl") + " --output " + Quote(dir / "out.jsonl") + " 2>" +
                         Quote(dir / "err.txt"));
    EXPECT_NE(rc, 0) << bad;
    EXPECT_FALSE(fs::exists(dir / "out.jsonl")) << bad;
    EXPECT_FALSE(fs::exists(dir / "out.jsonl.tmp")) << bad;
    EXPECT_NE(ReadAll(dir / "err.txt").find(dir / "in.jsonl:3: "), std::string::npos) << ReadAll(dir / "err.txt");
  }
}

// Python's json.dumps writes lone surrogates of a str as escapes; json.loads
// keeps them as characters, which the reference then tokenizes.
TEST_F(TokenizerReferenceTest, LoneSurrogateEscapesMatchTheOracle) {
  ScratchDir dir;
  std::ofstream(dir / "in.jsonl") << R"({"text":"\ud800x \udc00 a\uD83D\uDE00b \\ud800 \ud83d\ud83d\ude00 \u03a3\ud800"})"
                                  << "\n" << R"({"text":"caf\u00e9\udfff\u0301 ok"})" << "\n";
  const std::string args = " --vocab " + Quote(kUncasedVocab) + " --input " + Quote(dir / "in.jsonl");
  ASSERT_EQ(Shell("python3 " + Quote(kOracle) + args + " --output " + Quote(dir / "py.jsonl")), 0);
  ASSERT_EQ(Shell(Quote(kBertctl) + " tokenize" + args + " --output " + Quote(dir / "cc.jsonl") + " 2>/dev/null"), 0);
  EXPECT_EQ(ReadAll(dir / "cc.jsonl"), ReadAll(dir / "py.jsonl"));
}

TEST_F(TokenizerReferenceTest, StdinToStdoutAndThreadsKeepInputOrder) {
  ScratchDir dir;
  std::string jsonl;
  for (int i = 0; i < 20000; ++i) jsonl += JsonLine("line " + std::to_string(i) + " caf\xc3\xa9 \xe4\xb8\xad");
  std::ofstream(dir / "in.jsonl") << jsonl;
  const std::string tokenize = Quote(kBertctl) + " tokenize --vocab " + Quote(kUncasedVocab);
  ASSERT_EQ(Shell(tokenize + " < " + Quote(dir / "in.jsonl") + " > " + Quote(dir / "one.jsonl") + " 2>/dev/null"), 0);
  ASSERT_EQ(Shell(tokenize + " --threads 4 --input " + Quote(dir / "in.jsonl") + " --output " +
                  Quote(dir / "four.jsonl") + " 2>/dev/null"),
            0);
  const std::string one = ReadAll(dir / "one.jsonl");
  EXPECT_EQ(SplitLines(one).size(), 20000u);
  EXPECT_EQ(one, ReadAll(dir / "four.jsonl"));
  EXPECT_EQ(SplitLines(one)[0], "{\"ids\":[2240,1014,7668,1746]}");  // line 0 cafe 中
}

}  // namespace
}  // namespace bert
