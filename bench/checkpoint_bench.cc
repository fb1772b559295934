// Checkpoint I/O benchmark: MiB/s of writing a sharded checkpoint (ranks'
// WriteShard in parallel threads, fsync included, then Commit) and of
// loading it back (LoadLatest with full checksum verification, then
// ReadRange of every section), beside references measured in the same run
// on the same filesystem:
//   - a plain sequential write() + fsync of the same number of bytes,
//   - a plain sequential read() of that file,
//   - memcpy bandwidth (what copying alone costs).
// Reads are measured cold (the files' pages evicted with
// posix_fadvise(DONTNEED) after their fsync) and warm (from the page cache).
// The checkpoint holds the optimizer's three sections (params, exp_avg,
// exp_avg_sq) of float32; read-back data are compared bit for bit.
//   checkpoint_bench [--smoke] [--mib S] [--ranks W] [--dir PARENT]
// Default: 400 MiB over 2 ranks under $TMPDIR (or /tmp), medians of 5
// rounds; --smoke: 8 MiB, one round. The directory is removed at the end.
#include <fcntl.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "common/logging.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr double kMiB = 1024.0 * 1024.0;
constexpr size_t kChunkBytes = size_t{8} << 20;
const std::vector<std::string> kSections = {"params", "exp_avg", "exp_avg_sq"};

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

int Fail(const std::string& message) {
  std::fprintf(stderr, "checkpoint_bench: %s\n", message.c_str());
  return 1;
}

std::string FilesystemName(const std::string& dir) {
  struct statfs info;
  if (::statfs(dir.c_str(), &info) != 0) return "?";
  switch (static_cast<unsigned long>(info.f_type)) {
    case 0xEF53: return "ext4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs";
    case 0x794C7630: return "overlayfs";
    default: {
      char hex[32];
      std::snprintf(hex, sizeof(hex), "fs 0x%lx", static_cast<unsigned long>(info.f_type));
      return hex;
    }
  }
}

// Deterministic, incompressible floats (splitmix64 bits mapped to [-1, 1)).
void Fill(std::vector<float>* values, uint64_t seed) {
  uint64_t state = seed;
  for (float& value : *values) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    value = static_cast<float>(static_cast<double>(z >> 40) / (1ull << 23) - 1.0);
  }
}

// Best of 3 copies of `bytes` (after a first touch of both buffers).
double MemcpySeconds(size_t bytes) {
  std::vector<char> from(bytes, 1), to(bytes, 0);
  double best = 1e9;
  for (int i = 0; i < 3; ++i) {
    const auto start = Clock::now();
    std::memcpy(to.data(), from.data(), bytes);
    best = std::min(best, Seconds(start));
  }
  if (to[bytes / 2] != 1) std::abort();  // keeps the copy observable
  return best;
}

// The reference write: the arrays one after another through write() in
// chunks, then fsync. Returns seconds, or a negative number on error.
double ReferenceWrite(const std::string& path, const std::vector<std::vector<float>>& arrays) {
  const auto start = Clock::now();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  for (const std::vector<float>& array : arrays) {
    const char* bytes = reinterpret_cast<const char*>(array.data());
    const size_t size = array.size() * sizeof(float);
    for (size_t done = 0; done < size;) {
      const ssize_t n = ::write(fd, bytes + done, std::min(kChunkBytes, size - done));
      if (n <= 0) return ::close(fd), -1;
      done += static_cast<size_t>(n);
    }
  }
  if (::fsync(fd) != 0) return ::close(fd), -1;
  ::close(fd);
  return Seconds(start);
}

// The reference read: the whole file through read() into `out`.
double ReferenceRead(const std::string& path, std::vector<std::vector<float>>* out) {
  const auto start = Clock::now();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  for (std::vector<float>& array : *out) {
    char* bytes = reinterpret_cast<char*>(array.data());
    const size_t size = array.size() * sizeof(float);
    for (size_t done = 0; done < size;) {
      const ssize_t n = ::read(fd, bytes + done, std::min(kChunkBytes, size - done));
      if (n <= 0) return ::close(fd), -1;
      done += static_cast<size_t>(n);
    }
  }
  ::close(fd);
  return Seconds(start);
}

