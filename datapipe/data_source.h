// DataSource: what the coordinator builds batches from: the corpus (opened
// read-only), its in-memory index, the masking vocabulary and the sample
// options, all from the run config. Immutable once opened; shared by the
// batch builder threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/run_config.h"
#include "common/status.h"
#include "datapipe/corpus_index.h"
#include "datapipe/corpus_store.h"
#include "datapipe/masking.h"
#include "datapipe/sample_plan.h"

namespace bert {

struct DataSource {
  std::unique_ptr<Corpus> corpus;             // null when `index` holds every token (tests, benchmarks)
  std::shared_ptr<const CorpusIndex> index;
  std::shared_ptr<const MaskingVocab> vocab;
  SampleOptions options;
  std::string fingerprint;                    // identifies the corpus in the ledger: vocabulary checksum and sizes
  std::string vocab_checksum;                 // of the corpus's vocabulary (checkpoint manifests record it)
};

// The sample options a run config asks for (data.seed, data.max_seq_len, ...).
SampleOptions SampleOptionsFromConfig(const DataConfig& data);

// Opens config.data.db read-only, checks it was prepared with config.vocab
// and config.lower_case, loads the index (token ids
// resident up to max_resident_bytes). Errors name the database or the key.
Result<DataSource> OpenDataSource(const RunConfig& config, uint64_t max_resident_bytes);

}  // namespace bert
