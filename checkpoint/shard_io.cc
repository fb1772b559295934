// Shard files: WriteShard (write, hash, fsync), header checks, verification
// and ReadRange (resharding by range arithmetic).
#include <fcntl.h>
#include <glog/logging.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "checkpoint/checkpoint.h"
#include "checkpoint/checkpoint_internal.h"
#include "common/file_util.h"

namespace bert {
namespace checkpoint_internal {
namespace {

struct XxhStateDeleter {
  void operator()(XXH3_state_t* state) const { XXH3_freeState(state); }
};
using XxhState = std::unique_ptr<XXH3_state_t, XxhStateDeleter>;

XxhState NewXxhState() {
  XxhState state(XXH3_createState());
  CHECK(state != nullptr) << "XXH3_createState: out of memory";
  XXH3_64bits_reset(state.get());
  return state;
}

// write(2) until done; 0 or the errno.
int WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return 0;
}

// pread(2) until done; 0, the errno, or -1 for end of file.
int PreadAll(int fd, char* data, size_t size, uint64_t offset) {
  while (size > 0) {
    const ssize_t n = ::pread(fd, data, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return -1;
    data += n, offset += static_cast<uint64_t>(n);
    size -= static_cast<size_t>(n);
  }
  return 0;
}

std::string ParentDir(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

template <typename T>
T Load(const char* bytes) {
  T value;
  std::memcpy(&value, bytes, sizeof(T));
  return value;
}

template <typename T>
void Append(std::string* out, T value) {
  out->append(reinterpret_cast<const char*>(&value), sizeof(T));
}

// "path: header FIELD is X, the manifest says Y".
Status HeaderMismatch(const std::string& path, const char* field, uint64_t found, uint64_t expected) {
  return Status::Corruption(path + ": header " + field + " is " + std::to_string(found) + ", the manifest says " +
                            std::to_string(expected));
}

}  // namespace

ScopedFd::~ScopedFd() { Close(); }

int ScopedFd::Close() {
  if (fd_ < 0) return 0;
  const int rc = ::close(fd_);
  fd_ = -1;
  return rc == 0 ? 0 : errno;
}

std::string ErrnoText(int error_number) { return std::strerror(error_number); }

Status FsyncDirectory(const std::string& dir) {
  ScopedFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return Status::IoError(dir + ": open directory for fsync: " + ErrnoText(errno));
  if (::fsync(fd.get()) != 0) return Status::IoError(dir + ": fsync directory: " + ErrnoText(errno));
  return Status::Ok();
}

std::string EncodeShardHeader(uint32_t rank, uint32_t world_size, uint64_t begin, uint64_t end,
                              const std::vector<std::string>& section_names) {
  std::string header(kShardMagic, sizeof(kShardMagic));
  Append<uint32_t>(&header, kCheckpointFormatVersion);
  Append<uint32_t>(&header, rank);
  Append<uint32_t>(&header, world_size);
  Append<uint32_t>(&header, static_cast<uint32_t>(section_names.size()));
  Append<uint64_t>(&header, begin);
  Append<uint64_t>(&header, end);
  for (const std::string& name : section_names) {
    Append<uint32_t>(&header, static_cast<uint32_t>(name.size()));
    header += name;
  }
  return header;
}

Status OpenShard(const std::string& path, const Manifest& manifest, const ShardInfo& shard, ScopedFd* fd,
                 uint64_t* data_offset) {
  ScopedFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file.valid()) return Status::Corruption(path + ": cannot open: " + ErrnoText(errno));
  struct stat st;
  if (::fstat(file.get(), &st) != 0) return Status::IoError(path + ": stat: " + ErrnoText(errno));
  if (static_cast<uint64_t>(st.st_size) != shard.bytes) {
    return Status::Corruption(path + ": size " + std::to_string(st.st_size) + " != manifest's " +
                              std::to_string(shard.bytes) +
                              (static_cast<uint64_t>(st.st_size) < shard.bytes ? " (truncated)" : ""));
  }
  // The manifest fixes the header's length, so one read gets all of it.
  const std::string expected = EncodeShardHeader(shard.rank, manifest.world_size, shard.begin, shard.end,
                                                 manifest.sections);
  std::string header(expected.size(), '\0');
  const int rc = PreadAll(file.get(), header.data(), header.size(), 0);
  if (rc != 0) {
    return Status::Corruption(path + ": reading the header: " + (rc < 0 ? "end of file" : ErrnoText(rc)));
  }
  if (header != expected) {
    const char* h = header.data();
    if (std::memcmp(h, kShardMagic, sizeof(kShardMagic)) != 0) {
      return Status::Corruption(path + ": not a shard file (bad magic)");
    }
    const std::pair<const char*, std::pair<uint64_t, uint64_t>> fields[] = {
        {"format version", {Load<uint32_t>(h + 8), kCheckpointFormatVersion}},
        {"rank", {Load<uint32_t>(h + 12), shard.rank}},
        {"world size", {Load<uint32_t>(h + 16), manifest.world_size}},
        {"section count", {Load<uint32_t>(h + 20), manifest.sections.size()}},
        {"begin", {Load<uint64_t>(h + 24), shard.begin}},
        {"end", {Load<uint64_t>(h + 32), shard.end}},
    };
    for (const auto& [name, values] : fields) {
      if (values.first != values.second) return HeaderMismatch(path, name, values.first, values.second);
    }
    return Status::Corruption(path + ": header section names differ from the manifest's sections");
  }
  *data_offset = expected.size();
  *fd = std::move(file);
  return Status::Ok();
}

Status VerifyShard(const std::string& path, const Manifest& manifest, const ShardInfo& shard) {
  ScopedFd fd;
  uint64_t data_offset = 0;
  BERT_RETURN_IF_ERROR(OpenShard(path, manifest, shard, &fd, &data_offset));
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  XxhState state = NewXxhState();
  std::unique_ptr<char[]> buffer(new char[kIoChunkBytes]);
  uint64_t offset = 0;
  while (offset < shard.bytes) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kIoChunkBytes, shard.bytes - offset));
    const int rc = PreadAll(fd.get(), buffer.get(), n, offset);
    if (rc != 0) {
      return Status::Corruption(path + ": read at byte " + std::to_string(offset) + ": " +
                                (rc < 0 ? "end of file (truncated)" : ErrnoText(rc)));
    }
    XXH3_64bits_update(state.get(), buffer.get(), n);
    offset += n;
  }
  const std::string xxh3 = Hex64(XXH3_64bits_digest(state.get()));
  if (xxh3 != shard.xxh3) return Status::Corruption(path + ": xxh3 " + xxh3 + " != manifest's " + shard.xxh3);
  return Status::Ok();
}

}  // namespace checkpoint_internal

