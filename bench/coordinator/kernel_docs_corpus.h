// The coordinator benchmarks' corpus: the Linux kernel documentation
// (Debian's linux-doc-6.1) tokenized with BERT's uncased vocabulary into a
// temporary corpus database, removed with this object.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/status.h"
#include "datapipe/corpus_ingest.h"

namespace bert::bench {

class KernelDocsCorpus {
 public:
  static constexpr const char* kCorpusDir = "/usr/share/doc/linux-doc-6.1/Documentation";

  // A fresh temporary directory named after `bench` and this process.
  explicit KernelDocsCorpus(const std::string& bench)
      : dir_((std::filesystem::temp_directory_path() / (bench + "-" + std::to_string(getpid()))).string()) {}
  ~KernelDocsCorpus() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  KernelDocsCorpus(const KernelDocsCorpus&) = delete;
  KernelDocsCorpus& operator=(const KernelDocsCorpus&) = delete;

  // Ingests the first max_files files into dir()/db.
  Status Ingest(size_t max_files) {
    std::vector<std::string> errors;
    files_ = ExpandInputPaths({kCorpusDir}, &errors);
    if (files_.empty()) return Status::NotFound(std::string(kCorpusDir) + " is missing; run scripts/setup.sh");
    files_.resize(std::min(files_.size(), max_files));
    auto vocab = Vocab::Load(vocab_path());
    if (!vocab.ok()) return vocab.status();
    IngestOptions ingest;
    ingest.files = files_;
    ingest.num_threads = 2;
    ingest.progress_interval_s = 1e9;
    auto report = IngestCorpus(db(), FullTokenizer(*vocab, TokenizerOptions()), ingest);
    return report.ok() ? Status::Ok() : report.status();
  }

  const std::string& dir() const { return dir_; }
  std::string db() const { return dir_ + "/db"; }
  size_t num_files() const { return files_.size(); }
  static std::string vocab_path() { return std::string(BERT_VOCAB_DIR) + "/bert-base-uncased-vocab.txt"; }

 private:
  std::string dir_;
  std::vector<std::string> files_;
};

}  // namespace bert::bench
