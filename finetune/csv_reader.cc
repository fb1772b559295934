#include "finetune/csv_reader.h"

namespace bert::finetune {
namespace {

bool IsBlank(const DelimitedRecord& record) { return record.fields.size() == 1 && record.fields[0].empty(); }

}  // namespace

Result<std::vector<DelimitedRecord>> SplitCsv(std::string_view text, const std::string& source) {
  std::vector<DelimitedRecord> records;
  DelimitedRecord record;
  record.line = 1;
  std::string field;
  int64_t line = 1;
  size_t i = 0;
  auto end_record = [&](int64_t next_line) {
    record.fields.push_back(std::move(field));
    field.clear();
    if (!IsBlank(record)) records.push_back(std::move(record));
    record = DelimitedRecord();
    record.line = next_line;
  };
  while (i < text.size()) {
    const char c = text[i];
    if (c == '"' && field.empty()) {
      // Quoted field: runs to the closing quote, "" is a literal quote.
      const int64_t quote_line = line;
      ++i;
      bool closed = false;
      while (i < text.size()) {
        if (text[i] == '"') {
          if (i + 1 < text.size() && text[i + 1] == '"') {
            field.push_back('"');
            i += 2;
            continue;
          }
          ++i;
          closed = true;
          break;
        }
        if (text[i] == '\n') ++line;
        field.push_back(text[i++]);
      }
      if (!closed) {
        return Status::InvalidArgument(source + ":" + std::to_string(quote_line) +
                                       ": unterminated quoted field (a \" without its closing \")");
      }
      if (i < text.size() && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
        return Status::InvalidArgument(source + ":" + std::to_string(line) +
                                       ": text after a closing quote (write a quote inside a quoted field as \"\")");
      }
      // An empty quoted field must still count as a field: mark it by
      // leaving `field` empty; the separator below pushes it.
      continue;
    }
    if (c == ',') {
      record.fields.push_back(std::move(field));
      field.clear();
      ++i;
    } else if (c == '\n' || (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n')) {
      i += c == '\r' ? 2 : 1;
      ++line;
      end_record(line);
    } else {
      field.push_back(c);
      ++i;
    }
  }
  if (!field.empty() || !record.fields.empty()) end_record(line);
  return records;
}

Result<std::vector<DelimitedRecord>> SplitTsv(std::string_view text, const std::string& source) {
  std::vector<DelimitedRecord> records;
  int64_t line = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view row = text.substr(start, end - start);
    start = end + 1;
    ++line;
    if (!row.empty() && row.back() == '\r') row.remove_suffix(1);
    if (row.empty()) continue;
    DelimitedRecord record;
    record.line = line;
    size_t from = 0;
    while (true) {
      const size_t tab = row.find('\t', from);
      record.fields.emplace_back(row.substr(from, tab == std::string_view::npos ? std::string_view::npos : tab - from));
      if (tab == std::string_view::npos) break;
      from = tab + 1;
    }
    records.push_back(std::move(record));
  }
  return records;
}

}  // namespace bert::finetune
