#include "common/yaml_section.h"

#include "common/error_text.h"

namespace bert {

YamlSection::YamlSection(const YAML::Node& node, std::string prefix, Status* error, bool null_is_absent)
    : node_(node), prefix_(std::move(prefix)), error_(error), null_is_absent_(null_is_absent) {
  if (node_ && !node_.IsNull() && !node_.IsMap()) Fail("", "must be a mapping");
}

YAML::Node YamlSection::Find(const char* key) {
  seen_.insert(key);
  // yaml-cpp's default Node is a valid null node: "absent" is an Undefined one.
  if (!error_->ok() || !node_ || !node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  YAML::Node value = node_[key];
  if (!value || (null_is_absent_ && value.IsNull())) return YAML::Node(YAML::NodeType::Undefined);
  return value;
}

void YamlSection::GetStrings(const char* key, std::vector<std::string>* out, bool scalar_ok,
                             const std::string& expected) {
  YAML::Node value = Find(key);
  if (!value.IsDefined()) return;
  if (scalar_ok && value.IsScalar()) {
    *out = {value.Scalar()};
    return;
  }
  try {
    *out = value.as<std::vector<std::string>>();
  } catch (const YAML::Exception&) {
    Fail(key, expected);
  }
}

YAML::Node YamlSection::Child(const char* key) {
  seen_.insert(key);
  return node_ && node_.IsMap() ? node_[key] : YAML::Node();
}

void YamlSection::RejectUnknownKeys() {
  if (!error_->ok() || !node_ || !node_.IsMap()) return;
  std::set<std::string> given;
  for (const auto& item : node_) {
    // as<std::string>() throws on a sequence or map used as a key ("[a]: 1").
    if (!item.first.IsScalar()) return Fail("(a key)", "keys must be plain strings, not a list or a map");
    const std::string key = item.first.as<std::string>();
    if (!given.insert(key).second) return Fail(key, "is given twice");
    if (!seen_.count(key)) {
      std::string known;
      for (const std::string& k : seen_) known += (known.empty() ? "" : ", ") + k;
      return Fail(key, "is not a known key (known here: " + known + ")");
    }
  }
}

void YamlSection::Fail(const std::string& key, const std::string& what) {
  // Keys and the values quoted in `what` come from the file: kept on one line.
  if (error_->ok()) *error_ = Status::InvalidArgument(prefix_ + OneLineText(key) + ": " + OneLineText(what));
}

std::string YamlSection::Describe(const YAML::Node& value) {
  if (value.IsScalar()) return "'" + value.Scalar() + "'";
  return value.IsSequence() ? "a list" : "a mapping";
}

}  // namespace bert
