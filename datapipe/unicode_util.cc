#include "datapipe/unicode_util.h"

#include <utf8proc.h>

#include <glog/logging.h>

namespace bert::unicode {
namespace {

utf8proc_category_t Category(char32_t cp) { return utf8proc_category(static_cast<utf8proc_int32_t>(cp)); }

// Unicode Case_Ignorable (DerivedCoreProperties.txt), which utf8proc does not
// expose: categories Mn, Me, Cf, Lm, Sk, plus the characters whose Word_Break
// is MidLetter, MidNumLet or Single_Quote (listed below, from
// WordBreakProperty.txt). Python's str.lower() consults it for Final_Sigma.
// Checked exhaustively against CPython in the tokenizer reference test.
bool IsCaseIgnorable(char32_t cp) {
  switch (Category(cp)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK:
      return true;
    default:
      break;
  }
  switch (cp) {
    case 0x0027: case 0x002E: case 0x003A: case 0x00B7: case 0x0387: case 0x055F:
    case 0x05F4: case 0x2018: case 0x2019: case 0x2024: case 0x2027: case 0xFE13:
    case 0xFE52: case 0xFE55: case 0xFF07: case 0xFF0E: case 0xFF1A:
      return true;
    default:
      return false;
  }
}

// Unicode Cased (DerivedCoreProperties.txt): Lu, Ll, Lt, Other_Lowercase and
// Other_Uppercase. Most Other_* characters have a case mapping (circled and
// Roman-numeral letters); the rest that are not also Case_Ignorable (and so
// never reach this test in Final_Sigma) are the ordinal indicators and the
// squared/circled/negative Latin capitals of U+1F130..U+1F189.
bool IsCased(char32_t cp) {
  switch (Category(cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
      return true;
    default:
      break;
  }
  const auto c = static_cast<utf8proc_int32_t>(cp);
  if (utf8proc_tolower(c) != c || utf8proc_toupper(c) != c) return true;
  return cp == 0xAA || cp == 0xBA || (cp >= 0x1F130 && cp <= 0x1F149) || (cp >= 0x1F150 && cp <= 0x1F169) ||
         (cp >= 0x1F170 && cp <= 0x1F189);
}

// Final_Sigma (Unicode 3.13, table 3-17), as CPython's handle_capital_sigma:
// a cased letter before (skipping case-ignorables) and none after.
bool IsFinalSigma(const std::u32string& word, size_t i) {
  size_t j = i;
  while (j > 0 && IsCaseIgnorable(word[j - 1])) --j;
  if (j == 0 || !IsCased(word[j - 1])) return false;
  for (size_t k = i + 1; k < word.size(); ++k) {
    if (!IsCaseIgnorable(word[k])) return !IsCased(word[k]);
  }
  return true;
}

int CombiningClass(char32_t cp) {
  return utf8proc_get_property(static_cast<utf8proc_int32_t>(cp))->combining_class;
}

}  // namespace

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool IsChineseChar(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
         (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) ||
         (cp >= 0x2B820 && cp <= 0x2CEAF) || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

bool IsPunctuation(char32_t cp) {
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126)) {
    return true;
  }
  const utf8proc_category_t cat = Category(cp);
  return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

CleanClass Classify(char32_t cp) {
  if (cp == '\t' || cp == '\n' || cp == '\r' || cp == ' ') return CleanClass::kSpace;
  if (cp == 0 || cp == 0xFFFD) return CleanClass::kDrop;
  if (IsChineseChar(cp)) return CleanClass::kChinese;
  switch (Category(cp)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
      return CleanClass::kDrop;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:  // U+2028: kept by _clean_text, but str.split() splits on it
    case UTF8PROC_CATEGORY_ZP:  // U+2029: likewise
      return CleanClass::kSpace;
    default:
      return CleanClass::kKeep;
  }
}

void PythonLower(const std::u32string& word, std::u32string* lowered) {
  lowered->clear();
  for (size_t i = 0; i < word.size(); ++i) {
    const char32_t cp = word[i];
    if (cp < 0x80) {
      lowered->push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    } else if (cp == 0x130) {  // the one unconditional multi-character lowercase (SpecialCasing.txt)
      lowered->push_back(U'i');
      lowered->push_back(0x307);
    } else if (cp == 0x3A3) {
      lowered->push_back(IsFinalSigma(word, i) ? 0x3C2 : 0x3C3);
    } else {
      lowered->push_back(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
    }
  }
}

void StripAccents(const std::u32string& word, std::u32string* stripped) {
  stripped->clear();
  for (char32_t cp : word) {
    if (cp < 0xC0) {  // nothing below U+00C0 decomposes
      stripped->push_back(cp);
      continue;
    }
    utf8proc_int32_t parts[32];
    const utf8proc_ssize_t n = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(cp), parts, 32,
                                                       UTF8PROC_DECOMPOSE, nullptr);
    CHECK(n > 0 && n <= 32) << "utf8proc_decompose_char(U+" << std::hex << uint32_t(cp) << ") returned " << n;
    for (utf8proc_ssize_t k = 0; k < n; ++k) stripped->push_back(static_cast<char32_t>(parts[k]));
  }
  // Canonical ordering: a stable sort by combining class within each run of
  // non-starters. It must precede the Mn filter, because an Mn starter (such
  // as U+034F) separates runs; spacing marks (Mc) can carry a class too.
  for (size_t i = 1; i < stripped->size(); ++i) {
    const int ccc = CombiningClass((*stripped)[i]);
    if (ccc == 0) continue;
    for (size_t j = i; j > 0 && CombiningClass((*stripped)[j - 1]) > ccc; --j) {
      std::swap((*stripped)[j - 1], (*stripped)[j]);
    }
  }
  size_t kept = 0;
  for (char32_t cp : *stripped) {
    if (Category(cp) != UTF8PROC_CATEGORY_MN) (*stripped)[kept++] = cp;
  }
  stripped->resize(kept);
}

}  // namespace bert::unicode