// Drops a file's (clean, fsynced) pages from the page cache.
void Evict(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

struct WriteTiming {
  double shards_s = 0, commit_s = 0;
};

// Every rank's WriteShard on its own thread, then the coordinator's Commit.
bert::Status WriteCheckpoint(bert::CheckpointStore* store, uint64_t step, uint32_t world_size,
                             const std::vector<std::vector<float>>& arrays, WriteTiming* timing) {
  const uint64_t total = arrays[0].size();
  const auto start = Clock::now();
  bert::Result<std::string> staging = store->Staging(step);
  if (!staging.ok()) return staging.status();
  const std::vector<bert::ShardRange> ranges = bert::ShardRanges(total, world_size);
  std::vector<bert::ShardInfo> infos(world_size);
  std::vector<bert::Status> statuses(world_size);
  std::vector<std::thread> ranks;
  for (uint32_t r = 0; r < world_size; ++r) {
    ranks.emplace_back([&, r] {
      bert::ShardWriteRequest request;
      request.path = *staging + "/" + bert::ShardFileName(r, world_size);
      request.rank = r, request.world_size = world_size;
      request.begin = ranges[r].begin, request.end = ranges[r].end;
      request.section_names = kSections;
      for (const std::vector<float>& array : arrays) request.section_data.push_back(array.data() + ranges[r].begin);
      statuses[r] = bert::WriteShard(request, &infos[r]);
    });
  }
  for (std::thread& rank : ranks) rank.join();
  timing->shards_s = Seconds(start);
  for (const bert::Status& status : statuses) {
    if (!status.ok()) return status;
  }
  const auto commit_start = Clock::now();
  bert::Manifest manifest;
  manifest.run_id = "checkpoint_bench";
  manifest.step = manifest.data_cursor = step;
  manifest.world_size = world_size;
  manifest.total_elements = total;
  manifest.sections = kSections;
  manifest.layout.push_back({"bench.flat", "float32", {static_cast<int64_t>(total)}, 0});
  manifest.shards = infos;
  manifest.optimizer = {{"kind", "adamw"}};
  manifest.scheduler = {{"kind", "linear"}};
  manifest.rng = {{"seed", 1}};
  BERT_RETURN_IF_ERROR(store->Commit(manifest));
  timing->commit_s = Seconds(commit_start);
  return bert::Status::Ok();
}

struct LoadTiming {
  double verify_s = 0, read_s = 0;
  double total() const { return verify_s + read_s; }
};

bert::Status LoadCheckpoint(const bert::CheckpointStore& store, std::vector<std::vector<float>>* out,
                            LoadTiming* timing) {
  const auto start = Clock::now();
  bert::Result<bert::LoadedCheckpoint> loaded = store.LoadLatest();
  if (!loaded.ok()) return loaded.status();
  timing->verify_s = Seconds(start);
  const auto read_start = Clock::now();
  for (size_t s = 0; s < kSections.size(); ++s) {
    BERT_RETURN_IF_ERROR(bert::ReadRange(*loaded, kSections[s], 0, (*out)[s].size(), (*out)[s].data()));
  }
  timing->read_s = Seconds(read_start);
  return bert::Status::Ok();
}

struct Round {
  double ref_write_s = 0, ckpt_write_s = 0, ref_cold_s = 0, ref_warm_s = 0;
  WriteTiming write;
  LoadTiming cold, warm;
};

bool SameBits(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  for (size_t s = 0; s < a.size(); ++s) {
    if (std::memcmp(a[s].data(), b[s].data(), a[s].size() * sizeof(float)) != 0) return false;
  }
  return true;
}

// One round: reference write, checkpoint write, then cold and warm reads of
// both; every read-back compared bit for bit with what was written.
bert::Status RunRound(bert::CheckpointStore* store, const std::string& run_dir, uint64_t step, uint32_t world_size,
                      const std::vector<std::vector<float>>& arrays, std::vector<std::vector<float>>* read_back,
                      Round* result) {
  // Which write goes first alternates: on a virtual disk the second of two
  // back-to-back writes can be faster or slower for reasons of the host.
  const std::string reference = run_dir + "/reference-" + std::to_string(step) + ".bin";
  for (int turn = 0; turn < 2; ++turn) {
    if ((turn + step) % 2 == 0) {
      result->ref_write_s = ReferenceWrite(reference, arrays);
      if (result->ref_write_s < 0) return bert::Status::IoError(reference + ": write: " + std::strerror(errno));
    } else {
      const auto write_start = Clock::now();
      BERT_RETURN_IF_ERROR(WriteCheckpoint(store, step, world_size, arrays, &result->write));
      result->ckpt_write_s = Seconds(write_start);
    }
  }

  // Cold reads: every file of the run dropped from the page cache.
  for (const auto& entry : std::filesystem::recursive_directory_iterator(run_dir)) {
    if (entry.is_regular_file()) Evict(entry.path().string());
  }
  auto clear = [read_back] {
    for (auto& array : *read_back) std::fill(array.begin(), array.end(), 0.0f);
  };
  for (const bool cold : {true, false}) {
    clear();
    double& ref_s = cold ? result->ref_cold_s : result->ref_warm_s;
    ref_s = ReferenceRead(reference, read_back);
    if (ref_s < 0 || !SameBits(arrays, *read_back)) return bert::Status::IoError(reference + ": read back wrong");
    clear();
    BERT_RETURN_IF_ERROR(LoadCheckpoint(*store, read_back, cold ? &result->cold : &result->warm));
    if (!SameBits(arrays, *read_back)) {
      return bert::Status::Corruption(std::string("checkpoint read back ") + (cold ? "(cold)" : "(warm)") +
                                      " differs from what was written");
    }
  }
  std::filesystem::remove(reference);
  return bert::Status::Ok();
}

Round Median(std::vector<Round> rounds) {
  auto median = [&rounds](auto field) {
    std::vector<double> values;
    for (const Round& round : rounds) values.push_back(field(round));
    std::nth_element(values.begin(), values.begin() + values.size() / 2, values.end());
    return values[values.size() / 2];
  };
  Round m;
  m.ref_write_s = median([](const Round& r) { return r.ref_write_s; });
  m.ckpt_write_s = median([](const Round& r) { return r.ckpt_write_s; });
  m.ref_cold_s = median([](const Round& r) { return r.ref_cold_s; });
  m.ref_warm_s = median([](const Round& r) { return r.ref_warm_s; });
  m.write.shards_s = median([](const Round& r) { return r.write.shards_s; });
  m.write.commit_s = median([](const Round& r) { return r.write.commit_s; });
  m.cold.verify_s = median([](const Round& r) { return r.cold.verify_s; });
  m.cold.read_s = median([](const Round& r) { return r.cold.read_s; });
  m.warm.verify_s = median([](const Round& r) { return r.warm.verify_s; });
  m.warm.read_s = median([](const Round& r) { return r.warm.read_s; });
  return m;
}

void Row(const char* what, double seconds, double mib, const std::string& note = "") {
  std::printf("  %-40s %8.3f s %9.1f MiB/s  %s\n", what, seconds, mib / seconds, note.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  bert::InitLogging(argv[0]);
  bool smoke = false;
  double mib = 400;
  uint32_t world_size = 2;
  const char* tmp = std::getenv("TMPDIR");
  std::string parent = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  bool mib_given = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--smoke")) smoke = true;
    else if (!std::strcmp(argv[i], "--mib") && i + 1 < argc) mib = std::atof(argv[++i]), mib_given = true;
    else if (!std::strcmp(argv[i], "--ranks") && i + 1 < argc) world_size = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--dir") && i + 1 < argc) parent = argv[++i];
    else {
      std::fprintf(stderr, "usage: checkpoint_bench [--smoke] [--mib S] [--ranks W] [--dir PARENT]\n");
      return 2;
    }
  }
  if (smoke && !mib_given) mib = 8;
  if (mib <= 0 || world_size == 0) return Fail("--mib and --ranks must be positive");
  std::string pattern = parent + "/checkpoint_bench-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) return Fail(parent + ": mkdtemp: " + std::strerror(errno));
  const std::string run_dir = pattern;
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{run_dir};

  const uint64_t elements = static_cast<uint64_t>(mib * kMiB / sizeof(float) / kSections.size());
  const double total_mib = elements * sizeof(float) * kSections.size() / kMiB;
  std::vector<std::vector<float>> arrays(kSections.size(), std::vector<float>(elements));
  std::vector<std::vector<float>> read_back(kSections.size(), std::vector<float>(elements));
  for (size_t s = 0; s < arrays.size(); ++s) Fill(&arrays[s], s + 1);
  std::printf("checkpoint_bench: %.1f MiB (%zu sections x %llu floats) over %u ranks, %s in %s (%s)\n", total_mib,
              kSections.size(), static_cast<unsigned long long>(elements), world_size,
              smoke ? "smoke" : "full", run_dir.c_str(), FilesystemName(run_dir).c_str());

  const double memcpy_s = MemcpySeconds(static_cast<size_t>(total_mib * kMiB));
  // Several rounds, medians reported: a (possibly shared, virtual) disk is noisy.
  const int rounds = smoke ? 1 : 5;
  std::vector<Round> results;
  bert::CheckpointStore store(run_dir);
  for (int round = 0; round < rounds; ++round) {
    Round result;
    if (bert::Status status = RunRound(&store, run_dir, round + 1, world_size, arrays, &read_back, &result);
        !status.ok()) {
      return Fail(status.message());
    }
    results.push_back(result);
    // Only the newest checkpoint stays on disk between rounds.
    if (bert::Status status = store.Retain(1, 0, round + 2); !status.ok()) return Fail(status.message());
  }
  const Round median = Median(results);

  char note[160];
  std::printf("\n  %-40s %10s %15s   (median of %d rounds)\n", "", "time", "rate", rounds);
  Row("memcpy (reference)", memcpy_s, total_mib);
  Row("write()+fsync, one file (reference)", median.ref_write_s, total_mib);
  std::snprintf(note, sizeof(note), "shards %.3f s + commit %.3f s; %.0f%% of the reference",
                median.write.shards_s, median.write.commit_s, 100.0 * median.ref_write_s / median.ckpt_write_s);
  Row("WriteShard x ranks (threads) + Commit", median.ckpt_write_s, total_mib, note);
  Row("read(), cold (reference)", median.ref_cold_s, total_mib);
  std::snprintf(note, sizeof(note), "verify %.3f s + ReadRange %.3f s; %.0f%% of the reference",
                median.cold.verify_s, median.cold.read_s, 100.0 * median.ref_cold_s / median.cold.total());
  Row("LoadLatest(verify)+ReadRange, cold", median.cold.total(), total_mib, note);
  Row("read(), warm (reference)", median.ref_warm_s, total_mib);
  std::snprintf(note, sizeof(note), "verify %.3f s + ReadRange %.3f s; %.0f%% of the reference",
                median.warm.verify_s, median.warm.read_s, 100.0 * median.ref_warm_s / median.warm.total());
  Row("LoadLatest(verify)+ReadRange, warm", median.warm.total(), total_mib, note);
  std::printf("\n  read back: bit-identical\n");
  return 0;
}
