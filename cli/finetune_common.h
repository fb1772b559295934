// Helpers shared by bertctl finetune, eval and predict (cli/cmd_finetune.cc,
// cli/cmd_eval.cc): exit codes of bad input, paths and word lists.
#pragma once

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "common/logging.h"
#include "common/status.h"

namespace bert::cli {

// common/protocol.h's ExitCode values that these commands return themselves
// (that header needs the generated protobuf code, which bertctl does not link).
constexpr int kFinetuneExitError = 1;    // I/O or internal error
constexpr int kFinetuneExitUsage = 2;    // bad flag, config, init or vocabulary
constexpr int kFinetuneExitBadData = 7;  // bad data file contents

// Logs the one-line error and returns the exit code for its kind: bad data
// (Corruption) 7; a bad flag, config, missing file or refused output 2; else 1.
inline int FailFinetune(const std::string& tag, const Status& status) {
  LOG(ERROR) << tag << " " << status.message();
  switch (status.code()) {
    case Status::Code::kCorruption: return kFinetuneExitBadData;
    case Status::Code::kInvalidArgument:
    case Status::Code::kNotFound:
    case Status::Code::kFailedPrecondition: return kFinetuneExitUsage;
    default: return kFinetuneExitError;
  }
}

// `status` with `prefix` before its message, keeping its kind.
inline Status Prefixed(const std::string& prefix, const Status& status) {
  const std::string message = prefix + status.message();
  switch (status.code()) {
    case Status::Code::kCorruption: return Status::Corruption(message);
    case Status::Code::kNotFound: return Status::NotFound(message);
    case Status::Code::kFailedPrecondition: return Status::FailedPrecondition(message);
    case Status::Code::kIoError: return Status::IoError(message);
    case Status::Code::kInternal: return Status::Internal(message);
    default: return Status::InvalidArgument(message);
  }
}

inline std::string AbsolutePath(const std::string& path) {
  return path.empty() ? path : std::filesystem::absolute(path).lexically_normal().string();
}

inline std::vector<std::string> SplitWords(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

}  // namespace bert::cli
