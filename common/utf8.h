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

// Decodes one strictly valid UTF-8 sequence at `p` (p < end): no overlongs,
// no surrogates, nothing above U+10FFFF. Returns its length (1-4), or 0 when
// the byte at `p` does not start a valid sequence; the caller then drops that
// one byte and resyncs at the next, which gives exactly Python's
// bytes.decode("utf-8", "ignore").
inline int DecodeUtf8(const unsigned char* p, const unsigned char* end, char32_t* cp) {
  const unsigned char b0 = p[0];
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  const ptrdiff_t avail = end - p;
  auto cont = [](unsigned char b) { return (b & 0xC0) == 0x80; };
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (avail < 2 || !cont(p[1])) return 0;
    *cp = (char32_t(b0 & 0x1F) << 6) | (p[1] & 0x3F);
    return 2;
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (avail < 3 || !cont(p[1]) || !cont(p[2])) return 0;
    if (b0 == 0xE0 && p[1] < 0xA0) return 0;   // overlong
    if (b0 == 0xED && p[1] >= 0xA0) return 0;  // surrogate
    *cp = (char32_t(b0 & 0x0F) << 12) | (char32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (avail < 4 || !cont(p[1]) || !cont(p[2]) || !cont(p[3])) return 0;
    if (b0 == 0xF0 && p[1] < 0x90) return 0;   // overlong
    if (b0 == 0xF4 && p[1] >= 0x90) return 0;  // above U+10FFFF
    *cp = (char32_t(b0 & 0x07) << 18) | (char32_t(p[1] & 0x3F) << 12) | (char32_t(p[2] & 0x3F) << 6) |
          (p[3] & 0x3F);
    return 4;
  }
  return 0;  // continuation byte, C0/C1 or F5..FF
}

// Length (1-4) of the valid UTF-8 sequence starting at s[i], or 0.
inline size_t ValidUtf8SequenceLength(std::string_view s, size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  char32_t cp = 0;
  return static_cast<size_t>(DecodeUtf8(p + i, p + s.size(), &cp));
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
