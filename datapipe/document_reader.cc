#include "datapipe/document_reader.h"

#include <sys/stat.h>
#include <zlib.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "common/logging.h"
#include "common/utf8.h"

namespace bert {

Result<InputFormat> ParseInputFormat(std::string_view name) {
  if (name == "auto") return InputFormat::kAuto;
  if (name == "jsonl") return InputFormat::kJsonl;
  if (name == "lines") return InputFormat::kLines;
  if (name == "text") return InputFormat::kText;
  return Status::InvalidArgument("--format: unknown format '" + std::string(name) +
                                 "' (expected auto, jsonl, lines or text)");
}

const char* InputFormatName(InputFormat format) {
  switch (format) {
    case InputFormat::kAuto: return "auto";
    case InputFormat::kJsonl: return "jsonl";
    case InputFormat::kLines: return "lines";
    case InputFormat::kText: return "text";
  }
  return "?";
}

std::vector<std::string> ReaderStats::Summary() const {
  std::vector<std::string> lines;
  auto add = [&](uint64_t n, const char* what) {
    if (n > 0) lines.push_back(std::to_string(n) + " " + what);
  };
  add(unreadable_files, "files could not be read");
  add(binary_files, "files looked binary (NUL bytes) and were skipped");
  add(invalid_json_lines, "JSONL lines were not valid JSON objects and were skipped");
  add(missing_text_lines, "JSONL lines had no string \"text\" field and were skipped");
  add(empty_documents, "documents were empty and were skipped");
  add(oversized_lines, "lines exceeded the line size limit and were skipped");
  add(oversized_documents, "documents exceeded the document size limit and were skipped");
  add(invalid_utf8_bytes, "invalid UTF-8 bytes were dropped from JSONL lines");
  return lines;
}

namespace {

bool EndsWith(const std::string& s, const char* suffix) {
  size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

std::string StripCompressionSuffix(const std::string& path) {
  if (EndsWith(path, ".gz") || EndsWith(path, ".dz")) return path.substr(0, path.size() - 3);
  return path;
}

InputFormat FormatForFile(InputFormat requested, const std::string& path) {
  if (requested != InputFormat::kAuto) return requested;
  std::string name = StripCompressionSuffix(path);
  if (EndsWith(name, ".jsonl") || EndsWith(name, ".json")) return InputFormat::kJsonl;
  return InputFormat::kText;
}

bool IsBlank(std::string_view line) {
  for (char c : line) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != '\f' && c != '\v') return false;
  }
  return true;
}

}  // namespace

struct DocumentReader::Impl {
  std::vector<std::string> files;
  std::vector<uint64_t> file_sizes;
  ReaderOptions options;
  ReaderStats stats;
  int warnings_printed = 0;
  uint64_t invalid_utf8_warned_file_ = UINT64_MAX;  // the file index last warned about invalid UTF-8

  // The open file (gzopen reads plain files transparently).
  gzFile gz = nullptr;
  InputFormat format = InputFormat::kText;
  uint64_t file_index = 0;
  uint64_t offset = 0;       // decompressed offset of the next unread byte of `gz`
  uint64_t line_number = 0;  // lines consumed from the open file
  ReaderPosition committed;  // position after the last returned document
  bool at_end = false;
  uint64_t consumed_before_file = 0;  // bytes of files finished since the start (or Seek)
  uint64_t file_base_offset = 0;      // offset in the open file where counting began

  std::string buffer;  // bytes read from gz not yet consumed
  size_t buffer_pos = 0;
  bool eof = false;

  ~Impl() { CloseFile(); }

  void Warn(const std::string& where, const std::string& reason) {
    if (warnings_printed < options.max_warnings) {
      LOG(WARNING) << "[reader] " << where << ": " << reason;
      if (++warnings_printed == options.max_warnings) {
        LOG(WARNING) << "[reader] further warnings are counted but not printed";
      }
    }
  }

  std::string Where(uint64_t line) const { return files[file_index] + ":" + std::to_string(line); }

  void CloseFile() {
    if (gz != nullptr) gzclose(gz);
    gz = nullptr;
    buffer.clear();
    buffer_pos = 0;
    eof = false;
  }

  // Opens files[file_index]; on failure counts, warns and returns false.
  bool OpenFile() {
    CloseFile();
    const std::string& path = files[file_index];
    gz = gzopen(path.c_str(), "rb");
    if (gz == nullptr) {
      ++stats.unreadable_files;
      Warn(path, std::string("cannot open: ") + std::strerror(errno));
      return false;
    }
    gzbuffer(gz, 1 << 17);
    ++stats.files_opened;
    format = FormatForFile(options.format, path);
    offset = 0;
    line_number = 0;
    return true;
  }

