// DocumentReader: reads raw corpus files into documents, in input order.
//
// Formats (--format):
//   jsonl  one document per line: a JSON object with a string field "text".
//   lines  BERT's input format: one sentence per line, blank lines between
//          documents.
//   text   each file is one document.
//   auto   by file name: *.jsonl / *.json -> jsonl, otherwise text.
// Files ending in .gz or .dz (gzip, dictzip) are decompressed on the fly.
//
// Bad input never stops the reader: binary files, invalid JSON, a missing or
// non-string "text", empty documents and lines longer than max_line_bytes are
// reported as one warning line "FILE:LINE: reason", counted in ReaderStats
// and skipped. Invalid UTF-8 bytes in JSONL lines are dropped before parsing
// (counted); in the other formats the tokenizer drops and counts them.
// Not thread-safe; one reader per thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace bert {

enum class InputFormat { kAuto, kJsonl, kLines, kText };
Result<InputFormat> ParseInputFormat(std::string_view name);
const char* InputFormatName(InputFormat format);

struct ReaderOptions {
  InputFormat format = InputFormat::kAuto;
  size_t max_line_bytes = 8u << 20;       // longer lines are skipped with a warning
  size_t max_document_bytes = 64u << 20;  // longer documents are skipped with a warning
  int max_warnings = 20;                  // warnings printed; all are counted
};

struct SourceDocument {
  std::string text;                // jsonl/text: the document text, to be split into sentences
  std::vector<std::string> lines;  // lines format: the document's sentences, already split
  bool presplit = false;           // true for the lines format
  std::string origin;              // "FILE:LINE" where the document starts
};

// Where the reader stands: enough to continue a killed run exactly.
struct ReaderPosition {
  uint64_t file_index = 0;   // index into the file list
  uint64_t byte_offset = 0;  // offset in the (decompressed) file of the next unread line
  uint64_t line_number = 0;  // lines consumed so far in that file
};

struct ReaderStats {
  uint64_t files_opened = 0;
  uint64_t documents = 0;
  uint64_t bytes_read = 0;  // decompressed input bytes up to position()
  uint64_t unreadable_files = 0;
  uint64_t binary_files = 0;
  uint64_t invalid_json_lines = 0;
  uint64_t missing_text_lines = 0;
  uint64_t empty_documents = 0;
  uint64_t oversized_lines = 0;
  uint64_t oversized_documents = 0;
  uint64_t invalid_utf8_bytes = 0;  // dropped from JSONL lines before parsing (not a skip)
  uint64_t total_skipped() const {
    return unreadable_files + binary_files + invalid_json_lines + missing_text_lines + empty_documents +
           oversized_lines + oversized_documents;
  }
  // One line per counter that is not zero, e.g. "3 lines were not valid JSON".
  std::vector<std::string> Summary() const;
  // Calls fn(name, counter) for every counter, in a fixed order (persisting
  // and summing them without listing the fields again).
  template <typename Fn>
  void ForEachCounter(Fn fn) {
    fn("files_opened", files_opened);
    fn("documents", documents);
    fn("bytes_read", bytes_read);
    fn("unreadable_files", unreadable_files);
    fn("binary_files", binary_files);
    fn("invalid_json_lines", invalid_json_lines);
    fn("missing_text_lines", missing_text_lines);
    fn("empty_documents", empty_documents);
    fn("oversized_lines", oversized_lines);
    fn("oversized_documents", oversized_documents);
    fn("invalid_utf8_bytes", invalid_utf8_bytes);
  }
};

class DocumentReader {
 public:
  DocumentReader(std::vector<std::string> files, ReaderOptions options);
  ~DocumentReader();
  DocumentReader(const DocumentReader&) = delete;
  DocumentReader& operator=(const DocumentReader&) = delete;

  // Reads the next document. Returns false at the end of the input.
  bool Next(SourceDocument* doc);
  // The position just after the last document returned by Next().
  ReaderPosition position() const;
  // Continues from a position taken from position(), possibly in another
  // process. Resets stats(): they then count from the seek point.
  Status Seek(const ReaderPosition& position);
  const ReaderStats& stats() const;
  // Total input size in bytes as stored on disk (compressed where compressed), for progress.
  uint64_t total_file_bytes() const;
  // Bytes of the current file consumed, as stored on disk, summed with finished files.
  uint64_t consumed_file_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bert
