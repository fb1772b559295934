// Minimal UTF-8 helpers shared by readers and the vocabulary loader.
// Validation is strict (RFC 3629): no overlongs, no surrogates, nothing above
// U+10FFFF. Dropping invalid bytes one at a time and resynchronising gives the
// same text as Python's bytes.decode("utf-8", "ignore"), which is what BERT's
// reference tokenizer does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace bert {

// Length (1-4) of the valid UTF-8 sequence starting at s[i], or 0 if the
// bytes there do not form one. Pure.
inline size_t ValidUtf8SequenceLength(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const size_t left = s.size() - i;
  unsigned char c = byte(0);
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;
  if (c < 0xE0) return (left >= 2 && (byte(1) & 0xC0) == 0x80) ? 2 : 0;
  if (c < 0xF0) {
    if (left < 3) return 0;
    unsigned char lo = (c == 0xE0) ? 0xA0 : 0x80, hi = (c == 0xED) ? 0x9F : 0xBF;
    return (byte(1) >= lo && byte(1) <= hi && (byte(2) & 0xC0) == 0x80) ? 3 : 0;
  }
  if (c < 0xF5) {
    if (left < 4) return 0;
    unsigned char lo = (c == 0xF0) ? 0x90 : 0x80, hi = (c == 0xF4) ? 0x8F : 0xBF;
    return (byte(1) >= lo && byte(1) <= hi && (byte(2) & 0xC0) == 0x80 && (byte(3) & 0xC0) == 0x80) ? 4 : 0;
  }
  return 0;
}

inline bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t len = ValidUtf8SequenceLength(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

// Removes invalid bytes in place; returns how many were dropped.
inline size_t DropInvalidUtf8(std::string* s) {
  size_t out = 0, dropped = 0;
  for (size_t i = 0; i < s->size();) {
    size_t len = ValidUtf8SequenceLength(*s, i);
    if (len == 0) {
      ++dropped;
      ++i;
      continue;
    }
    for (size_t k = 0; k < len; ++k) (*s)[out++] = (*s)[i + k];
    i += len;
  }
  s->resize(out);
  return dropped;
}

}  // namespace bert
