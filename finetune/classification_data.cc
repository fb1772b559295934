#include "finetune/classification_data.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "common/error_text.h"
#include "common/file_util.h"
#include "common/utf8.h"
#include "finetune/csv_reader.h"

namespace bert::finetune {
namespace {

std::string Where(const std::string& path, int64_t line) { return path + ":" + std::to_string(line); }

bool IsBlankText(const std::string& text) {
  return std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c); });
}

Result<FileFormat> FormatFromExtension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext == ".jsonl" || ext == ".json" || ext == ".ndjson") return FileFormat::kJsonl;
  if (ext == ".csv") return FileFormat::kCsv;
  if (ext == ".tsv") return FileFormat::kTsv;
  return Status::InvalidArgument(path + ": cannot tell the format from the extension '" + ext +
                                 "' (use .jsonl, .json, .csv or .tsv, or give the format: jsonl, csv or tsv)");
}

// Checks one example's fields; `what` is "file:line".
Status CheckExample(const Example& example, const FieldNames& fields, const std::string& what) {
  if (IsBlankText(example.text)) return Status::InvalidArgument(what + ": field \"" + fields.text + "\" is empty");
  if (!fields.text_pair.empty() && IsBlankText(example.text_pair)) {
    return Status::InvalidArgument(what + ": field \"" + fields.text_pair + "\" is empty");
  }
  return Status::Ok();
}

// A JSON value as a label: strings as they are, numbers and bools as written.
Result<std::string> LabelOf(const nlohmann::json& value, const std::string& field, const std::string& what) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number() || value.is_boolean()) return value.dump();
  return Status::InvalidArgument(what + ": field \"" + field + "\" must be a string, number or bool, got " +
                                 std::string(value.type_name()));
}

Result<std::vector<Example>> ReadJsonl(const std::string& path, const std::string& text, const FieldNames& fields,
                                       bool require_label) {
  std::vector<Example> examples;
  int64_t line_number = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    ++line_number;
    if (IsBlankText(line)) continue;
    const std::string what = Where(path, line_number);
    if (!IsValidUtf8(line)) return Status::InvalidArgument(what + ": not valid UTF-8");
    const nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_discarded()) return Status::InvalidArgument(what + ": not valid JSON");
    if (!record.is_object()) return Status::InvalidArgument(what + ": not a JSON object");
    Example example;
    example.line = line_number;
    auto text_field = [&](const std::string& name, std::string* out) -> Status {
      auto it = record.find(name);
      if (it == record.end()) return Status::InvalidArgument(what + ": missing field \"" + name + "\"");
      if (!it->is_string()) {
        return Status::InvalidArgument(what + ": field \"" + name + "\" must be a string, got " +
                                       std::string(it->type_name()));
      }
      *out = it->get<std::string>();
      return Status::Ok();
    };
    BERT_RETURN_IF_ERROR(text_field(fields.text, &example.text));
    if (!fields.text_pair.empty()) BERT_RETURN_IF_ERROR(text_field(fields.text_pair, &example.text_pair));
    auto label = record.find(fields.label);
    if (label != record.end() && !label->is_null()) {
      Result<std::string> name = LabelOf(*label, fields.label, what);
      if (!name.ok()) return name.status();
      example.label = std::move(name).value();
    }
    if (require_label && example.label.empty()) {
      return Status::InvalidArgument(what + ": missing field \"" + fields.label + "\"");
    }
    BERT_RETURN_IF_ERROR(CheckExample(example, fields, what));
    examples.push_back(std::move(example));
  }
  return examples;
}

