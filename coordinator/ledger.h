// Ledger: the coordinator's record of every batch dispatched and
// acknowledged, in RocksDB at RUN_DIR/coordinator/ledger, so that a
// restarted coordinator continues where it was.
//
// Layout (keys are bytes; integers in keys big-endian so that they sort):
//   "meta"                       JSON LedgerMeta (below)
//   "cursor"                     u64 LE: the first step not acknowledged by every
//                                (rank, micro-batch); all steps before it are done
//   "e" + u64 epoch              u64 LE: samples in that epoch (learned once, so a
//                                resume need not rebuild earlier epochs' layouts)
//   "b" + u64 step + u32 rank + u32 micro
//                                LedgerEntry (EncodeEntry: fixed 84 bytes, versioned)
//
// Resume rule. Open() on an existing ledger checks that the run id and the
// sample plan (seed, sequence length, masking, G, corpus) are unchanged,
// starts a new session (meta.session + 1), and deletes the entries of steps
// >= cursor: those steps are re-run from the cursor by the new session's
// workers (the batches are a pure function of the step, so they are sent
// again identically). Hence in a finished run every step < cursor has
// exactly one entry per (rank, micro), each acknowledged, and an entry's
// dispatch_count counts sends within its session (1 unless a bug resent it).
// World size and micro-batch size may change between sessions. With
// resume_at (the latest checkpoint's step) the cursor moves there instead:
// training state is only as new as the checkpoint, so later steps run again.
//
// Durability: writes use the WAL without fsync (sync=false): a killed
// coordinator process loses nothing; a machine crash may lose the last
// writes, which only means re-sending those batches (checkpoint commit is
// where training state becomes durable).
//
// Errors are Status naming the ledger directory. Thread safety: all methods
// may be called from any thread (RocksDB is thread-safe); RecordDispatch and
// RecordAck read-modify-write an entry and must be called from one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include "common/status.h"
#include "datapipe/dispatch_plan.h"

namespace rocksdb {
class DB;
}

namespace bert {

struct LedgerMeta {
  std::string run_id;
  // The sample plan: a ledger refuses to be resumed with other values.
  uint64_t global_batch_size = 0;
  uint64_t seed = 0;
  int32_t max_seq_len = 0;
  int32_t max_predictions = 0;
  double masked_lm_prob = 0;
  double short_seq_prob = 0;
  bool whole_word_masking = false;
  bool chinese_whole_word = false;  // data.chinese_whole_word (false in ledgers from before it)
  std::string objective = "mlm_nsp";  // data.objective (older ledgers: mlm_nsp)
  bool packing = false;               // data.packing (older ledgers: false)
  std::string corpus_fingerprint;  // vocabulary checksum and corpus size
  // Free to change between sessions (recorded for the dump).
  uint32_t world_size = 0;
  uint64_t micro_batch_size = 0;
  uint64_t total_steps = 0;
  uint32_t session = 0;  // set by Open(): 1 for a new ledger, +1 per resume

  std::string ToJson() const;
  static Result<LedgerMeta> FromJson(std::string_view json, const std::string& where);
  // First field that differs in the sample plan, as "data.seed: 7 in the
  // ledger, 8 now", or "" when they agree.
  std::string PlanDifference(const LedgerMeta& now) const;
};

struct LedgerEntry {
  uint64_t epoch = 0;
  uint64_t sample_begin = 0;  // epoch-local [sample_begin, sample_end)
  uint64_t sample_end = 0;
  uint64_t payload_bytes = 0;
  uint64_t payload_checksum = 0;  // XXH3-64 of the encoded batch, as in the BatchHeader
  uint32_t dispatch_count = 0;    // sends within `session`
  uint32_t session = 0;
  bool acked = false;
  float loss = 0, step_time_ms = 0, data_wait_ms = 0;  // from the Ack
  int64_t dispatched_unix_ms = 0, acked_unix_ms = 0;
};
std::string EncodeEntry(const LedgerEntry& entry);
Status DecodeEntry(std::string_view bytes, LedgerEntry* entry);

class Ledger {
 public:
  // Creates the ledger, or resumes it (see the resume rule above).
  // resume_at: the step the run resumes from (its latest checkpoint's, 0
  // without one) instead of the ledger's cursor: the cursor is set to it and
  // the entries of later steps are dropped (those steps run again).
  static Result<std::unique_ptr<Ledger>> Open(const std::string& dir, LedgerMeta meta,
                                              std::optional<uint64_t> resume_at = std::nullopt);
  // For inspection (--dump-ledger); works while a coordinator holds it.
  static Result<std::unique_ptr<Ledger>> OpenReadOnly(const std::string& dir);
  ~Ledger();

  const LedgerMeta& meta() const { return meta_; }
  uint64_t cursor() const { return cursor_; }
  // Entries deleted by Open()'s resume (unfinished steps of the last session).
  uint64_t dropped_on_resume() const { return dropped_on_resume_; }
  // The cursor the ledger had before Open() moved it to resume_at.
  std::optional<uint64_t> rewound_from() const { return rewound_from_; }

  // Records that `key` was sent now; entry carries epoch, range and payload.
  Status RecordDispatch(const BatchKey& key, LedgerEntry entry);
  // Marks `key` acknowledged with the worker's metrics; when new_cursor is
  // set, moves the cursor in the same atomic write.
  Status RecordAck(const BatchKey& key, float loss, float step_time_ms, float data_wait_ms,
                   std::optional<uint64_t> new_cursor);
  Result<std::optional<LedgerEntry>> Get(const BatchKey& key) const;

  Result<std::optional<uint64_t>> EpochSize(uint64_t epoch) const;
  Status PutEpochSize(uint64_t epoch, uint64_t num_samples);

  // Every entry in (step, rank, micro) order; stops at a non-OK status.
  Status ForEach(const std::function<Status(const BatchKey&, const LedgerEntry&)>& fn) const;
  // One JSON object per line: {"type":"meta",...}, then "epoch" lines, then
  // "batch" lines in key order (see coordinator --dump-ledger).
  Status DumpJsonLines(std::ostream& out) const;

 private:
  Ledger() = default;
  static Result<std::unique_ptr<Ledger>> OpenDb(const std::string& dir, bool read_only);
  Status LoadState();
  Status DropFrom(uint64_t step);

  std::string dir_;
  std::unique_ptr<rocksdb::DB> db_;
  bool read_only_ = false;
  LedgerMeta meta_;
  uint64_t cursor_ = 0;
  uint64_t dropped_on_resume_ = 0;
  std::optional<uint64_t> rewound_from_;
};

// RUN_DIR/coordinator/ledger
std::string LedgerDir(const std::string& run_dir);

}  // namespace bert
