// bertctl tokenize: JSONL {"text": ...} -> JSONL {"ids": [...]}, one line per
// input line, in order, with BERT's reference FullTokenizer.
//
// Invalid UTF-8 is dropped (and counted) from each raw line before JSON
// parsing: a JSON parser must reject such strings, but the reference decodes
// with errors="ignore", and UTF-8 decoding resyncs at every ASCII byte, so
// dropping from the line equals dropping from the "text" value. Lone
// surrogate escapes, which Python's json module round-trips, are accepted too.
#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cli/command.h"
#include "common/utf8.h"
#include "common/logging.h"
#include "datapipe/tokenizer.h"

namespace bert::cli {
namespace {

struct TokenizeArgs {
  std::string vocab_path;
  std::string input = "-";   // "-" = stdin
  std::string output = "-";  // "-" = stdout
  bool cased = false;
  int max_chars_per_word = 100;
  int threads = 1;
};

constexpr size_t kBatchLines = 8192;              // lines parsed and encoded between writes
constexpr size_t kBatchBytes = size_t{16} << 20;  // ... or this many input bytes

// Result of one line: its output text or the reason it failed.
struct LineResult {
  std::string output;  // {"ids":[...]}\n
  std::string error;   // empty when the line was good
  uint64_t invalid_utf8_bytes = 0;
  uint64_t num_tokens = 0;
};

void AppendIdsLine(const std::vector<int32_t>& ids, std::string* out) {
  out->append("{\"ids\":[");
  char digits[16];
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) out->push_back(',');
    auto [end, ec] = std::to_chars(digits, digits + sizeof(digits), ids[i]);
    out->append(digits, end);
  }
  out->append("]}\n");
}

bool IsHex4(const std::string& s, size_t at) {
  auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
  return at + 4 <= s.size() && std::all_of(s.begin() + at, s.begin() + at + 4, hex);
}

// Rewrites each lone surrogate escape ("\ud800" without its pair) as "\uffff".
// Python's json.loads keeps a lone surrogate as a character of the text;
// nlohmann (rightly, for UTF-8) rejects it. The noncharacter U+FFFF behaves
// the same in every step of the reference (kept by cleaning, not whitespace,
// cased, case-ignorable, decomposable or punctuation, in no vocabulary), so
// the ids match what the reference computes from Python's string.
std::string ReplaceLoneSurrogateEscapes(const std::string& json) {
  std::string out = json;
  auto surrogate_at = [&](size_t at, char lo, char hi) {  // "\uDxxx" with x in [lo, hi] at `at`
    return at + 6 <= out.size() && out[at] == '\\' && (out[at + 1] == 'u') && IsHex4(out, at + 2) &&
           std::tolower(out[at + 2]) == 'd' && std::tolower(out[at + 3]) >= lo && std::tolower(out[at + 3]) <= hi;
  };
  for (size_t i = 0; i + 1 < out.size(); ++i) {
    if (out[i] != '\\') continue;
    if (surrogate_at(i, '8', 'b') && surrogate_at(i + 6, 'c', 'f')) {
      i += 11;  // a valid pair
    } else if (surrogate_at(i, '8', 'f')) {
      out.replace(i + 2, 4, "ffff");
      i += 5;
    } else {
      ++i;  // skip the escaped character, so an escaped backslash before "ud800" stays text
    }
  }
  return out;
}

nlohmann::json ParseRecord(const std::string& line) {
  try {
    return nlohmann::json::parse(line);
  } catch (const nlohmann::json::parse_error&) {
    if (line.find("\\u") == std::string::npos) throw;
    return nlohmann::json::parse(ReplaceLoneSurrogateEscapes(line));
  }
}