  // Makes at least one more byte available; false at end of file or on error.
  bool Fill() {
    if (eof) return false;
    if (buffer_pos > 0) {
      buffer.erase(0, buffer_pos);
      buffer_pos = 0;
    }
    size_t old_size = buffer.size();
    buffer.resize(old_size + (1 << 16));
    int n = gzread(gz, &buffer[old_size], 1 << 16);
    if (n <= 0) {
      buffer.resize(old_size);
      eof = true;
      if (n < 0) {
        int errnum = 0;
        Warn(files[file_index], std::string("read error: ") + gzerror(gz, &errnum));
      }
      return false;
    }
    buffer.resize(old_size + static_cast<size_t>(n));
    return true;
  }

  // Reads one line (without '\n') into *line. Lines longer than the limit are
  // consumed, reported and returned with *oversized set. False at end of file.
  bool ReadLine(std::string* line, bool* oversized) {
    line->clear();
    *oversized = false;
    for (;;) {
      size_t nl = buffer.find('\n', buffer_pos);
      size_t end = nl == std::string::npos ? buffer.size() : nl;
      size_t take = end - buffer_pos;
      if (!*oversized) {
        if (line->size() + take > options.max_line_bytes) {
          *oversized = true;
          line->clear();
        } else {
          line->append(buffer, buffer_pos, take);
        }
      }
      offset += take;
      buffer_pos = end;
      if (nl != std::string::npos) {
        ++buffer_pos;
        ++offset;
        ++line_number;
        return true;
      }
      if (!Fill()) {
        if (line->empty() && !*oversized) return false;
        ++line_number;
        return true;
      }
    }
  }

  bool LooksBinary() {
    while (buffer.size() - buffer_pos < 8192 && Fill()) {
    }
    size_t n = std::min<size_t>(buffer.size() - buffer_pos, 8192);
    return std::memchr(buffer.data() + buffer_pos, '\0', n) != nullptr;
  }

  bool NextFromJsonl(SourceDocument* doc) {
    std::string line;
    bool oversized = false;
    while (ReadLine(&line, &oversized)) {
      if (oversized) {
        ++stats.oversized_lines;
        Warn(Where(line_number), "line longer than " + std::to_string(options.max_line_bytes) + " bytes, skipped");
        continue;
      }
      if (IsBlank(line)) continue;
      const uint64_t dropped = DropInvalidUtf8(&line);
      stats.invalid_utf8_bytes += dropped;
      if (dropped > 0 && invalid_utf8_warned_file_ != file_index) {  // each file once; all are counted
        invalid_utf8_warned_file_ = file_index;
        Warn(Where(line_number), std::to_string(dropped) +
                                     " invalid UTF-8 byte(s) dropped (the first line of this file with any; all are "
                                     "counted)");
      }
      nlohmann::json value = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (value.is_discarded() || !value.is_object()) {
        ++stats.invalid_json_lines;
        Warn(Where(line_number), "not a JSON object, skipped");
        continue;
      }
      auto it = value.find("text");
      if (it == value.end() || !it->is_string()) {
        ++stats.missing_text_lines;
        Warn(Where(line_number), "no string field \"text\", skipped");
        continue;
      }
      doc->text = it->get<std::string>();
      if (IsBlank(doc->text)) {
        ++stats.empty_documents;
        Warn(Where(line_number), "empty \"text\", skipped");
        continue;
      }
      doc->origin = Where(line_number);
      return true;
    }
    return false;
  }

  bool NextFromLines(SourceDocument* doc) {
    std::string line;
    bool oversized = false;
    uint64_t first_line = 0;
    while (ReadLine(&line, &oversized)) {
      if (oversized) {
        ++stats.oversized_lines;
        Warn(Where(line_number), "line longer than " + std::to_string(options.max_line_bytes) + " bytes, skipped");
        continue;
      }
      if (IsBlank(line)) {
        if (!doc->lines.empty()) break;  // a blank line ends the document
        continue;
      }
      if (doc->lines.empty()) first_line = line_number;
      doc->lines.push_back(std::move(line));
      line.clear();
    }
    if (doc->lines.empty()) return false;
    doc->presplit = true;
    doc->origin = Where(first_line);
    return true;
  }

