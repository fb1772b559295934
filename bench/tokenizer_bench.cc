// tokenizer_bench: single-thread FullTokenizer throughput on real text,
// printed beside a UTF-8 decode-only pass (validate + count code points) over
// the same bytes in the same run, so the figure carries its own yardstick.
//
// English: Debian's linux-doc Documentation (*.gz outside translations/);
// Chinese: Documentation/translations/zh_CN. Files are decompressed with
// `gzip -dc` (bench/ does not link zlib) and encoded one line per call, the
// granularity corpus ingest uses. Usage:
//   tokenizer_bench [--smoke] [--english-mb N] [--vocab-dir DIR] [--docs-dir DIR]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "datapipe/tokenizer.h"

namespace {

namespace fs = std::filesystem;

struct BenchArgs {
  bool smoke = false;           // tiny inputs, one pass: a CI check that it runs (< 2 s)
  double english_mb = 16;       // English bytes to decompress
  std::string vocab_dir = BERT_VOCAB_DIR;  // the bundled configs/vocab
  std::string docs_dir = "/usr/share/doc/linux-doc-6.1/Documentation";
};

bool ParseArgs(int argc, char** argv, BenchArgs* args) {
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    const bool has_value = i + 1 < argc;
    if (flag == "--smoke") {
      args->smoke = true;
    } else if (flag == "--english-mb" && has_value) {
      args->english_mb = std::atof(argv[++i]);
    } else if (flag == "--vocab-dir" && has_value) {
      args->vocab_dir = argv[++i];
    } else if (flag == "--docs-dir" && has_value) {
      args->docs_dir = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--smoke] [--english-mb N] [--vocab-dir DIR] [--docs-dir DIR]\n", argv[0]);
      return false;
    }
  }
  return true;
}

// The *.gz files under `dir` (sorted, so every run reads the same text),
// with or without those under translations/.
std::vector<std::string> GzFiles(const std::string& dir, bool skip_translations) {
  std::vector<std::string> files;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string path = it->path().string();
    if (skip_translations && path.find("/translations/") != std::string::npos) continue;
    if (it->is_regular_file() && it->path().extension() == ".gz") files.push_back(path);
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Concatenates decompressed files until `max_bytes` is reached; one gzip
// process per 64 files, since process start-up dominates for small files.
std::string Decompress(const std::vector<std::string>& files, size_t max_bytes) {
  std::string text;
  char buffer[1 << 16];
  for (size_t first = 0; first < files.size() && text.size() < max_bytes; first += 64) {
    std::string command = "gzip -dc";
    for (size_t i = first; i < std::min(files.size(), first + 64); ++i) command += " '" + files[i] + "'";
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) continue;
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) text.append(buffer, n);
    ::pclose(pipe);
  }
  if (text.size() > max_bytes) text.resize(text.rfind('\n', max_bytes) + 1);
  return text;
}

std::vector<std::string_view> Lines(const std::string& text) {
  std::vector<std::string_view> lines;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.emplace_back(text.data() + start, end - start);
    start = end + 1;
  }
  return lines;
}

// The yardstick: strict UTF-8 validation and a code point count, no tables.
uint64_t DecodeOnly(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  uint64_t code_points = 0;
  while (p < end) {
    const unsigned char b = *p;
    size_t length = b < 0x80 ? 1 : b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
    bool ok = length > 0 && static_cast<size_t>(end - p) >= length;
    for (size_t k = 1; ok && k < length; ++k) ok = (p[k] & 0xC0) == 0x80;
    if (ok && length == 3) ok = !(b == 0xE0 && p[1] < 0xA0) && !(b == 0xED && p[1] >= 0xA0);
    if (ok && length == 4) ok = !(b == 0xF0 && p[1] < 0x90) && !(b == 0xF4 && p[1] >= 0x90);
    p += ok ? length : 1;
    code_points += ok;
  }
  return code_points;
}

