// libFuzzer target: a checkpoint's manifest.json (checkpoint/checkpoint.h):
// Manifest::FromJson on the parsed text, and the whole load path
// (CheckpointStore::LoadLatest over a directory holding the file).
// Properties: nothing crashes; an error is one line naming the source; an
// accepted manifest survives ToJson -> FromJson unchanged; a load over a
// manifest without its shards fails (no partial checkpoint looks complete).
#include <cstddef>
#include <cstdint>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include <glog/logging.h>
#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "fuzz/fuzz_util.h"

namespace {

// RUN/checkpoints/step-000001/ of a scratch run directory (per process).
const std::string& ScratchRun() {
  static const std::string run = [] {
    const std::string dir = (::access("/dev/shm", W_OK) == 0 ? std::string("/dev/shm") : std::string("/tmp")) +
                            "/bert_manifest_fuzz_" + std::to_string(::getpid());
    ::mkdir(dir.c_str(), 0700);
    ::mkdir((dir + "/checkpoints").c_str(), 0700);
    ::mkdir((dir + "/checkpoints/step-000001").c_str(), 0700);
    return dir;
  }();
  return run;
}

void CheckLoad(std::string_view text) {
  const std::string path = ScratchRun() + "/checkpoints/step-000001/manifest.json";
  std::FILE* file = std::fopen(path.c_str(), "wb");
  FUZZ_CHECK(file != nullptr, "cannot create " + path);
  FUZZ_CHECK(std::fwrite(text.data(), 1, text.size(), file) == text.size() && std::fclose(file) == 0, path);
  bert::CheckpointStore store(ScratchRun());
  std::vector<std::string> skipped;
  bert::Result<bert::LoadedCheckpoint> loaded = store.LoadLatest(&skipped);
  FUZZ_CHECK(!loaded.ok(), "a checkpoint without shard files loaded");
  for (const std::string& line : skipped) FUZZ_CHECK(line.find('\n') == std::string::npos, "multi-line skip: " + line);
}

}  // namespace

// LoadLatest logs each checkpoint it skips; millions of runs need no such lines.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  FLAGS_minloglevel = google::GLOG_ERROR;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = bert::fuzz::AsView(data, size);
  CheckLoad(text);
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
