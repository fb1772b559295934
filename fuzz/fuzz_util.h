// Helpers shared by the libFuzzer targets in fuzz/ (see fuzz/README.md).
//
// Decoders that only take a path (shard files, corpus files, fine-tuning
// records) are fed through ScratchFile: the input is written to one file per
// fuzzer process (on tmpfs when /dev/shm exists) and overwritten each run.
// FUZZ_CHECK aborts with a message, so that libFuzzer saves the input, when
// a property the decoders promise (a round trip, an error format) fails.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#define FUZZ_CHECK(cond, what)                                                          \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: %s\n", __FILE__, __LINE__,    \
                   #cond, std::string(what).c_str());                                   \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)

namespace bert::fuzz {

inline std::string_view AsView(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

// A file path private to this process, with the given suffix (an extension
// picks the decoder's format). Removed at exit.
class ScratchFile {
 public:
  explicit ScratchFile(const std::string& suffix) {
    const char* dir = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
    path_ = std::string(dir) + "/bert_fuzz_" + std::to_string(::getpid()) + suffix;
  }
  ~ScratchFile() { ::unlink(path_.c_str()); }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  // Replaces the file's contents with `bytes`; aborts if it cannot (the
  // harness, not the decoder, is broken then).
  const std::string& Write(std::string_view bytes) {
    std::FILE* file = std::fopen(path_.c_str(), "wb");
    FUZZ_CHECK(file != nullptr, "cannot create " + path_);
    FUZZ_CHECK(std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size(), "short write to " + path_);
    FUZZ_CHECK(std::fclose(file) == 0, "close " + path_);
    return path_;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace bert::fuzz
