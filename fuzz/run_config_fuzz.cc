// libFuzzer target: a YAML run config (common/run_config.h, ParseRunConfig).
// Properties: nothing crashes (yaml-cpp exceptions are caught inside); an
// error is one line naming the file; an accepted config survives
// ToYaml -> ParseRunConfig unchanged.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/run_config.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(bert::fuzz::AsView(data, size));
  bert::Result<bert::RunConfig> config = bert::ParseRunConfig(text, "fuzz/run.yaml", "/cfg");
  if (!config.ok()) {
    const std::string& message = config.status().message();
    FUZZ_CHECK(message.find("fuzz/run.yaml") != std::string::npos, "error not naming the file: " + message);
    FUZZ_CHECK(message.find('\n') == std::string::npos, "multi-line error: " + message);
    return 0;
  }
  const std::string yaml = config->ToYaml();
  bert::Result<bert::RunConfig> again = bert::ParseRunConfig(yaml, "resolved.yaml", "/cfg");
  FUZZ_CHECK(again.ok(), "an accepted config does not round-trip: " + again.status().message() + "\n" + yaml);
  FUZZ_CHECK(again->ToYaml() == yaml, "config changed in the round trip:\n" + yaml + "\n---\n" + again->ToYaml());
  return 0;
}