  bool NextFromText(SourceDocument* doc) {
    if (offset != 0 || line_number != 0) return false;  // the file was already returned
    if (LooksBinary()) {
      ++stats.binary_files;
      Warn(files[file_index], "looks binary (contains NUL bytes), skipped");
      return false;
    }
    while (Fill()) {
      if (buffer.size() > options.max_document_bytes) break;
    }
    line_number = 1;
    if (buffer.size() > options.max_document_bytes) {
      ++stats.oversized_documents;
      Warn(files[file_index], "larger than " + std::to_string(options.max_document_bytes) + " bytes, skipped");
      offset = 1;  // mark the file as consumed
      return false;
    }
    offset = buffer.size();
    doc->text.assign(buffer, buffer_pos, std::string::npos);
    buffer_pos = buffer.size();
    if (IsBlank(doc->text)) {
      ++stats.empty_documents;
      Warn(files[file_index], "empty file, skipped");
      return false;
    }
    doc->origin = files[file_index] + ":1";
    return true;
  }

  bool NextInFile(SourceDocument* doc) {
    if (format != InputFormat::kText && offset == 0 && line_number == 0 && LooksBinary()) {
      ++stats.binary_files;
      Warn(files[file_index], "looks binary (contains NUL bytes), skipped");
      return false;
    }
    switch (format) {
      case InputFormat::kJsonl: return NextFromJsonl(doc);
      case InputFormat::kLines: return NextFromLines(doc);
      default: return NextFromText(doc);
    }
  }

  bool Next(SourceDocument* doc) {
    *doc = SourceDocument();
    while (!at_end) {
      if (gz == nullptr) {
        if (file_index >= files.size()) {
          at_end = true;
          break;
        }
        if (!OpenFile()) {
          ++file_index;
          continue;
        }
      }
      if (NextInFile(doc)) {
        ++stats.documents;
        committed = {file_index, offset, line_number};
        stats.bytes_read = consumed_before_file + offset - file_base_offset;
        return true;
      }
      consumed_before_file += offset - file_base_offset;
      file_base_offset = 0;
      stats.bytes_read = consumed_before_file;
      CloseFile();
      ++file_index;
      committed = {file_index, 0, 0};
    }
    committed = {files.size(), 0, 0};
    return false;
  }

  Status Seek(const ReaderPosition& position) {
    CloseFile();
    at_end = false;
    stats = ReaderStats();  // counters restart at the seek point; the caller keeps totals
    consumed_before_file = 0;
    file_base_offset = position.byte_offset;
    file_index = position.file_index;
    committed = position;
    if (file_index >= files.size()) {
      if (file_index == files.size()) return Status::Ok();
      return Status::InvalidArgument("reader position past the end of the input list");
    }
    if (position.byte_offset == 0 && position.line_number == 0) return Status::Ok();
    if (!OpenFile()) return Status::IoError(files[file_index] + ": cannot reopen to continue");
    --stats.files_opened;  // counted by the run that first opened it
    // Skip forward by reading (gzseek would do the same work for compressed files).
    while (offset < position.byte_offset) {
      if (buffer_pos >= buffer.size() && !Fill()) break;
      size_t step = std::min<uint64_t>(buffer.size() - buffer_pos, position.byte_offset - offset);
      buffer_pos += step;
      offset += step;
    }
    if (offset != position.byte_offset) {
      return Status::FailedPrecondition(files[file_index] + ": file is shorter than when ingest began; "
                                        "the input changed, start over with --overwrite");
    }
    line_number = position.line_number;
    return Status::Ok();
  }
};

DocumentReader::DocumentReader(std::vector<std::string> files, ReaderOptions options) : impl_(new Impl) {
  impl_->files = std::move(files);
  impl_->options = options;
  for (const std::string& path : impl_->files) {
    struct stat st;
    impl_->file_sizes.push_back(::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0);
  }
}

DocumentReader::~DocumentReader() = default;
bool DocumentReader::Next(SourceDocument* doc) { return impl_->Next(doc); }
ReaderPosition DocumentReader::position() const { return impl_->committed; }
Status DocumentReader::Seek(const ReaderPosition& position) { return impl_->Seek(position); }
const ReaderStats& DocumentReader::stats() const { return impl_->stats; }

uint64_t DocumentReader::total_file_bytes() const {
  uint64_t total = 0;
  for (uint64_t size : impl_->file_sizes) total += size;
  return total;
}

uint64_t DocumentReader::consumed_file_bytes() const {
  uint64_t done = 0;
  for (uint64_t i = 0; i < impl_->file_index && i < impl_->file_sizes.size(); ++i) done += impl_->file_sizes[i];
  if (impl_->gz != nullptr) done += static_cast<uint64_t>(gzoffset(impl_->gz));
  return done;
}

}  // namespace bert
