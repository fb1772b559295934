// Rule-based sentence splitter: one forward pass over the bytes. Only a few
// byte values can start a decision (. ! ? \n and the lead bytes of the
// multi-byte terminators), so the hot loop skips plain ASCII eight bytes at a
// time and UTF-8 is decoded (with utf8proc) only around those candidates.
// Every step advances by at least one byte and every look-around is bounded
// by the current sentence or the next word, so any input ends in O(n).
#include "datapipe/sentence_splitter.h"

#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

namespace bert {
namespace {

constexpr int32_t kInvalid = -1;          // an undecodable byte, read as one char
constexpr size_t kMaxTokenBytes = 32;     // longer words are never abbreviations
constexpr size_t kMaxAbbreviationBytes = 6;  // longest list entry ("Messrs")

// Never a boundary after these (exact case; an entry in lower case also
// matches with a capitalised first letter, "Cf." / "E.g."). Titles precede a
// name, months a day, Latin abbreviations a continuation. "al." is here
// because "et al. (2019)" is far more common than "et al." ending a sentence.
// Sorted (ASCII order) for binary search.
constexpr std::array<std::string_view, 65> kNeverFinal = {
    "Adm",  "Apr",  "Aug",  "Bros", "Capt", "Cmdr",   "Co",   "Col",  "Corp", "Cpl",
    "Dec",  "Dr",   "Drs",  "Feb",  "Fr",   "Ft",     "Gen",  "Gov",  "Hon",  "Inc",
    "Jan",  "Jr",   "Jul",  "Jun",  "Lt",   "Ltd",    "Maj",  "Mar",  "Messrs", "Mlle",
    "Mme",  "Mr",   "Mrs",  "Ms",   "Msgr", "Mt",     "Mx",   "Nov",  "Oct",  "Ph.D",
    "Pres", "Prof", "Pvt",  "Rep",  "Rev",  "Sen",    "Sep",  "Sept", "Sgt",  "Sr",
    "St",   "Supt", "al",   "approx", "cf", "dept",   "e.g",  "esp",  "est",  "i.e",
    "incl", "resp", "v",    "viz",  "vs"};

// Not a boundary only when the next word starts with a digit ("No. 5",
// "Fig. 3", "p. 12"); "He said No. Then" still splits.
constexpr std::array<std::string_view, 20> kBeforeNumber = {
    "Art", "Ch",   "Chap", "Eq",  "Eqs", "Fig", "Figs", "No", "Nos", "Nr",
    "Ref", "Refs", "Sec",  "Sect", "Vol", "Vols", "c",   "ca", "p",   "pp"};

// Dotted like "U.S." but usually sentence-final before a capital: split as for
// an ordinary word ("at 5 p.m. The meeting").
constexpr std::array<std::string_view, 4> kFinalDotted = {"A.M", "P.M", "a.m", "p.m"};

template <size_t N>
constexpr bool IsSorted(const std::array<std::string_view, N>& words) {
  for (size_t i = 1; i < N; ++i) {
    if (!(words[i - 1] < words[i])) return false;
  }
  return true;
}
template <size_t N>
constexpr bool FitsMaxLength(const std::array<std::string_view, N>& words) {
  for (std::string_view word : words) {
    if (word.size() > kMaxAbbreviationBytes) return false;
  }
  return true;
}
static_assert(FitsMaxLength(kNeverFinal) && FitsMaxLength(kBeforeNumber),
              "raise kMaxAbbreviationBytes");
static_assert(IsSorted(kNeverFinal) && IsSorted(kBeforeNumber) && IsSorted(kFinalDotted),
              "abbreviation lists are binary-searched");

bool IsAsciiSpace(unsigned char b) { return b == ' ' || (b >= '\t' && b <= '\r'); }
bool IsAsciiDigit(unsigned char b) { return b >= '0' && b <= '9'; }
bool IsAsciiLetter(unsigned char b) { return (b | 0x20) >= 'a' && (b | 0x20) <= 'z'; }

// Bytes at which the scanner must stop and look: terminators, newlines and
// the lead bytes of … (E2) , U+2029 (E2), 。 (E3) and ！？．｡ (EF).
constexpr std::array<bool, 256> MakeInteresting() {
  std::array<bool, 256> t{};
  for (unsigned char b : {'.', '!', '?', '\n', '\xE2', '\xE3', '\xEF'}) t[b] = true;
  return t;
}
constexpr std::array<bool, 256> kInteresting = MakeInteresting();

// SWAR test on 8 bytes: any byte >= 0x80 or equal to . ! ? \n (exact, no
// false negatives). Plain ASCII prose then advances 8 bytes per step.
constexpr uint64_t kOnes = 0x0101010101010101ULL;
constexpr uint64_t kHighBits = 0x8080808080808080ULL;
uint64_t ZeroBytes(uint64_t v) { return (v - kOnes) & ~v & kHighBits; }
uint64_t MatchBytes(uint64_t v, unsigned char b) { return ZeroBytes(v ^ (kOnes * b)); }
bool MayHoldCandidate(uint64_t v) {
  return ((v & kHighBits) | MatchBytes(v, '.') | MatchBytes(v, '\n') | MatchBytes(v, '!') |
          MatchBytes(v, '?')) != 0;
}

// First position at or after `pos` holding an interesting byte, or size().
size_t SkipToCandidate(std::string_view text, size_t pos) {
  for (uint64_t chunk = 0; pos + 8 <= text.size(); pos += 8) {
    std::memcpy(&chunk, text.data() + pos, 8);
    if (MayHoldCandidate(chunk)) break;
  }
  while (pos < text.size() && !kInteresting[static_cast<unsigned char>(text[pos])]) ++pos;
  return pos;
}

// Decodes the code point at `pos` (not reading at or past `end`). Returns its
// length; *cp is kInvalid (length 1) for a byte that does not decode.
size_t DecodeAt(std::string_view text, size_t pos, size_t end, int32_t* cp) {
  const auto b = static_cast<unsigned char>(text[pos]);
  if (b < 0x80) {
    *cp = b;
    return 1;
  }
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(text.data() + pos);
  utf8proc_int32_t decoded = 0;
  utf8proc_ssize_t n = utf8proc_iterate(p, static_cast<utf8proc_ssize_t>(end - pos), &decoded);
  if (n <= 0) {
    *cp = kInvalid;
    return 1;
  }
  *cp = decoded;
  return static_cast<size_t>(n);
}

// Decodes the code point that ends just before `end`, not looking before
// `begin`. Returns its length (1 with *cp = kInvalid for a stray byte).
size_t DecodeBefore(std::string_view text, size_t begin, size_t end, int32_t* cp) {
  size_t start = end - 1;
  while (start > begin && end - start < 4 &&
         (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) {
    --start;
  }
  if (DecodeAt(text, start, end, cp) == end - start) return end - start;
  *cp = kInvalid;
  return 1;
}

utf8proc_category_t Category(int32_t cp) {
  return cp < 0 ? UTF8PROC_CATEGORY_CN : utf8proc_category(cp);
}

bool IsSpaceCodePoint(int32_t cp) {
  if (cp < 0x80) return cp >= 0 && IsAsciiSpace(static_cast<unsigned char>(cp));
  if (cp == 0x85) return true;  // NEL is Cc but is a line break
  utf8proc_category_t cat = Category(cp);
  return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL ||
         cat == UTF8PROC_CATEGORY_ZP;
}

// Length of the whitespace code point at `pos`, 0 if it is not whitespace.
size_t SpaceLenAt(std::string_view text, size_t pos, size_t end) {
  const auto b = static_cast<unsigned char>(text[pos]);
  if (b < 0x80) return IsAsciiSpace(b) ? 1 : 0;
  int32_t cp = 0;
  size_t len = DecodeAt(text, pos, end, &cp);
  return IsSpaceCodePoint(cp) ? len : 0;
}

// Closing quotes and brackets absorbed after a terminator: ASCII " ' ) ] }
// and every Pe/Pf code point (” ’ » 」 』 ） 】 …).
size_t CloserLenAt(std::string_view text, size_t pos) {
  const auto b = static_cast<unsigned char>(text[pos]);
  if (b < 0x80) return b == '"' || b == '\'' || b == ')' || b == ']' || b == '}' ? 1 : 0;
  int32_t cp = 0;
  size_t len = DecodeAt(text, pos, text.size(), &cp);
  utf8proc_category_t cat = Category(cp);
  return cat == UTF8PROC_CATEGORY_PE || cat == UTF8PROC_CATEGORY_PF ? len : 0;
}

enum class Terminator { kNone, kPeriod, kLatin, kCjk };

// Recognises a terminator at `pos` by its bytes. kCjk (。！？｡) ends a sentence
// at once; kLatin (! ? … ．) and kPeriod need whitespace and a sentence start.
Terminator TerminatorAt(std::string_view text, size_t pos, size_t* len) {
  const auto c = static_cast<unsigned char>(text[pos]);
  *len = 1;
  if (c == '.') return Terminator::kPeriod;
  if (c == '!' || c == '?') return Terminator::kLatin;
  *len = 3;
  if (c < 0xE2 || pos + 3 > text.size()) return Terminator::kNone;
  // The three bytes as one number: 0xE280A6 is U+2026, and so on.
  const uint32_t seq = c << 16 | static_cast<unsigned char>(text[pos + 1]) << 8 |
                       static_cast<unsigned char>(text[pos + 2]);
  switch (seq) {
    case 0xE280A6: case 0xEFBC8E: return Terminator::kLatin;        // … ．
    case 0xE38082: case 0xEFBC81: case 0xEFBC9F: case 0xEFBDA1:  // 。 ！ ？ ｡
      return Terminator::kCjk;
    default: return Terminator::kNone;
  }
}

// Whether a word starting with `cp` may begin a new sentence after ". ".
// Lower-case letters, combining marks and clause punctuation (, ; : closing
// brackets) continue the current one; upper-case, digits, uncased scripts
// (CJK, Arabic, ...), opening quotes/brackets, symbols and bullets start one.
// An undecodable byte counts as an ordinary (uncased) character.
bool StartsSentence(int32_t cp) {
  if (cp >= 0 && cp < 0x80) {
    if (cp >= 'a' && cp <= 'z') return false;
    switch (cp) {
      case ',': case ';': case ':': case '.': case '!': case '?': case ')': case ']': case '}':
      case '%': case '_':
        return false;
      default:
        return true;
    }
  }
  switch (Category(cp)) {
    case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_PE: case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PC:
      return false;
    case UTF8PROC_CATEGORY_PO:  // mostly commas and stops (、，：); ¡ ¿ • open
      return cp == 0xA1 || cp == 0xBF || cp == 0x2022;
    default:
      return true;
  }
}

template <size_t N>
bool InList(const std::array<std::string_view, N>& sorted, std::string_view word) {
  return word.size() <= kMaxAbbreviationBytes && std::binary_search(sorted.begin(), sorted.end(), word);
}

// Exact match, or a lower-case entry written with a capital ("Cf", "Vs").
template <size_t N>
bool InListAnyInitialCase(const std::array<std::string_view, N>& sorted, std::string_view word) {
  if (InList(sorted, word)) return true;
  if (word.size() > kMaxAbbreviationBytes || word[0] < 'A' || word[0] > 'Z') return false;
  char lowered[kMaxAbbreviationBytes];
  std::memcpy(lowered, word.data(), word.size());
  lowered[0] = static_cast<char>(lowered[0] | 0x20);
  return InList(sorted, std::string_view(lowered, word.size()));
}

// "U.S", "e.g", "U.S.A": single ASCII letters joined by dots (the final dot
// is the terminator under test).
bool IsDottedAcronym(std::string_view word) {
  if (word.size() < 3 || word.size() % 2 == 0) return false;
  for (size_t i = 0; i < word.size(); ++i) {
    const auto b = static_cast<unsigned char>(word[i]);
    if (i % 2 == 0 ? !IsAsciiLetter(b) : b != '.') return false;
  }
  return true;
}

// One upper-case letter of any script: an initial ("J. R. R. Tolkien").
bool IsInitial(std::string_view word) {
  int32_t cp = 0;
  if (DecodeAt(word, 0, word.size(), &cp) != word.size()) return false;
  utf8proc_category_t cat = Category(cp);
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT;
}

// "1." / "12." / "a." opening a line is a list item number, not a sentence.
bool IsEnumerator(std::string_view word) {
  if (word.size() == 1 && IsAsciiLetter(static_cast<unsigned char>(word[0]))) return true;
  if (word.size() > 3) return false;
  return std::all_of(word.begin(), word.end(),
                     [](char c) { return IsAsciiDigit(static_cast<unsigned char>(c)); });
}

class Splitter {
 public:
  Splitter(std::string_view text, std::vector<std::string_view>* out) : text_(text), out_(out) {}

  void Run() {
    for (size_t pos = SkipToCandidate(text_, 0); pos < text_.size();
         pos = SkipToCandidate(text_, pos)) {
      pos = text_[pos] == '\n' ? OnNewline(pos) : OnCandidate(pos);
    }
    Emit(text_.size());
  }

 private:
  // Pushes [sentence_start_, end) trimmed of whitespace, unless empty.
  void Emit(size_t end) {
    size_t begin = sentence_start_;
    sentence_start_ = end;
    while (begin < end) {
      size_t len = SpaceLenAt(text_, begin, end);
      if (len == 0) break;
      begin += len;
    }
    while (end > begin) {
      int32_t cp = 0;
      size_t len = DecodeBefore(text_, begin, end, &cp);
      if (!IsSpaceCodePoint(cp)) break;
      end -= len;
    }
    if (end > begin) out_->push_back(text_.substr(begin, end - begin));
  }

  // A blank line (newline, optional blanks, newline) ends the paragraph.
  size_t OnNewline(size_t pos) {
    size_t next = pos + 1;
    while (next < text_.size() && text_[next] != '\n' &&
           IsAsciiSpace(static_cast<unsigned char>(text_[next]))) {
      ++next;
    }
    if (next >= text_.size() || text_[next] != '\n') return pos + 1;
    Emit(pos);
    return next + 1;
  }

  size_t OnCandidate(size_t pos) {
    size_t len = 0;
    if (TerminatorAt(text_, pos, &len) != Terminator::kNone) return OnTerminator(pos);
    if (text_.substr(pos, 3) != "\u2029") return pos + 1;
    Emit(pos);  // U+2029 PARAGRAPH SEPARATOR
    return pos + 3;
  }

  // `pos` is the first terminator of a run ("?!", "...", "。」"). Returns where
  // scanning resumes, after the run and any closers.
  size_t OnTerminator(size_t pos) {
    const size_t run_start = pos;
    bool has_cjk = false;
    size_t len = 0;
    while (pos < text_.size()) {
      Terminator kind = TerminatorAt(text_, pos, &len);
      if (kind == Terminator::kNone) break;
      has_cjk |= kind == Terminator::kCjk;
      pos += len;
    }
    const bool lone_period = pos == run_start + 1 && text_[run_start] == '.';
    const size_t closers_start = pos;
    while (pos < text_.size() && (len = CloserLenAt(text_, pos)) > 0) pos += len;
    if (has_cjk) {
      Emit(pos);
      return pos;
    }
    int32_t next_cp = 0;
    if (!NextWordStart(pos, &next_cp) || !StartsSentence(next_cp)) return pos;
    // A closing quote or bracket after "." shows the sentence ended inside it,
    // so abbreviation rules only apply to a period directly before whitespace.
    if (lone_period && closers_start == pos && IsNonFinalPeriod(run_start, next_cp)) return pos;
    Emit(pos);
    return pos;
  }

  // Requires whitespace at `pos`; sets *cp to the first code point after it.
  // False at end of text or without whitespace. A paragraph break inside the
  // whitespace needs no care here: OnNewline splits there whatever we decide.
  bool NextWordStart(size_t pos, int32_t* cp) {
    const size_t end = text_.size();
    if (pos >= end || SpaceLenAt(text_, pos, end) == 0) return false;
    while (pos < end) {
      size_t len = SpaceLenAt(text_, pos, end);
      if (len == 0) break;
      pos += len;
    }
    if (pos >= end) return false;
    DecodeAt(text_, pos, end, cp);
    return true;
  }

  // The period at `period` follows an abbreviation, initial, dotted acronym
  // or list number, so it does not end the sentence.
  bool IsNonFinalPeriod(size_t period, int32_t next_cp) const {
    size_t word_start = WordStartBefore(period);
    if (word_start == std::string_view::npos) return false;
    std::string_view word = text_.substr(word_start, period - word_start);
    if (word.empty()) return false;
    if (InListAnyInitialCase(kNeverFinal, word)) return true;
    if (next_cp >= '0' && next_cp <= '9' && InListAnyInitialCase(kBeforeNumber, word)) return true;
    if (InList(kFinalDotted, word)) return false;
    if (IsInitial(word) || IsDottedAcronym(word)) return true;
    return AtLineStart(word_start) && IsEnumerator(word);
  }

  // Start of the word that ends at `end`: back to whitespace (or the start of
  // this sentence), then past leading punctuation such as ( " “. npos when
  // the word may be longer than kMaxTokenBytes (then it is no abbreviation).
  size_t WordStartBefore(size_t end) const {
    const size_t floor = std::max(sentence_start_, end > kMaxTokenBytes ? end - kMaxTokenBytes : 0);
    size_t start = end;
    while (start > floor) {
      int32_t cp = 0;
      size_t len = DecodeBefore(text_, floor, start, &cp);
      if (IsSpaceCodePoint(cp)) break;
      start -= len;
    }
    if (start == floor && floor > sentence_start_) return std::string_view::npos;
    while (start < end) {
      int32_t cp = 0;
      size_t len = DecodeAt(text_, start, end, &cp);
      utf8proc_category_t cat = Category(cp);
      if (cp == kInvalid || (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
          (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO)) {
        break;
      }
      start += len;
    }
    return start;
  }

  // Only spaces or tabs between the previous newline (or text start) and `pos`.
  bool AtLineStart(size_t pos) const {
    while (pos > 0 && (text_[pos - 1] == ' ' || text_[pos - 1] == '\t')) --pos;
    return pos == 0 || text_[pos - 1] == '\n';
  }

  std::string_view text_;
  std::vector<std::string_view>* out_;
  size_t sentence_start_ = 0;  // untrimmed start of the sentence being scanned
};

}  // namespace

std::vector<std::string_view> SplitSentences(std::string_view text) {
  std::vector<std::string_view> sentences;
  Splitter(text, &sentences).Run();
  return sentences;
}

}  // namespace bert