void EncodeLine(const FullTokenizer& tokenizer, const std::string& line, LineResult* result) {
  std::string valid = line;
  result->invalid_utf8_bytes = DropInvalidUtf8(&valid);
  nlohmann::json record;
  try {
    record = ParseRecord(valid);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for a number like 1e999
    result->error = valid.find_first_not_of(" \t\r") == std::string::npos ? "empty line, expected a JSON object"
                                                                           : std::string("not JSON: ") + e.what();
    return;
  }
  auto text = record.is_object() ? record.find("text") : record.end();
  if (!record.is_object() || text == record.end() || !text->is_string()) {
    result->error = "expected a JSON object with a string \"text\" field";
    return;
  }
  std::vector<int32_t> ids;
  tokenizer.Encode(text->get_ref<const std::string&>(), &ids);
  result->num_tokens = ids.size();
  AppendIdsLine(ids, &result->output);
}

// Encodes lines[i] into results[i], splitting the batch into contiguous
// slices, one per thread; FullTokenizer is safe to share.
void EncodeBatch(const FullTokenizer& tokenizer, const std::vector<std::string>& lines, int num_threads,
                 std::vector<LineResult>* results) {
  results->assign(lines.size(), LineResult{});
  const size_t slices = std::min<size_t>(static_cast<size_t>(num_threads), lines.size());
  auto work = [&](size_t slice) {
    for (size_t i = slice * lines.size() / slices; i < (slice + 1) * lines.size() / slices; ++i) {
      EncodeLine(tokenizer, lines[i], &(*results)[i]);
    }
  };
  std::vector<std::thread> workers;
  for (size_t slice = 1; slice < slices; ++slice) workers.emplace_back(work, slice);
  if (slices > 0) work(0);
  for (std::thread& worker : workers) worker.join();
}

// The output stream: stdout, or PATH.tmp renamed over PATH by Commit() so a
// failed run never leaves a file that looks complete.
class OutputFile {
 public:
  explicit OutputFile(std::string path) : path_(std::move(path)) {}
  ~OutputFile() {
    if (file_ != nullptr && file_ != stdout) {
      std::fclose(file_);
      std::remove(TempPath().c_str());
    }
  }
  bool Open() {
    file_ = path_ == "-" ? stdout : std::fopen(TempPath().c_str(), "wb");
    return file_ != nullptr;
  }
  bool Write(const std::string& bytes) { return std::fwrite(bytes.data(), 1, bytes.size(), file_) == bytes.size(); }
  bool Commit() {
    if (file_ == stdout) return std::fflush(stdout) == 0;
    bool ok = std::fflush(file_) == 0 && ::fsync(fileno(file_)) == 0;
    ok = std::fclose(file_) == 0 && ok;
    file_ = nullptr;
    if (!ok || std::rename(TempPath().c_str(), path_.c_str()) != 0) {
      std::remove(TempPath().c_str());
      return false;
    }
    std::string dir = path_.find('/') == std::string::npos ? "." : path_.substr(0, path_.rfind('/') + 1);
    int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dir_fd >= 0) {
      ::fsync(dir_fd);
      ::close(dir_fd);
    }
    return true;
  }
  std::string TempPath() const { return path_ + ".tmp"; }

 private:
  std::string path_;
  FILE* file_ = nullptr;
};

// Reads up to one batch of lines (without their '\n'). False at end of input.
bool ReadBatch(FILE* in, std::vector<std::string>* lines) {
  lines->clear();
  size_t bytes = 0;
  char* buffer = nullptr;
  size_t capacity = 0;
  ssize_t length;
  while (lines->size() < kBatchLines && bytes < kBatchBytes && (length = ::getline(&buffer, &capacity, in)) > 0) {
    size_t size = static_cast<size_t>(length);
    if (buffer[size - 1] == '\n') --size;
    lines->emplace_back(buffer, size);
    bytes += size;
  }
  std::free(buffer);
  return !lines->empty();
}