using namespace checkpoint_internal;  // NOLINT: this file implements them

Status WriteShard(const ShardWriteRequest& request, ShardInfo* info) {
  const std::string& path = request.path;
  const uint64_t num_elements = request.end - request.begin;
  if (request.world_size == 0 || request.rank >= request.world_size || request.begin > request.end) {
    return Status::InvalidArgument(path + ": rank " + std::to_string(request.rank) + " of " +
                                   std::to_string(request.world_size) + ", range [" + std::to_string(request.begin) +
                                   ", " + std::to_string(request.end) + ") is not a shard");
  }
  if (request.section_names.empty() || request.section_names.size() != request.section_data.size()) {
    return Status::InvalidArgument(path + ": " + std::to_string(request.section_names.size()) + " section names, " +
                                   std::to_string(request.section_data.size()) + " arrays");
  }
  for (size_t s = 0; s < request.section_names.size(); ++s) {
    if (request.section_names[s].empty() || (num_elements > 0 && request.section_data[s] == nullptr)) {
      return Status::InvalidArgument(path + ": section " + std::to_string(s) + " has no name or no data");
    }
  }
  const std::string header = EncodeShardHeader(request.rank, request.world_size, request.begin, request.end,
                                               request.section_names);
  ScopedFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) return Status::IoError(path + ": cannot create: " + ErrnoText(errno));
  // Any failure from here on removes the file: a partial shard must never
  // be mistaken for a complete one.
  auto fail = [&](const char* what, int error_number) {
    fd.Close();
    ::unlink(path.c_str());
    return Status::IoError(path + ": " + what + ": " + ErrnoText(error_number));
  };
  XxhState state = NewXxhState();
  XXH3_64bits_update(state.get(), header.data(), header.size());
  if (int rc = WriteAll(fd.get(), header.data(), header.size()); rc != 0) return fail("write", rc);
  for (const float* data : request.section_data) {
    const char* bytes = reinterpret_cast<const char*>(data);
    const uint64_t size = num_elements * sizeof(float);
    for (uint64_t done = 0; done < size;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kIoChunkBytes, size - done));
      XXH3_64bits_update(state.get(), bytes + done, n);
      if (int rc = WriteAll(fd.get(), bytes + done, n); rc != 0) return fail("write", rc);
      done += n;
    }
  }
  if (::fsync(fd.get()) != 0) return fail("fsync", errno);
  if (int rc = fd.Close(); rc != 0) return fail("close", rc);
  // The shard's directory entry too, so "durable" holds even before the
  // coordinator's commit fsyncs the directory again.
  if (Status synced = FsyncDirectory(ParentDir(path)); !synced.ok()) {
    ::unlink(path.c_str());
    return synced;
  }
  const size_t slash = path.rfind('/');
  info->file = slash == std::string::npos ? path : path.substr(slash + 1);
  info->rank = request.rank;
  info->begin = request.begin;
  info->end = request.end;
  info->bytes = ShardFileBytes(request.section_names, num_elements);
  info->xxh3 = Hex64(XXH3_64bits_digest(state.get()));
  info->rank_state = nlohmann::json();
  return Status::Ok();
}