Result<std::vector<Example>> ReadDelimited(const std::string& path, const std::string& text, const FieldNames& fields,
                                           FileFormat format, bool require_label) {
  if (!IsValidUtf8(text)) {
    // Name the first line with a bad byte.
    int64_t line = 1;
    for (size_t i = 0; i < text.size();) {
      const size_t len = ValidUtf8SequenceLength(text, i);
      if (len == 0) break;
      if (text[i] == '\n') ++line;
      i += len;
    }
    return Status::InvalidArgument(Where(path, line) + ": not valid UTF-8");
  }
  Result<std::vector<DelimitedRecord>> records = format == FileFormat::kCsv ? SplitCsv(text, path) : SplitTsv(text, path);
  if (!records.ok()) return records.status();
  if (records->empty()) return std::vector<Example>();
  const DelimitedRecord& header = records->front();
  auto column = [&](const std::string& name, bool required) -> Result<int> {
    for (size_t i = 0; i < header.fields.size(); ++i) {
      if (header.fields[i] == name) return static_cast<int>(i);
    }
    if (!required) return -1;
    std::string columns;
    for (const std::string& f : header.fields) columns += (columns.empty() ? "" : ", ") + f;
    return Status::InvalidArgument(Where(path, header.line) + ": missing field \"" + name +
                                   "\" in the header (columns: " + OneLineText(columns) + ")");
  };
  Result<int> text_column = column(fields.text, true);
  if (!text_column.ok()) return text_column.status();
  int pair_column = -1;
  if (!fields.text_pair.empty()) {
    Result<int> found = column(fields.text_pair, true);
    if (!found.ok()) return found.status();
    pair_column = *found;
  }
  Result<int> label_column = column(fields.label, require_label);
  if (!label_column.ok()) return label_column.status();

  std::vector<Example> examples;
  for (size_t r = 1; r < records->size(); ++r) {
    const DelimitedRecord& record = (*records)[r];
    const std::string what = Where(path, record.line);
    if (record.fields.size() != header.fields.size()) {
      return Status::InvalidArgument(what + ": " + std::to_string(record.fields.size()) + " fields, the header has " +
                                     std::to_string(header.fields.size()));
    }
    Example example;
    example.line = record.line;
    example.text = record.fields[*text_column];
    if (pair_column >= 0) example.text_pair = record.fields[pair_column];
    if (*label_column >= 0) example.label = record.fields[*label_column];
    if (require_label && example.label.empty()) {
      return Status::InvalidArgument(what + ": field \"" + fields.label + "\" is empty");
    }
    BERT_RETURN_IF_ERROR(CheckExample(example, fields, what));
    examples.push_back(std::move(example));
  }
  return examples;
}

}  // namespace

Result<FileFormat> ParseFileFormat(const std::string& name) {
  if (name == "auto") return FileFormat::kAuto;
  if (name == "jsonl") return FileFormat::kJsonl;
  if (name == "csv") return FileFormat::kCsv;
  if (name == "tsv") return FileFormat::kTsv;
  return Status::InvalidArgument("format must be auto, jsonl, csv or tsv, got '" + name + "'");
}

Result<std::vector<Example>> ReadExamples(const std::string& path, const FieldNames& fields, FileFormat format,
                                          bool require_label) {
  if (fields.text.empty() || fields.label.empty()) {
    return Status::InvalidArgument(path + ": the text and label field names must not be empty");
  }
  if (format == FileFormat::kAuto) {
    Result<FileFormat> detected = FormatFromExtension(path);
    if (!detected.ok()) return detected.status();
    format = *detected;
  }
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  std::string& contents = *text;
  if (contents.compare(0, 3, "\xEF\xBB\xBF") == 0) contents.erase(0, 3);  // a UTF-8 byte order mark
  if (format == FileFormat::kJsonl) return ReadJsonl(path, contents, fields, require_label);
  return ReadDelimited(path, contents, fields, format, require_label);
}

