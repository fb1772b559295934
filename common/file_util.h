// File utilities: whole-file reads, the durable atomic write idiom and
// directory listing. Errors are returned as Status naming the path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace bert {

// Reads a whole file. Fails with IoError naming the path.
Result<std::string> ReadFile(const std::string& path);

// Writes `contents` to `path` atomically and durably: write PATH.tmp, fsync
// it, rename it over PATH, fsync the directory. A crash leaves either the old
// file or the new one, never a torn one.
Status WriteFileAtomic(const std::string& path, const std::string& contents);

// Expands files and directories (recursively, sorted by path so the order is
// stable) into regular files. Missing or unreadable paths are reported in
// `errors` (one line each, naming the path) and skipped.
std::vector<std::string> ExpandInputPaths(const std::vector<std::string>& paths,
                                          std::vector<std::string>* errors);

// xxh3-64 of a file's bytes (vocabulary checksums). Hex, 16 characters.
Result<std::string> FileChecksumHex(const std::string& path);
std::string Hex64(uint64_t value);

}  // namespace bert
