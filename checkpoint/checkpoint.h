// Sharded checkpoints (DESIGN.md, "Checkpoint commit is atomic"), without
// LibTorch: flat fp32 arrays in, flat fp32 arrays out.
//
// On disk:
//   RUN_DIR/checkpoints/step-000100/manifest.json
//   RUN_DIR/checkpoints/step-000100/shard-00000-of-00002.bin ...
//   RUN_DIR/checkpoints/latest                 "step-000100\n"
//   RUN_DIR/checkpoints/.staging-step-000200/  a checkpoint being written
//
// A shard holds, for one rank r of W, the element range ShardRanges(N, W)[r]
// of every section (the flat parameters, then each optimizer state array:
// "params", "exp_avg", "exp_avg_sq"), as ShardFile below describes. Ranks
// write their shards into the staging directory in parallel (WriteShard:
// write, fsync, report size and xxh3); the coordinator, once every rank has
// reported its shard durable, commits (CheckpointStore::Commit): it writes
// manifest.json last, fsyncs it and the directory, renames the staging
// directory to step-NNNNNN, writes `latest` by a temporary file + rename, and
// fsyncs the checkpoints directory. A directory without a valid manifest is
// not a checkpoint.
//
// Loading (CheckpointStore::LoadLatest) takes the checkpoint `latest` names,
// verifies the manifest and every shard's size and xxh3, and falls back to
// the next older step-* directory when anything fails, logging the file at
// fault. ReadRange() assembles any element range of a section from shards of
// any world size (resharding is range arithmetic).
//
// Thread safety: free functions are thread-safe on distinct paths;
// CheckpointStore is not (one per process, used by one thread).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace bert {

constexpr int kCheckpointFormatVersion = 1;

// Element range [begin, end) of the flat buffers that rank `rank` holds.
struct ShardRange {
  uint32_t rank = 0;
  uint64_t begin = 0, end = 0;
  uint64_t size() const { return end - begin; }
};
// Contiguous, near-equal (the first N % W ranks get one more element),
// covering [0, total) in rank order.
std::vector<ShardRange> ShardRanges(uint64_t total_elements, uint32_t world_size);

// One tensor of the flat layout (worker/model/flat_parameters.h).
struct TensorLayout {
  std::string name;
  std::string dtype = "float32";
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // in elements of the flat buffer
};

// What a rank reports for its durable shard.
struct ShardInfo {
  std::string file;          // file name inside the checkpoint directory
  uint32_t rank = 0;
  uint64_t begin = 0, end = 0;
  uint64_t bytes = 0;        // file size
  std::string xxh3;          // 16 lower-case hex digits of XXH3_64bits of the whole file
  nlohmann::json rank_state; // per-rank state to restore (e.g. the dropout RNG): opaque here
};

struct Manifest {
  int format_version = kCheckpointFormatVersion;
  std::string run_id;
  uint64_t step = 0;          // optimizer steps done
  uint64_t epoch = 0;         // epoch of the next step's samples
  uint64_t data_cursor = 0;   // the next step to train (== step)
  uint32_t world_size = 0;
  uint64_t total_elements = 0;
  std::vector<std::string> sections;      // e.g. {"params", "exp_avg", "exp_avg_sq"}
  std::vector<TensorLayout> layout;       // must tile [0, total_elements) by offset
  std::vector<ShardInfo> shards;          // one per rank, in rank order
  nlohmann::json optimizer;               // kind, hyperparameters, step count
  nlohmann::json scheduler;               // schedule parameters
  nlohmann::json rng;                     // global RNG state (seeds)
  std::string config_yaml;                // the resolved run config
  nlohmann::json model_config;            // HF config.json of the model (BertConfig keys); null in
                                          // checkpoints written before it was recorded (optional field)
  nlohmann::json anomaly;                 // train.anomaly's skipped steps and recent history
                                          // (worker/train/anomaly.h); optional, null when absent
  std::string vocab_checksum;
  std::string created_at;                 // UTC, ISO 8601

  nlohmann::json ToJson() const;
  // Validates every field (types, ranges, shards tiling [0, total) in rank
  // order with ranges equal to ShardRanges, layout inside the buffer,
  // sections non-empty and unique); errors name `source` and the field.
  static Result<Manifest> FromJson(const nlohmann::json& json, const std::string& source);
};