Result<LabelMap> LabelMap::FromExamples(const std::vector<Example>& examples, const std::string& source) {
  std::set<std::string> distinct;
  for (const Example& example : examples) {
    if (!example.label.empty()) distinct.insert(example.label);
  }
  if (distinct.size() < 2) {
    std::string found = distinct.empty() ? std::string("none") : "only \"" + *distinct.begin() + "\"";
    return Status::InvalidArgument(source + ": classification needs at least 2 distinct labels, found " + found);
  }
  LabelMap map;
  map.names_.assign(distinct.begin(), distinct.end());  // std::set: sorted byte order
  return map;
}

Result<LabelMap> LabelMap::FromNames(std::vector<std::string> names, const std::string& source) {
  std::set<std::string> seen;
  for (const std::string& name : names) {
    if (name.empty()) return Status::InvalidArgument(source + ": a label name is empty");
    if (!seen.insert(name).second) return Status::InvalidArgument(source + ": label \"" + name + "\" appears twice");
  }
  LabelMap map;
  map.names_ = std::move(names);
  return map;
}

Result<int32_t> LabelMap::IdOf(const std::string& label, const std::string& source, int64_t line) const {
  for (size_t id = 0; id < names_.size(); ++id) {
    if (names_[id] == label) return static_cast<int32_t>(id);
  }
  std::string known;
  for (const std::string& name : names_) known += (known.empty() ? "" : ", ") + name;
  return Status::InvalidArgument((line > 0 ? Where(source, line) : source) + ": unknown label \"" + label +
                                 "\" (the training data has: " + known + ")");
}

Result<EncodedSet> EncodeExamples(const std::vector<Example>& examples, const LabelMap& labels,
                                  const FullTokenizer& tokenizer, int32_t max_seq_len, const std::string& source) {
  const Vocab& vocab = tokenizer.vocab();
  if (vocab.cls_id() < 0 || vocab.sep_id() < 0) {
    return Status::InvalidArgument(source + ": the vocabulary lacks [CLS] or [SEP]");
  }
  std::unordered_map<std::string, int32_t> ids;
  for (int32_t id = 0; id < labels.size(); ++id) ids.emplace(labels.name(id), id);
  EncodedSet set;
  set.features.reserve(examples.size());
  std::vector<int32_t> a, b;
  for (const Example& example : examples) {
    const bool pair = !example.text_pair.empty();
    if (max_seq_len < (pair ? 4 : 3)) {
      return Status::InvalidArgument(source + ": max_seq_len " + std::to_string(max_seq_len) + " leaves no room for " +
                                     (pair ? "a sentence pair" : "text"));
    }
    Feature feature;
    if (!example.label.empty()) {
      auto it = ids.find(example.label);
      if (it == ids.end()) {
        Result<int32_t> id = labels.IdOf(example.label, source, example.line);
        return id.status();
      }
      feature.label = it->second;
    }
    a.clear();
    b.clear();
    tokenizer.Encode(example.text, &a);
    if (pair) tokenizer.Encode(example.text_pair, &b);
    // BERT's _truncate_seq_pair (run_classifier.py): drop the last token of
    // the longer segment (b on ties) until both fit.
    const size_t budget = static_cast<size_t>(max_seq_len) - (pair ? 3 : 2);
    bool truncated = false;
    while (a.size() + b.size() > budget) {
      truncated = true;
      if (a.size() > b.size()) {
        a.pop_back();
      } else {
        b.pop_back();
      }
    }
    if (truncated) ++set.truncated;
    feature.input_ids.reserve(a.size() + b.size() + 3);
    feature.input_ids.push_back(vocab.cls_id());
    feature.input_ids.insert(feature.input_ids.end(), a.begin(), a.end());
    feature.input_ids.push_back(vocab.sep_id());
    feature.token_type_ids.assign(feature.input_ids.size(), 0);
    if (pair) {
      feature.input_ids.insert(feature.input_ids.end(), b.begin(), b.end());
      feature.input_ids.push_back(vocab.sep_id());
      feature.token_type_ids.resize(feature.input_ids.size(), 1);
    }
    set.features.push_back(std::move(feature));
  }
  return set;
}

}  // namespace bert::finetune
