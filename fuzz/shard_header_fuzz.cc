// libFuzzer target: a checkpoint shard file (checkpoint/checkpoint.h "Shard
// file layout"): its header checked against the manifest by OpenShard,
// VerifyShard's checksum pass and ReadRange. The first input byte picks one
// of a few manifests; the rest is the shard file.
// Properties: nothing crashes or reads out of bounds; an error names the
// file; when the file verifies, ReadRange returns exactly the file's floats.
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/checkpoint_internal.h"
#include "fuzz/fuzz_util.h"

namespace {

constexpr uint64_t kTotalElements = 8;

struct Scenario {
  uint32_t rank, world_size;
  std::vector<std::string> sections;
};

const Scenario kScenarios[] = {
    {0, 1, {"params"}},
    {1, 2, {"params", "exp_avg", "exp_avg_sq"}},
    {2, 3, {"p"}},
};

std::string ScratchDir() {
  static const std::string dir = [] {
    const std::string made = (::access("/dev/shm", W_OK) == 0 ? std::string("/dev/shm") : std::string("/tmp")) +
                             "/bert_shard_fuzz_" + std::to_string(::getpid());
    ::mkdir(made.c_str(), 0700);
    return made;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const Scenario& scenario = kScenarios[data[0] % (sizeof(kScenarios) / sizeof(kScenarios[0]))];
  const std::string_view file_bytes = bert::fuzz::AsView(data + 1, size - 1);

  bert::Manifest manifest;
  manifest.world_size = scenario.world_size;
  manifest.total_elements = kTotalElements;
  manifest.sections = scenario.sections;
  for (const bert::ShardRange& range : bert::ShardRanges(kTotalElements, scenario.world_size)) {
    bert::ShardInfo shard;
    shard.file = bert::ShardFileName(range.rank, scenario.world_size);
    shard.rank = range.rank;
    shard.begin = range.begin;
    shard.end = range.end;
    manifest.shards.push_back(shard);
  }
  bert::ShardInfo& shard = manifest.shards[scenario.rank];
  shard.bytes = file_bytes.size();
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016" PRIx64, static_cast<uint64_t>(XXH3_64bits(file_bytes.data(), file_bytes.size())));
  shard.xxh3 = hex;

  const std::string dir = ScratchDir();
  const std::string path = dir + "/" + shard.file;
  {
    std::FILE* file = std::fopen(path.c_str(), "wb");
    FUZZ_CHECK(file != nullptr, "cannot create " + path);
    FUZZ_CHECK(std::fwrite(file_bytes.data(), 1, file_bytes.size(), file) == file_bytes.size(), path);
    FUZZ_CHECK(std::fclose(file) == 0, path);
  }

  const bert::Status verified = bert::checkpoint_internal::VerifyShard(path, manifest, shard);
  if (!verified.ok()) {
    FUZZ_CHECK(verified.message().rfind(path, 0) == 0, "error not naming the shard: " + verified.message());
    FUZZ_CHECK(verified.message().find('\n') == std::string::npos, "multi-line error: " + verified.message());
    ::unlink(path.c_str());
    return 0;
  }
  const std::string header = bert::checkpoint_internal::EncodeShardHeader(
      shard.rank, scenario.world_size, shard.begin, shard.end, scenario.sections);
  FUZZ_CHECK(file_bytes.substr(0, header.size()) == header, "a shard with another header verified");

  // Each section's floats of this shard's range, read back through ReadRange.
  bert::LoadedCheckpoint checkpoint{dir, manifest};
  const uint64_t count = shard.end - shard.begin;
  for (size_t s = 0; s < scenario.sections.size(); ++s) {
    std::vector<float> values(count);
    const bert::Status read = bert::ReadRange(checkpoint, scenario.sections[s], shard.begin, shard.end, values.data());
    const uint64_t wanted_end = header.size() + (s + 1) * count * sizeof(float);
    if (wanted_end > file_bytes.size()) {
      FUZZ_CHECK(!read.ok(), "a read past the end of a truncated shard succeeded");
      continue;
    }
    FUZZ_CHECK(read.ok(), "a verified shard does not read: " + read.message());
    FUZZ_CHECK(std::memcmp(values.data(), file_bytes.data() + header.size() + s * count * sizeof(float),
                           count * sizeof(float)) == 0,
               "ReadRange returned other bytes than the file holds");
  }
  ::unlink(path.c_str());
  return 0;
}
