// Corpus ingest (`bertctl prepare`): raw files -> sentences -> token ids ->
// RocksDB (layout in corpus_store.h).
//
// Determinism: documents are read in input order and written in that order,
// so document ids and contents do not depend on the thread count.
// Kill safety: each batch of documents is written in one RocksDB WriteBatch
// together with a "progress" record (reader position, next id, counters). A
// re-run of the same command continues after the last durable batch, so the
// result equals an uninterrupted run's. The meta record is marked complete
// only after the final batch is flushed and synced.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "datapipe/document_reader.h"
#include "datapipe/tokenizer.h"

namespace bert {

struct IngestOptions {
  std::vector<std::string> files;  // expanded input files of this shard, in order
  ReaderOptions reader;            // format and size limits
  int num_threads = 1;             // tokenizing threads; 1 = everything on the calling thread
  bool overwrite = false;          // delete an existing database first
  uint32_t shard_index = 0;        // --shard I/N
  uint32_t num_shards = 1;
  std::string shard_set_id;        // fingerprint of the whole input list (same for all shards)
  size_t batch_bytes = 4u << 20;   // raw text per batch (and per durable progress step)
  double progress_interval_s = 5;  // seconds between progress lines
};

struct IngestReport {
  uint64_t documents = 0;
  uint64_t sentences = 0;
  uint64_t tokens = 0;
  uint64_t unk_tokens = 0;
  uint64_t input_bytes = 0;            // decompressed bytes read
  uint64_t invalid_utf8_bytes = 0;     // dropped by the reader or the tokenizer
  uint64_t empty_after_tokenize = 0;   // documents with no tokens left, skipped
  ReaderStats reader;                  // bad-input counters
  bool resumed = false;                // continued an interrupted run
  bool already_complete = false;       // the same ingest had finished before; nothing was done
  double seconds = 0;
  std::vector<std::string> Summary() const;  // one line per skip/drop counter
};

// Ingests options.files into the database at db_dir. A database already
// completed from the same input and settings is left as it is; one made from
// other input or settings is refused (unless overwrite), naming the directory. Fatal only for errors where continuing would
// be wrong (the database cannot be written); bad input is counted and skipped.
Result<IngestReport> IngestCorpus(const std::string& db_dir, const FullTokenizer& tokenizer,
                                  const IngestOptions& options);

// Slice I of N of a file list: contiguous, so shard order is input order.
std::vector<std::string> ShardSlice(const std::vector<std::string>& files, uint32_t index, uint32_t count);

// xxh3 fingerprint (hex) of a file list with sizes and modification times.
std::string FingerprintFiles(const std::vector<std::string>& files);

}  // namespace bert
