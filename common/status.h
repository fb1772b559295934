// Status: the recoverable-error tier (STYLE.md, habit 2).
//
// A Status is either OK or carries a code and a one-line message that names
// the file, field or peer at fault. Functions that can fail on user input or
// the environment return Status (or Result<T>); broken invariants are CHECKed.
// Thread-safe as a value type.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace bert {

class Status {
 public:
  enum class Code { kOk = 0, kInvalidArgument, kNotFound, kIoError, kCorruption, kFailedPrecondition,
                    kInternal /* a peer or library failed: MPI, NCCL */ };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string msg) { return Status(Code::kInvalidArgument, std::move(msg)); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status IoError(std::string msg) { return Status(Code::kIoError, std::move(msg)); }
  static Status Corruption(std::string msg) { return Status(Code::kCorruption, std::move(msg)); }
  static Status FailedPrecondition(std::string msg) {
    return Status(Code::kFailedPrecondition, std::move(msg));
  }
  static Status Internal(std::string msg) { return Status(Code::kInternal, std::move(msg)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "OK" or the message prefixed with the code's name, e.g. "IO error: ...".
  std::string ToString() const;

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// Result<T>: a value or a non-OK Status.
template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace bert

// Returns early from the enclosing function when `expr` is not OK.
#define BERT_RETURN_IF_ERROR(expr)          \
  do {                                      \
    ::bert::Status _st = (expr);            \
    if (!_st.ok()) return _st;              \
  } while (0)