int RunTokenize(const TokenizeArgs& args) {
  Result<std::shared_ptr<const Vocab>> vocab = Vocab::Load(args.vocab_path);
  if (!vocab.ok()) {
    LOG(ERROR) << "[tokenize] --vocab: " << vocab.status().message();
    return 2;
  }
  FullTokenizer tokenizer(*vocab, TokenizerOptions{!args.cased, args.max_chars_per_word});
  const std::string input_name = args.input == "-" ? "<stdin>" : args.input;
  std::unique_ptr<FILE, int (*)(FILE*)> in(args.input == "-" ? stdin : std::fopen(args.input.c_str(), "rb"),
                                           [](FILE* f) { return f == stdin ? 0 : std::fclose(f); });
  if (in == nullptr) {
    LOG(ERROR) << "[tokenize] --input: cannot open " << args.input;
    return 2;
  }
  OutputFile out(args.output);
  if (!out.Open()) {
    LOG(ERROR) << "[tokenize] --output: cannot create " << out.TempPath();
    return 2;
  }
  const auto start = std::chrono::steady_clock::now();
  uint64_t line_number = 0, input_bytes = 0, num_tokens = 0, invalid_bytes = 0, lines_with_invalid = 0;
  std::vector<std::string> lines;
  std::vector<LineResult> results;
  while (ReadBatch(in.get(), &lines)) {
    EncodeBatch(tokenizer, lines, args.threads, &results);
    std::string batch_output;
    for (size_t i = 0; i < lines.size(); ++i) {
      ++line_number;
      if (!results[i].error.empty()) {
        LOG(ERROR) << "[tokenize] " << input_name << ":" << line_number << ": " << results[i].error;
        return 1;
      }
      input_bytes += lines[i].size() + 1;
      num_tokens += results[i].num_tokens;
      invalid_bytes += results[i].invalid_utf8_bytes;
      lines_with_invalid += results[i].invalid_utf8_bytes > 0;
      batch_output += results[i].output;
    }
    if (!out.Write(batch_output)) {
      LOG(ERROR) << "[tokenize] --output: write to " << out.TempPath() << " failed (disk full?)";
      return 1;
    }
  }
  if (std::ferror(in.get())) {
    LOG(ERROR) << "[tokenize] --input: read error on " << input_name;
    return 1;
  }
  if (!out.Commit()) {
    LOG(ERROR) << "[tokenize] --output: cannot write " << args.output;
    return 1;
  }
  if (invalid_bytes > 0) {
    LOG(WARNING) << "[tokenize] dropped " << invalid_bytes << " invalid UTF-8 bytes in " << lines_with_invalid
                 << " of " << line_number << " lines of " << input_name;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  LOG(INFO) << "[tokenize] " << line_number << " lines, " << num_tokens << " tokens, " << input_bytes / 1e6
            << " MB in " << seconds << " s (" << input_bytes / 1e6 / std::max(seconds, 1e-9) << " MB/s)";
  return 0;
}

std::function<int()> SetupTokenize(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Tokenize JSONL text into WordPiece ids (as BERT's reference tokenizer)");
  cmd->footer(
      "Ids equal Google BERT's tokenization.py FullTokenizer.\n"
      "Each input line must be a JSON object with a string \"text\" field; each output line is\n"
      "{\"ids\":[...]} for the input line with the same number (no [CLS]/[SEP]). Invalid UTF-8 bytes\n"
      "are dropped and counted in one warning. A bad line stops the run with an error naming\n"
      "input:line and a non-zero exit; a file output is then not created (it is written to OUT.tmp\n"
      "and renamed only on success).");
  cmd->add_option("--vocab", args->vocab_path, "BERT vocab.txt, one token per line")->required();
  cmd->add_flag("--cased", args->cased, "keep case and accents (default: lower-case and strip accents)");
  cmd->add_option("--input", args->input, "input JSONL file, '-' for stdin")->capture_default_str();
  cmd->add_option("--output", args->output, "output JSONL file, '-' for stdout")->capture_default_str();
  cmd->add_option("--max-chars-per-word", args->max_chars_per_word,
                  "words longer than this many code points become [UNK]")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--threads", args->threads, "encoding threads; output order is always input order")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  return [args] { return RunTokenize(*args); };
}

BERT_REGISTER_COMMAND(SetupTokenize);

}  // namespace
}  // namespace bert::cli
