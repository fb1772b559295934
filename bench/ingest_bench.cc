// Ingest benchmark: MB/s of raw text through bertctl prepare's pipeline
// (read + decompress, sentence split, tokenize, RocksDB write) with 1 and 2
// threads, beside the reader alone (read + decompress + line split) over the
// same input in the same run.
//
// Input: the Linux kernel documentation (Debian's linux-doc-6.1, ~42 MB of
// gzip'd text), listed three times so that at least 100 MB pass through.
//   ingest_bench [--smoke] [--copies N] [--vocab FILE]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "common/file_util.h"
#include "common/logging.h"
#include "datapipe/corpus_ingest.h"
#include "datapipe/document_reader.h"
#include "datapipe/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kCorpusDir = "/usr/share/doc/linux-doc-6.1/Documentation";

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

// The reference: reading and decompressing alone.
double ReaderOnlyMBps(const std::vector<std::string>& files, uint64_t* bytes) {
  auto start = Clock::now();
  bert::DocumentReader reader(files, bert::ReaderOptions());
  bert::SourceDocument doc;
  while (reader.Next(&doc)) {
  }
  *bytes = reader.stats().bytes_read;
  return *bytes / 1e6 / Seconds(start);
}

}  // namespace

int main(int argc, char** argv) {
  bert::InitLogging(argv[0]);
  FLAGS_minloglevel = 1;  // progress lines would disturb the timing output
  bool smoke = false;
  int copies = 3;
  std::string vocab_path = std::string(BERT_SOURCE_DIR) + "/configs/vocab/bert-base-uncased-vocab.txt";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--smoke")) smoke = true;
    else if (!std::strcmp(argv[i], "--copies") && i + 1 < argc) copies = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--vocab") && i + 1 < argc) vocab_path = argv[++i];
    else {
      std::fprintf(stderr, "usage: ingest_bench [--smoke] [--copies N] [--vocab FILE]\n");
      return 2;
    }
  }
  std::vector<std::string> errors;
  std::vector<std::string> one_copy = bert::ExpandInputPaths({kCorpusDir}, &errors);
  if (one_copy.empty()) {
    std::fprintf(stderr, "ingest_bench: %s is missing; run scripts/setup.sh\n", kCorpusDir);
    return 1;
  }
  if (smoke) {
    one_copy.resize(std::min<size_t>(one_copy.size(), 40));
    copies = 1;
  }
  std::vector<std::string> files;
  for (int c = 0; c < copies; ++c) files.insert(files.end(), one_copy.begin(), one_copy.end());

  auto vocab = bert::Vocab::Load(vocab_path);
  if (!vocab.ok()) {
    std::fprintf(stderr, "ingest_bench: %s\n", vocab.status().message().c_str());
    return 1;
  }
  bert::FullTokenizer tokenizer(*vocab, bert::TokenizerOptions());
  uint64_t bytes = 0;
  double reader_mbps = ReaderOnlyMBps(files, &bytes);
  std::printf("ingest_bench: %zu files, %.1f MB of text (linux-doc-6.1 x%d)\n", files.size(), bytes / 1e6, copies);
  std::printf("  reference: read + decompress only      %8.1f MB/s\n", reader_mbps);

  std::string db_root = (std::filesystem::temp_directory_path() / "bert-ingest-bench").string();
  double one_thread = 0;
  for (int threads : {1, 2}) {
    bert::IngestOptions options;
    options.files = files;
    options.num_threads = threads;
    options.overwrite = true;
    options.progress_interval_s = 1e9;
    std::string db = db_root + "-" + std::to_string(threads);
    auto report = bert::IngestCorpus(db, tokenizer, options);
    if (!report.ok()) {
      std::fprintf(stderr, "ingest_bench: %s\n", report.status().message().c_str());
      return 1;
    }
    double mbps = report->input_bytes / 1e6 / report->seconds;
    if (threads == 1) one_thread = mbps;
    std::printf("  ingest, %d thread%s                      %8.1f MB/s  (%.2fx reader; %.2fx of 1 thread; %llu docs, "
                "%llu tokens)\n",
                threads, threads == 1 ? " " : "s", mbps, mbps / reader_mbps, mbps / one_thread,
                (unsigned long long)report->documents, (unsigned long long)report->tokens);
    std::error_code ec;
    std::filesystem::remove_all(db, ec);
  }
  return 0;
}