// Shard file layout (little-endian):
//   magic "BERTSHRD" (8 bytes), u32 format version, u32 rank, u32 world size,
//   u32 number of sections S, u64 begin, u64 end,
//   S x (u32 name length, name bytes),
//   then S arrays of (end - begin) float32, in section order.
// The reader checks every header field against the manifest's.
//
// ShardFileName(1, 2) == "shard-00001-of-00002.bin", the name ranks use.
std::string ShardFileName(uint32_t rank, uint32_t world_size);
// Size in bytes of a shard file holding `num_elements` of each section.
uint64_t ShardFileBytes(const std::vector<std::string>& section_names, uint64_t num_elements);

struct ShardWriteRequest {
  std::string path;                        // full path of the file to create
  uint32_t rank = 0, world_size = 0;
  uint64_t begin = 0, end = 0;
  std::vector<std::string> section_names;
  std::vector<const float*> section_data;  // each points at (end - begin) floats
};
// Writes the file (buffered), fsyncs it, and fills `info` (file name,
// rank, range, bytes, xxh3; rank_state left empty). ENOSPC and other I/O
// errors: an IoError naming the file; the partial file is removed.
Status WriteShard(const ShardWriteRequest& request, ShardInfo* info);

// A time-budget run's account (train.time_budget), kept in the manifest's
// scheduler object: the training seconds of all sessions up to this step,
// and whether the budget ended the run here. Absent keys (other runs, older
// checkpoints) read as 0 and false.
struct TimeBudgetAccount {
  double train_seconds = 0;
  bool spent = false;
};
TimeBudgetAccount TimeBudgetAccountOf(const Manifest& manifest);

struct LoadedCheckpoint {
  std::string dir;            // the checkpoint directory (step-NNNNNN)
  Manifest manifest;
};

// Copies elements [begin, end) of `section` out of the checkpoint's shards
// (of any world size) into out[0, end - begin). Errors name the shard file.
Status ReadRange(const LoadedCheckpoint& checkpoint, const std::string& section, uint64_t begin, uint64_t end,
                 float* out);

class CheckpointStore {
 public:
  explicit CheckpointStore(std::string run_dir);  // RUN_DIR; checkpoints live in RUN_DIR/checkpoints

  const std::string& dir() const { return dir_; }  // RUN_DIR/checkpoints
  static std::string StepName(uint64_t step);      // "step-000100" (at least 6 digits)

  // Creates (if needed) and returns RUN_DIR/checkpoints/.staging-step-NNNNNN.
  Result<std::string> Staging(uint64_t step);

  // Commits the staging directory of manifest.step: checks that every shard
  // the manifest lists exists there with its size (not the checksum: the
  // ranks computed it while writing), writes manifest.json, fsyncs, renames
  // to step-NNNNNN, updates `latest`, fsyncs the checkpoints directory.
  // Idempotent: committing an already committed step is OK (it removes a
  // leftover staging directory and moves `latest` forward if a crash cut the
  // first commit short). A complete staging directory replaces a committed
  // directory of the same step (a damaged one that a load fell back past).
  Status Commit(const Manifest& manifest);

  // The newest good checkpoint: `latest` first, then older step-* by step
  // number. Verifies manifest and every shard's size and checksum. NotFound
  // when there is no checkpoint at all; when there are only damaged ones, an
  // error naming each damaged file. `skipped` (optional) receives one line
  // per checkpoint passed over and why.
  Result<LoadedCheckpoint> LoadLatest(std::vector<std::string>* skipped = nullptr) const;

  // Committed steps, ascending.
  std::vector<uint64_t> CommittedSteps() const;

  // Retention: keeps the newest keep_last committed checkpoints, every one
  // whose step is a multiple of keep_every (0: none), and whatever `latest`
  // names; deletes the other committed ones. Staging directories of steps
  // >= protect_from (being written or committed) are never touched; older
  // staging directories (abandoned by a crash) are deleted.
  Status Retain(int keep_last, uint64_t keep_every, uint64_t protect_from);

 private:
  std::string run_dir_, dir_;
};

}  // namespace bert
