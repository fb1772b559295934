// libFuzzer target: raw corpus files as `bertctl prepare` reads them
// (datapipe/document_reader.h) and tokenizes them (datapipe/tokenizer.h,
// with the bundled bert-base-uncased vocabulary). The first input byte
// picks the format (jsonl, lines or text); the rest is the file.
// Properties: nothing crashes; every skip is counted, never fatal; JSONL
// documents are valid UTF-8 (invalid bytes are dropped before parsing);
// every token id is inside the vocabulary; a document's origin names the file.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/utf8.h"
#include "datapipe/document_reader.h"
#include "datapipe/tokenizer.h"
#include "datapipe/vocab.h"
#include "fuzz/fuzz_util.h"

namespace {

const bert::FullTokenizer& Tokenizer() {
  static const auto* tokenizer = [] {
    auto vocab = bert::Vocab::Load(std::string(BERT_VOCAB_DIR) + "/bert-base-uncased-vocab.txt");
    FUZZ_CHECK(vocab.ok(), vocab.status().message());
    return new bert::FullTokenizer(*vocab, bert::TokenizerOptions());
  }();
  return *tokenizer;
}

void CheckIds(const std::vector<int32_t>& ids, int32_t vocab_size) {
  for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < vocab_size, "token id " + std::to_string(id) + " outside the vocabulary");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bert::InputFormat formats[] = {bert::InputFormat::kJsonl, bert::InputFormat::kLines, bert::InputFormat::kText};
  const bert::InputFormat format = formats[data[0] % 3];
  static bert::fuzz::ScratchFile file(".corpus");
  file.Write(bert::fuzz::AsView(data + 1, size - 1));

  bert::ReaderOptions options;
  options.format = format;
  options.max_line_bytes = 1024;  // small limits, so that the fuzzer reaches the oversize paths
  options.max_document_bytes = 2048;
  options.max_warnings = 0;
  bert::DocumentReader reader({file.path()}, options);
  const bert::FullTokenizer& tokenizer = Tokenizer();
  const int32_t vocab_size = tokenizer.vocab().size();
  bert::SourceDocument doc;
  uint64_t documents = 0;
  while (reader.Next(&doc)) {
    ++documents;
    FUZZ_CHECK(doc.origin.rfind(file.path() + ":", 0) == 0, "origin does not name the file: " + doc.origin);
    std::vector<int32_t> ids;
    if (doc.presplit) {
      FUZZ_CHECK(!doc.lines.empty(), "an empty presplit document");
      for (const std::string& line : doc.lines) tokenizer.Encode(line, &ids);
    } else {
      if (format == bert::InputFormat::kJsonl) FUZZ_CHECK(bert::IsValidUtf8(doc.text), "JSONL text is not UTF-8");
      tokenizer.Encode(doc.text, &ids);
    }
    CheckIds(ids, vocab_size);
  }
  FUZZ_CHECK(reader.stats().documents == documents, "documents counted differently than returned");
  return 0;
}
