// Internals of checkpoint/ shared by its .cc files: the shard file header,
// shard verification and the durability helpers (fsync of files and
// directories). Not part of the public contract (checkpoint/checkpoint.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "common/status.h"

namespace bert::checkpoint_internal {

// The shard format is little-endian and written with memcpy of native
// integers and floats; a big-endian build would need byte swaps.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "checkpoint shards are little-endian");

constexpr char kShardMagic[8] = {'B', 'E', 'R', 'T', 'S', 'H', 'R', 'D'};
// magic, u32 version, u32 rank, u32 world size, u32 sections, u64 begin, u64 end.
constexpr uint64_t kShardFixedHeaderBytes = 8 + 4 * 4 + 8 * 2;
// Reads and hashes go through buffers of this size; writes hand the kernel
// chunks of it straight from the caller's arrays (no copy).
constexpr size_t kIoChunkBytes = size_t{8} << 20;

// An owned file descriptor (-1: none). Close() reports the close(2) error,
// which on network filesystems can be the first sign of a failed write.
class ScopedFd {
 public:
  explicit ScopedFd(int fd = -1) : fd_(fd) {}
  ~ScopedFd();
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ScopedFd(ScopedFd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  ScopedFd& operator=(ScopedFd&& other) noexcept {
    if (this != &other) {
      Close();
      fd_ = other.fd_;
      other.fd_ = -1;
    }
    return *this;
  }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Close();  // 0, or the errno of close(2)

 private:
  int fd_;
};

std::string ErrnoText(int error_number);

// fsync(2) of a directory, so that the entries created or renamed in it are
// durable. IoError naming the directory.
Status FsyncDirectory(const std::string& dir);

// The header bytes of a shard file (everything before the arrays).
std::string EncodeShardHeader(uint32_t rank, uint32_t world_size, uint64_t begin, uint64_t end,
                              const std::vector<std::string>& section_names);

// Opens a shard of `manifest` read-only and checks its size against the
// manifest and every header field against the manifest's (version, rank,
// world size, range, sections). On success `fd` holds the open file and
// `data_offset` the byte offset of the first array. Errors name `path`.
Status OpenShard(const std::string& path, const Manifest& manifest, const ShardInfo& shard, ScopedFd* fd,
                 uint64_t* data_offset);

// OpenShard, then the xxh3 of the whole file against the manifest's.
Status VerifyShard(const std::string& path, const Manifest& manifest, const ShardInfo& shard);

// Parses a canonical "PREFIXstep-NNNNNN" name (StepName with a prefix).
bool ParseStepName(const std::string& name, const std::string& prefix, uint64_t* step);

}  // namespace bert::checkpoint_internal
