// Labelled text-classification data for fine-tuning: reading JSONL, CSV and
// TSV files, the label map, and encoding into BERT inputs.
//
// Contract:
// - ReadExamples reads every record of one file. JSONL: one JSON object per
//   line (blank lines skipped). CSV (RFC 4180: quoted fields, "" escapes,
//   newlines inside quotes) and TSV (tab-separated, no quoting) have a header
//   row naming the columns. The format comes from the extension (.jsonl,
//   .json, .csv, .tsv) unless given. Errors name the file and line (and the
//   field): a missing field, an empty text, invalid UTF-8, a malformed line.
//   With require_label = false (prediction) the label field may be absent.
// - LabelMap::FromExamples takes the distinct labels of the training data
//   in sorted byte order, so the id of a label does not depend on the order
//   of the file. IdOf an unseen label is an error that names it and `source`.
// - Encode builds [CLS] text [SEP] (text_pair [SEP]) with token types 0/1,
//   truncating the longer segment first (BERT's _truncate_seq_pair) to
//   max_seq_len tokens. Unpadded; the trainer pads per batch.
// Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "datapipe/tokenizer.h"

namespace bert::finetune {

enum class FileFormat { kAuto, kJsonl, kCsv, kTsv };
Result<FileFormat> ParseFileFormat(const std::string& name);  // "auto" | "jsonl" | "csv" | "tsv"

// Names of the fields (JSON keys or header columns) to read.
struct FieldNames {
  std::string text = "text";    // the first (or only) text
  std::string text_pair;        // the second text of sentence pairs; "" = single texts
  std::string label = "label";  // the class label (JSON strings, or numbers/bools as written)
};

struct Example {
  std::string text;       // valid UTF-8, non-empty
  std::string text_pair;  // "" unless FieldNames::text_pair is set
  std::string label;      // "" only when the label was not required and is absent
  int64_t line = 0;       // 1-based line of the record's start in its file
};

Result<std::vector<Example>> ReadExamples(const std::string& path, const FieldNames& fields,
                                          FileFormat format = FileFormat::kAuto, bool require_label = true);

class LabelMap {
 public:
  LabelMap() = default;
  // The distinct non-empty labels of `examples`, sorted. Error when fewer than 2.
  static Result<LabelMap> FromExamples(const std::vector<Example>& examples, const std::string& source);
  // Labels in id order (e.g. a model's id2label); error on duplicates or empty names.
  static Result<LabelMap> FromNames(std::vector<std::string> names, const std::string& source);

  int32_t size() const { return static_cast<int32_t>(names_.size()); }
  const std::string& name(int32_t id) const { return names_.at(id); }
  const std::vector<std::string>& names() const { return names_; }
  // Error "<source>:<line>: unknown label "x" (the training data has: a, b, c)".
  Result<int32_t> IdOf(const std::string& label, const std::string& source, int64_t line) const;

 private:
  std::vector<std::string> names_;
};

// One encoded example (unpadded; input_ids.size() == token_type_ids.size() <= max_seq_len).
struct Feature {
  std::vector<int32_t> input_ids;       // [CLS] a [SEP] (b [SEP])
  std::vector<int32_t> token_type_ids;  // 0 for [CLS] a [SEP], 1 for b [SEP]
  int32_t label = -1;                   // LabelMap id; -1 when the example has no label
};

struct EncodedSet {
  std::vector<Feature> features;  // in file order
  int64_t truncated = 0;          // examples cut to max_seq_len
};

// Labels must be known to `labels` (an unseen one is an error naming it and
// `source`:line); examples without a label get -1. max_seq_len >= 3 (or >= 4 for pairs).
Result<EncodedSet> EncodeExamples(const std::vector<Example>& examples, const LabelMap& labels,
                                  const FullTokenizer& tokenizer, int32_t max_seq_len, const std::string& source);

}  // namespace bert::finetune
