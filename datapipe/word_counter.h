// Word counting for the vocabulary trainer: BasicTokenizer words
// (tokenizer.h, steps 1-6) counted in parallel. One thread reads documents
// into a bounded queue; each counting thread tokenizes a share of them into
// its own hash map; the maps are summed and sorted by word, so the result is
// identical for any thread count.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "datapipe/document_reader.h"

namespace bert {

struct WordCount {
  std::string word;    // a BasicTokenizer word (UTF-8)
  uint64_t count = 0;  // occurrences in the corpus
};

struct WordCountOptions {
  int num_threads = 1;                     // tokenizing threads (>= 1); the caller's thread reads
  bool lower_case = true;                  // uncased: lower-case + strip accents, as the tokenizer will
  ReaderOptions reader;                    // input format and limits (files only)
  bool log_progress = false;               // "[vocab]" progress lines every few seconds
};

struct WordCountResult {
  std::vector<WordCount> words;     // unique words, sorted by word (byte order)
  uint64_t num_documents = 0;       // documents tokenized
  uint64_t num_words = 0;           // words in all documents (sum of counts)
  uint64_t invalid_utf8_bytes = 0;  // bytes the tokenizer dropped
  ReaderStats reader_stats;         // what the reader skipped (files only)
  double seconds = 0;               // wall time of the count
};

// Counts the words of the documents in `files` (already expanded, see
// ExpandInputPaths). Unreadable or bad input is skipped and counted in
// reader_stats, as DocumentReader does; fails only on bad options.
Result<WordCountResult> CountWordsInFiles(const std::vector<std::string>& files,
                                          const WordCountOptions& options);

// Same, over documents held in memory (tests, benchmarks).
Result<WordCountResult> CountWordsInTexts(const std::vector<std::string>& documents,
                                          const WordCountOptions& options);

}  // namespace bert
