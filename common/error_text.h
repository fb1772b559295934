// Text from an input file quoted in an error message. Errors are one line
// ("FILE:LINE: what"), but the text they quote (a YAML key, a parser's
// message that echoes the offending byte) comes from the input and may hold
// newlines or other control bytes. Found by fuzz/run_config_fuzz.
#pragma once

#include <string>
#include <string_view>

namespace bert {

// `text` with every ASCII control byte (and DEL) written as \n, \r, \t or
// \xNN, so that it cannot break the message's line. Other bytes (UTF-8)
// are kept. Pure.
inline std::string OneLineText(std::string_view text) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const unsigned char byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte != 0x7f) {
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 15];
    }
  }
  return out;
}

}  // namespace bert
