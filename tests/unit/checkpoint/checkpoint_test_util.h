// Helpers for the checkpoint tests: arrays of arbitrary float bit patterns,
// writing a whole checkpoint the way ranks and the coordinator do, damaging
// files, and a small tmpfs to fill up.
#pragma once

#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "test_util.h"

namespace bert::testing {

inline const std::vector<std::string>& TestSections() {
  static const std::vector<std::string> sections = {"params", "exp_avg", "exp_avg_sq"};
  return sections;
}

// `n` floats of arbitrary bit patterns (NaN payloads, denormals, -0 all
// appear), so that "bit for bit" means bits, not values.
inline std::vector<float> RandomBits(uint64_t n, uint64_t seed) {
  std::vector<float> values(n);
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& value : values) {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    const uint32_t bits = static_cast<uint32_t>(state >> 16);
    std::memcpy(&value, &bits, sizeof(value));
  }
  return values;
}

// One array per section, each of total_elements.
struct Arrays {
  std::vector<std::vector<float>> sections;
  static Arrays Random(uint64_t total_elements, uint64_t seed) {
    Arrays arrays;
    for (size_t s = 0; s < TestSections().size(); ++s) {
      arrays.sections.push_back(RandomBits(total_elements, seed * 7 + s));
    }
    return arrays;
  }
};

// A manifest for `shards` of a checkpoint of two tensors tiling the buffer.
inline Manifest TestManifest(uint64_t step, uint32_t world_size, uint64_t total_elements,
                             std::vector<ShardInfo> shards) {
  Manifest manifest;
  manifest.run_id = "test-run";
  manifest.step = step;
  manifest.epoch = step / 10;
  manifest.data_cursor = step;
  manifest.world_size = world_size;
  manifest.total_elements = total_elements;
  manifest.sections = TestSections();
  const int64_t first = static_cast<int64_t>(total_elements / 3);
  manifest.layout = {{"bert.embeddings.word_embeddings.weight", "float32", {first}, 0},
                     {"cls.predictions.bias", "float32", {static_cast<int64_t>(total_elements) - first},
                      static_cast<uint64_t>(first)}};
  manifest.shards = std::move(shards);
  manifest.optimizer = {{"kind", "adamw"}, {"lr", 1e-4}, {"step", step}};
  manifest.scheduler = {{"kind", "linear"}, {"warmup_steps", 10}};
  manifest.rng = {{"seed", 42}};
  manifest.config_yaml = "model: tiny\nsteps: 100\n";
  manifest.vocab_checksum = "0123456789abcdef";
  manifest.created_at = "2024-01-02T03:04:05Z";
  return manifest;
}

// Every rank's WriteShard into the staging directory of `step`; returns the
// manifest to commit (not committed yet).
inline Result<Manifest> StageCheckpoint(CheckpointStore* store, uint64_t step, uint32_t world_size,
                                        const Arrays& arrays) {
  const uint64_t total = arrays.sections[0].size();
  Result<std::string> staging = store->Staging(step);
  if (!staging.ok()) return staging.status();
  std::vector<ShardInfo> shards;
  for (const ShardRange& range : ShardRanges(total, world_size)) {
    ShardWriteRequest request;
    request.path = *staging + "/" + ShardFileName(range.rank, world_size);
    request.rank = range.rank, request.world_size = world_size;
    request.begin = range.begin, request.end = range.end;
    request.section_names = TestSections();
    for (const std::vector<float>& array : arrays.sections) request.section_data.push_back(array.data() + range.begin);
    ShardInfo info;
    BERT_RETURN_IF_ERROR(WriteShard(request, &info));
    info.rank_state = {{"dropout_seed", 1000 + range.rank}};
    shards.push_back(info);
  }
  return TestManifest(step, world_size, total, shards);
}

// Stage and commit.
inline Status WriteCheckpoint(CheckpointStore* store, uint64_t step, uint32_t world_size, const Arrays& arrays) {
  Result<Manifest> manifest = StageCheckpoint(store, step, world_size, arrays);
  if (!manifest.ok()) return manifest.status();
  return store->Commit(*manifest);
}

inline std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

inline void FlipByte(const std::string& path, uint64_t offset) {
  std::string bytes = ReadBytes(path);
  bytes.at(offset) ^= 0x01;
  WriteBytes(path, bytes);
}

// A 1 MiB tmpfs at a fresh directory, in a private mount namespace (so a
// crashed test leaves no mount behind). Needs root; without it, mounted()
// is false and the tests use /dev/full instead.
class SmallTmpfs {
 public:
  SmallTmpfs() {
    if (dir_.path().empty()) return;
    static const bool private_namespace =
        ::unshare(CLONE_NEWNS) == 0 && ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0;
    (void)private_namespace;
    mounted_ = ::mount("tmpfs", dir_.path().c_str(), "tmpfs", 0, "size=1m") == 0;
    if (!mounted_) error_ = std::strerror(errno);
  }
  ~SmallTmpfs() {
    if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }
  const std::string& path() const { return dir_.path(); }

 private:
  TempDir dir_;  // unmounted (destructor body) before it is removed
  bool mounted_ = false;
  std::string error_;
};

// Fills the filesystem of `path`'s directory with FILE until ENOSPC.
inline void FillUp(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) return;
  std::setvbuf(file, nullptr, _IONBF, 0);
  const std::string block(4096, 'x');
  while (std::fwrite(block.data(), 1, block.size(), file) == block.size()) {
  }
  std::fclose(file);
}

}  // namespace bert::testing
