// Unicode helpers for the BERT tokenizer (private to datapipe/).
//
// Each function reproduces one piece of Python behaviour that Google BERT's
// tokenization.py relies on: strict UTF-8 decoding with the "ignore" error
// handler, unicodedata.category() tests, str.lower() (full mapping with the
// Final_Sigma rule) and unicodedata.normalize("NFD"). Character data comes
// from utf8proc; the two small property lists utf8proc does not expose
// (Cased, Case_Ignorable) are derived in unicode_util.cc. All functions are
// pure and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/utf8.h"

namespace bert::unicode {

// Strict UTF-8 decoding lives in common/utf8.h.
using ::bert::DecodeUtf8;

// Appends the UTF-8 encoding of a valid scalar value.
void AppendUtf8(char32_t cp, std::string* out);

// What BasicTokenizer's _clean_text + whitespace split make of a character.
enum class CleanClass : uint8_t {
  kKeep,     // part of a word
  kDrop,     // U+0000, U+FFFD, Cc/Cf other than \t \n \r: removed, joins neighbours
  kSpace,    // \t \n \r, space, Zs, and U+2028/U+2029 (str.split() separators)
  kChinese,  // a CJK ideograph of _is_chinese_char: a word of its own
};
CleanClass Classify(char32_t cp);

// _is_chinese_char: the CJK Unified/Compatibility Ideograph ranges of the reference.
bool IsChineseChar(char32_t cp);

// _is_punctuation: ASCII symbol ranges 33-47, 58-64, 91-96, 123-126, or category P*.
bool IsPunctuation(char32_t cp);

// Python's str.lower() of one word: full lowercase mapping (U+0130 -> "i\u0307")
// and the Final_Sigma context of U+03A3 (Unicode 3.13, table 3-17).
void PythonLower(const std::u32string& word, std::u32string* lowered);

// unicodedata.normalize("NFD") (canonical decomposition, Hangul included,
// then canonical ordering), followed by dropping category Mn: the reference's
// _run_strip_accents.
void StripAccents(const std::u32string& word, std::u32string* stripped);

}  // namespace bert::unicode
