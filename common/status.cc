#include "common/status.h"

namespace bert {

std::string Status::ToString() const {
  switch (code_) {
    case Code::kOk: return "OK";
    case Code::kInvalidArgument: return "invalid argument: " + message_;
    case Code::kNotFound: return "not found: " + message_;
    case Code::kIoError: return "IO error: " + message_;
    case Code::kCorruption: return "corruption: " + message_;
    case Code::kFailedPrecondition: return "failed precondition: " + message_;
    case Code::kInternal: return "internal: " + message_;
  }
  return message_;
}

}  // namespace bert
