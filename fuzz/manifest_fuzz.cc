// libFuzzer target: a checkpoint's manifest.json (checkpoint/checkpoint.h,
// Manifest::FromJson), parsed the way ReadManifest parses it.
// Properties: nothing crashes; an error is one line naming the source; an
// accepted manifest survives ToJson -> FromJson unchanged.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = bert::fuzz::AsView(data, size);
  // ReadManifest catches parse_error; without exceptions a bad text is discarded.
  const nlohmann::json json = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return 0;
  bert::Result<bert::Manifest> manifest = bert::Manifest::FromJson(json, "fuzz/manifest.json");
  if (!manifest.ok()) {
    const std::string& message = manifest.status().message();
    FUZZ_CHECK(message.rfind("fuzz/manifest.json: ", 0) == 0, "error not naming the file: " + message);
    FUZZ_CHECK(message.find('\n') == std::string::npos, "multi-line error: " + message);
    return 0;
  }
  const nlohmann::json written = manifest->ToJson();
  bert::Result<bert::Manifest> again = bert::Manifest::FromJson(written, "rewritten");
  FUZZ_CHECK(again.ok(), "an accepted manifest does not round-trip: " + again.status().message());
  FUZZ_CHECK(again->ToJson() == written, "manifest changed in the round trip");
  // What the committer writes is what a loader parses: the dump parses back.
  const std::string dumped = written.dump(2);
  FUZZ_CHECK(nlohmann::json::parse(dumped, nullptr, false) == written, "dumped manifest does not parse back");
  return 0;
}
