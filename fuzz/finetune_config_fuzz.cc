// libFuzzer target: a fine-tuning YAML config (finetune/finetune_config.h,
// ParseFinetuneConfig). Properties: nothing crashes; an error is one line
// naming the file; an accepted config survives FinetuneConfigToYaml ->
// ParseFinetuneConfig unchanged (the header promises the round trip).
#include <cstddef>
#include <cstdint>
#include <string>

#include "finetune/finetune_config.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace ft = bert::finetune;
  const std::string text(bert::fuzz::AsView(data, size));
  bert::Result<ft::FinetuneConfig> config = ft::ParseFinetuneConfig(text, "fuzz/finetune.yaml");
  if (!config.ok()) {
    const std::string& message = config.status().message();
    FUZZ_CHECK(message.find("fuzz/finetune.yaml") != std::string::npos, "error not naming the file: " + message);
    FUZZ_CHECK(message.find('\n') == std::string::npos, "multi-line error: " + message);
    return 0;
  }
  const std::string yaml = ft::FinetuneConfigToYaml(*config);
  bert::Result<ft::FinetuneConfig> again = ft::ParseFinetuneConfig(yaml, "resolved.yaml");
  FUZZ_CHECK(again.ok(), "an accepted config does not round-trip: " + again.status().message() + "\n" + yaml);
  FUZZ_CHECK(ft::FinetuneConfigToYaml(*again) == yaml, "config changed in the round trip:\n" + yaml);
  return 0;
}
