// libFuzzer target: fine-tuning records (finetune/classification_data.h:
// JSONL, CSV, TSV through ReadExamples; finetune/csv_reader.h's splitters).
// The first input byte picks the format; the rest is the file.
// Properties: nothing crashes; an error is one line naming the file; every
// example read has non-empty valid UTF-8 text and a 1-based line within the file.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/utf8.h"
#include "finetune/classification_data.h"
#include "finetune/csv_reader.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace ft = bert::finetune;
  if (size < 1) return 0;
  const std::string_view text = bert::fuzz::AsView(data + 1, size - 1);
  static bert::fuzz::ScratchFile jsonl(".jsonl"), csv(".csv"), tsv(".tsv");
  bert::fuzz::ScratchFile* files[] = {&jsonl, &csv, &tsv};
  bert::fuzz::ScratchFile& file = *files[data[0] % 3];
  const bool with_pair = (data[0] / 3) % 2 == 1;
  const bool require_label = (data[0] / 6) % 2 == 0;

  ft::FieldNames fields;
  if (with_pair) fields.text_pair = "text_b";
  bert::Result<std::vector<ft::Example>> examples =
      ft::ReadExamples(file.Write(text), fields, ft::FileFormat::kAuto, require_label);
  if (!examples.ok()) {
    const std::string& message = examples.status().message();
    FUZZ_CHECK(message.find(file.path()) != std::string::npos, "error not naming the file: " + message);
    FUZZ_CHECK(message.find('\n') == std::string::npos, "multi-line error: " + message);
  } else {
    const int64_t lines = 1 + static_cast<int64_t>(std::count(text.begin(), text.end(), '\n'));
    for (const ft::Example& example : *examples) {
      FUZZ_CHECK(!example.text.empty() && bert::IsValidUtf8(example.text), "bad text at line " + std::to_string(example.line));
      FUZZ_CHECK(bert::IsValidUtf8(example.text_pair) && bert::IsValidUtf8(example.label), "bad text_pair or label");
      FUZZ_CHECK(example.line >= 1 && example.line <= lines, "line " + std::to_string(example.line) + " outside the file");
      if (require_label) FUZZ_CHECK(!example.label.empty(), "a required label is empty");
    }
  }
  // The splitters directly, on the same text: errors name the source.
  for (bool is_csv : {true, false}) {
    auto records = is_csv ? ft::SplitCsv(text, "in.csv") : ft::SplitTsv(text, "in.tsv");
    if (!records.ok()) {
      FUZZ_CHECK(records.status().message().rfind(is_csv ? "in.csv" : "in.tsv", 0) == 0, records.status().message());
    }
  }
  return 0;
}