Status ReadRange(const LoadedCheckpoint& checkpoint, const std::string& section, uint64_t begin, uint64_t end,
                 float* out) {
  const Manifest& manifest = checkpoint.manifest;
  const auto found = std::find(manifest.sections.begin(), manifest.sections.end(), section);
  if (found == manifest.sections.end()) {
    return Status::InvalidArgument(checkpoint.dir + ": no section \"" + section + "\" in the manifest");
  }
  const uint64_t section_index = static_cast<uint64_t>(found - manifest.sections.begin());
  if (begin > end || end > manifest.total_elements) {
    return Status::InvalidArgument(checkpoint.dir + ": range [" + std::to_string(begin) + ", " +
                                   std::to_string(end) + ") of \"" + section + "\" is outside [0, " +
                                   std::to_string(manifest.total_elements) + ")");
  }
  // Shards tile [0, total) in rank order (Manifest::FromJson checked it), so
  // the range is the concatenation of its overlaps with each shard.
  for (const ShardInfo& shard : manifest.shards) {
    const uint64_t lo = std::max(begin, shard.begin), hi = std::min(end, shard.end);
    if (lo >= hi) continue;
    const std::string path = checkpoint.dir + "/" + shard.file;
    ScopedFd fd;
    uint64_t data_offset = 0;
    BERT_RETURN_IF_ERROR(OpenShard(path, manifest, shard, &fd, &data_offset));
    const uint64_t offset = data_offset + (section_index * (shard.end - shard.begin) + (lo - shard.begin)) * 4;
    const int rc = PreadAll(fd.get(), reinterpret_cast<char*>(out + (lo - begin)), (hi - lo) * sizeof(float), offset);
    if (rc != 0) {
      return Status::Corruption(path + ": read at byte " + std::to_string(offset) + ": " +
                                (rc < 0 ? "end of file (truncated)" : ErrnoText(rc)));
    }
  }
  return Status::Ok();
}

}  // namespace bert
