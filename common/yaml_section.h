// YamlSection: reads typed values from one mapping of a YAML config file,
// keeping the first error (a Status naming `prefix` + key) and the keys it
// was asked for, so that a typo is reported as an unknown key rather than
// ignored. Used by the run config (common/run_config.cc) and the fine-tuning
// config (finetune/finetune_config.cc).
//
// Contract: after the first error every call is a no-op; a key that is
// absent (or null, with null_is_absent) leaves the output untouched, so
// outputs hold their defaults. Keys and values quoted in errors are escaped
// onto one line. Not thread-safe.
#pragma once

#include <yaml-cpp/yaml.h>

#include <set>
#include <string>
#include <vector>

#include "common/status.h"

namespace bert {

class YamlSection {
 public:
  // `node` must be a mapping, null or absent (else an error); `prefix` is
  // prepended to keys in errors, e.g. "train.".
  YamlSection(const YAML::Node& node, std::string prefix, Status* error, bool null_is_absent = false);

  template <typename T>
  void Get(const char* key, T* out) {
    YAML::Node value = Find(key);
    if (!value.IsDefined()) return;
    try {
      *out = value.as<T>();
    } catch (const YAML::Exception&) {
      Fail(key, "has the wrong type (" + Describe(value) + ")");
    }
  }
  // A list of strings; with scalar_ok a single scalar is a list of one.
  // `expected` completes the error, e.g. "must be a list of names".
  void GetStrings(const char* key, std::vector<std::string>* out, bool scalar_ok, const std::string& expected);
  // The value of `key`, marked as known; an undefined node when absent (or
  // null, with null_is_absent), or after an error.
  YAML::Node Find(const char* key);
  // The sub-mapping `key` (marked as known), for a nested YamlSection.
  YAML::Node Child(const char* key);
  // Fails on a key given twice, a non-scalar key, or one never asked for.
  void RejectUnknownKeys();
  // Records "<prefix><key>: <what>" unless an error is already recorded.
  void Fail(const std::string& key, const std::string& what);
  // "'text'", "a list" or "a mapping".
  static std::string Describe(const YAML::Node& value);

 private:
  YAML::Node node_;
  std::string prefix_;
  Status* error_;
  bool null_is_absent_;
  std::set<std::string> seen_;
};

}  // namespace bert
