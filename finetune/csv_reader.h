// Internal to finetune/: splitting delimited text into records.
//
// CSV follows RFC 4180: fields separated by commas, a field may be enclosed
// in double quotes, a quote inside a quoted field is written "", and a quoted
// field may hold commas and line breaks. Records end at LF or CRLF. TSV is
// the plain tab-separated form (no quoting: a quote is an ordinary byte).
// Blank lines between records are skipped. Errors name the file and line.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace bert::finetune {

struct DelimitedRecord {
  std::vector<std::string> fields;
  int64_t line = 0;  // 1-based line where the record starts
};

// `source` names the file in errors ("train.csv:12: unterminated quoted field").
Result<std::vector<DelimitedRecord>> SplitCsv(std::string_view text, const std::string& source);
Result<std::vector<DelimitedRecord>> SplitTsv(std::string_view text, const std::string& source);

}  // namespace bert::finetune