// Best-of-`passes` seconds of fn().
template <typename Fn>
double BestSeconds(int passes, Fn&& fn) {
  double best = 1e30;
  for (int pass = 0; pass < passes; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

bool RunCase(const char* name, const std::string& text, const std::string& vocab_path, bool lower_case, int passes) {
  bert::Result<std::shared_ptr<const bert::Vocab>> vocab = bert::Vocab::Load(vocab_path);
  if (!vocab.ok()) {
    std::fprintf(stderr, "tokenizer_bench: %s\n", vocab.status().message().c_str());
    return false;
  }
  bert::FullTokenizer tokenizer(*vocab, bert::TokenizerOptions{lower_case, 100});
  const std::vector<std::string_view> lines = Lines(text);
  uint64_t code_points = 0, tokens = 0;
  const double decode_s = BestSeconds(passes, [&] { code_points = DecodeOnly(text); });
  std::vector<int32_t> ids;
  const double tokenize_s = BestSeconds(passes, [&] {
    tokens = 0;
    for (std::string_view line : lines) {
      ids.clear();
      tokenizer.Encode(line, &ids);
      tokens += ids.size();
    }
  });
  const double mb = text.size() / 1e6;
  // The peer: HuggingFace tokenizers on the same text and vocabulary, one thread.
  const std::string text_path = "/tmp/tokenizer_bench_" + std::to_string(::getpid()) + ".txt";
  { std::ofstream(text_path, std::ios::binary) << text; }
  const std::string command = std::string(BERT_PYTHON) + " " + BERT_SOURCE_DIR + "/bench/tokenizers_peer.py --vocab " +
                              vocab_path + " --input " + text_path + (lower_case ? "" : " --cased") +
                              " --passes " + std::to_string(passes);
  double peer_mb_s = 0;
  unsigned long long peer_tokens = 0;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    if (std::fscanf(pipe, "%lf %llu", &peer_mb_s, &peer_tokens) != 2) peer_mb_s = 0;
    ::pclose(pipe);
  }
  std::remove(text_path.c_str());
  if (peer_mb_s <= 0) {
    std::fprintf(stderr, "tokenizer_bench: the HF tokenizers peer failed: %s\n", command.c_str());
    return false;
  }
  if (peer_tokens != tokens) {
    std::fprintf(stderr, "tokenizer_bench: %s: HF tokenizers made %llu tokens, ours %llu\n", name, peer_tokens,
                 static_cast<unsigned long long>(tokens));
  }
  const size_t ascii = std::count_if(text.begin(), text.end(), [](char c) { return (c & 0x80) == 0; });
  std::printf("%-26s %7.2f %6.2f%% %10.0f %10.1f %8.4f %10.2f %10.1f %7.2fx\n", name, mb,
              100.0 * ascii / std::max<size_t>(text.size(), 1), mb / decode_s, mb / tokenize_s, decode_s / tokenize_s,
              tokens / tokenize_s / 1e6, peer_mb_s, mb / tokenize_s / peer_mb_s);
  return code_points > 0 && tokens > 0;
}

}  // namespace

int main(int argc, char** argv) {
  BenchArgs args;
  if (!ParseArgs(argc, argv, &args)) return 2;
  const size_t english_bytes = args.smoke ? (256u << 10) : static_cast<size_t>(args.english_mb * 1e6);
  const size_t chinese_bytes = args.smoke ? (64u << 10) : size_t{64} << 20;
  const int passes = args.smoke ? 1 : 3;
  const std::string english = Decompress(GzFiles(args.docs_dir, true), english_bytes);
  const std::string chinese = Decompress(GzFiles(args.docs_dir + "/translations/zh_CN", false), chinese_bytes);
  if (english.empty() || chinese.empty()) {
    std::fprintf(stderr, "tokenizer_bench: no text under %s (is linux-doc installed?)\n", args.docs_dir.c_str());
    return 1;
  }
  std::printf("tokenizer_bench: single thread, one Encode() per line, best of %d pass(es)\n", passes);
  std::printf("%-26s %7s %7s %10s %10s %8s %10s %10s %8s\n", "corpus", "MB", "ASCII", "decode", "tokenize", "ratio",
              "Mtokens/s", "HF tok.", "ours/HF");
  std::printf("%-26s %7s %7s %10s %10s %8s %10s %10s %8s\n", "", "", "bytes", "MB/s", "MB/s", "tok/dec", "", "MB/s", "");
  const std::string uncased = args.vocab_dir + "/bert-base-uncased-vocab.txt";
  bool ok = RunCase("english uncased", english, uncased, true, passes);
  ok = RunCase("english cased", english, uncased, false, passes) && ok;
  ok = RunCase("chinese (zh_CN) chinese", chinese, args.vocab_dir + "/bert-base-chinese-vocab.txt", true, passes) && ok;
  ok = RunCase("chinese (zh_CN) uncased", chinese, uncased, true, passes) && ok;
  return ok ? 0 : 1;
}
