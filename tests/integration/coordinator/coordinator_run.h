// A coordinator run made of real processes on loopback, for the
// multi-process tests: a small real corpus (Debian's linux-doc-6.1), a run
// config, bert-coordinator and bert-fake-worker processes, and readers for
// the ledger dump, the stats file and the workers' batch records.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/file_util.h"
#include "datapipe/corpus_index.h"
#include "datapipe/sample_plan.h"
#include "datapipe/vocab.h"
#include "integration/coordinator/subprocess.h"
#include "test_util.h"

namespace bert::testing {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// The run geometry every test uses: G = 32 over 2 ranks, 2 micro-batches of 8.
constexpr uint64_t kGlobalBatch = 32, kMicroBatch = 8;
constexpr uint32_t kWorld = 2, kMicroBatches = 2;
constexpr uint64_t kSeed = 7;

inline std::string Coordinator() { return std::string(BERT_BIN_DIR) + "/bert-coordinator"; }
inline std::string FakeWorker() { return std::string(BERT_BIN_DIR) + "/bert-fake-worker"; }

inline std::vector<Json> JsonLines(const std::string& text) {
  std::vector<Json> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(Json::parse(line));
  }
  return lines;
}

inline std::vector<Json> ReadJsonLines(const std::string& path) {
  Result<std::string> text = ReadFile(path);
  return text.ok() ? JsonLines(*text) : std::vector<Json>();
}

inline size_t CountLines(const std::string& path) {
  Result<std::string> text = ReadFile(path);
  return text.ok() ? static_cast<size_t>(std::count(text->begin(), text->end(), '\n')) : 0;
}

// Polls `done` every 20 ms for up to timeout_ms.
template <typename Predicate>
bool WaitFor(Predicate done, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 20) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

// Prepares the corpus once per test suite: the first 20 files of the
// kernel's admin-guide (19 documents, ~400 samples per epoch at seq 64).
class CoordinatorRunTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    corpus_dir_ = new TempDir();
    std::vector<std::string> files;
    for (const auto& entry : fs::recursive_directory_iterator(LinuxDocDir() + "/admin-guide")) {
      if (entry.is_regular_file() && entry.path().extension() == ".gz") files.push_back(entry.path().string());
    }
    ASSERT_GE(files.size(), 20u) << "linux-doc-6.1 is not installed; run scripts/setup.sh";
    std::sort(files.begin(), files.end());
    fs::create_directories(*corpus_dir_ / "docs");
    for (size_t i = 0; i < 20; ++i) {
      fs::copy_file(files[i], *corpus_dir_ / ("docs/" + std::to_string(100 + i) + fs::path(files[i]).filename().string()));
    }
    CommandResult r = RunCommand(Bertctl() + " prepare --input " + (*corpus_dir_ / "docs") + " --vocab " +
                                 UncasedVocab() + " --db " + Db());
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() { delete corpus_dir_; }
  static std::string Db() { return *corpus_dir_ / "db"; }

  std::string RunDir() const { return work_ / "run"; }
  std::string EndpointFile() const { return RunDir() + "/coordinator/endpoint"; }
  // The run's CURVE keys, which the coordinator generates on its first start.
  std::string KeysDir() const { return RunDir() + "/keys"; }

  // Writes the run config and returns its path.
  std::string WriteConfig(uint64_t steps) {
    const std::string path = work_ / "run.yaml";
    WriteText(path, "name: coordtest\nrun_dir: " + RunDir() + "\nmodel: " + std::string(BERT_SOURCE_DIR) +
                        "/configs/models/bert-tiny.json\nvocab: " + UncasedVocab() + "\ndata:\n  db: " + Db() +
                        "\n  seed: " + std::to_string(kSeed) + "\n  max_seq_len: 64\n  max_predictions: 10\n" +
                        "train:\n  global_batch_size: " + std::to_string(kGlobalBatch) + "\n  micro_batch_size: " +
                        std::to_string(kMicroBatch) + "\n  steps: " + std::to_string(steps) + "\n  warmup_steps: 0\n");
    return path;
  }

  std::unique_ptr<Subprocess> StartCoordinator(const std::string& config, const std::string& log_name,
                                               std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {Coordinator(), "--config", config, "--world-size", std::to_string(kWorld),
                                     "--bind", "tcp://127.0.0.1:*", "--heartbeat-interval-ms", "500",
                                     "--heartbeat-timeout-ms", "3000", "--prefetch", "4", "--progress-every-s", "1",
                                     "--without-checkpoints"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<Subprocess>(argv, work_ / log_name);
  }

  std::unique_ptr<Subprocess> StartWorker(uint32_t rank, const std::string& record, int step_time_ms,
                                          uint64_t generation = 0) {
    return std::make_unique<Subprocess>(
        std::vector<std::string>{FakeWorker(), "--endpoint-file", EndpointFile(), "--run-id", "coordtest", "--rank",
                                 std::to_string(rank), "--world-size", std::to_string(kWorld), "--generation",
                                 std::to_string(generation), "--step-time-ms", std::to_string(step_time_ms),
                                 "--record", work_ / record, "--keys", KeysDir()},
        work_ / (record + ".log"));
  }

  std::string ReadLog(const Subprocess& process) const {
    Result<std::string> text = ReadFile(process.log_path());
    return text.ok() ? *text : "";
  }

  // `bert-coordinator --dump-ledger RUN_DIR`: meta, epoch and batch lines.
  std::vector<Json> DumpLedger() const {
    CommandResult r = RunCommand(Coordinator() + " --dump-ledger " + RunDir() + " 2>/dev/null");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return JsonLines(r.output);
  }

  Json Stats() const {
    Result<std::string> text = ReadFile(RunDir() + "/coordinator/stats.json");
    return text.ok() ? Json::parse(*text) : Json();
  }

  // Samples in epoch `epoch` of the plan, computed here from the corpus.
  static uint64_t EpochSamples(uint64_t epoch) {
    auto corpus = Corpus::Open({Db()});
    auto vocab = (*corpus)->LoadVocab();
    auto masking = MaskingVocab::FromVocab(**vocab);
    auto index = CorpusIndex::Load(**corpus, CorpusIndexOptions());
    SampleOptions options;
    options.seed = kSeed;
    options.max_seq_len = 64;
    options.masking.max_predictions = 10;
    auto plan = EpochPlan::Build(std::move(index).value(), corpus->get(),
                                 std::make_shared<const MaskingVocab>(*masking), options, epoch, 1);
    return plan.ok() ? (*plan)->num_samples() : 0;
  }

  // The ledger shows exactly the planned samples dispatched and acknowledged
  // for steps [0, steps): one entry per (step, rank, micro), sent once, and
  // per epoch the entries' ranges tile [0, steps_in_epoch * G) with no
  // sample twice and none skipped.
  void ExpectExactlyThePlannedSamples(const std::vector<Json>& dump, uint64_t steps) {
    ASSERT_FALSE(dump.empty());
    EXPECT_EQ(dump[0]["cursor"], steps);
    std::map<std::tuple<uint64_t, uint64_t, uint64_t>, Json> entries;
    std::map<uint64_t, std::vector<std::pair<uint64_t, uint64_t>>> ranges;  // epoch -> [begin, end)
    for (const Json& line : dump) {
      if (line["type"] != "batch") continue;
      const auto key = std::make_tuple(line["step"].get<uint64_t>(), line["rank"].get<uint64_t>(),
                                       line["micro"].get<uint64_t>());
      ASSERT_TRUE(entries.emplace(key, line).second);
      EXPECT_TRUE(line["acked"].get<bool>()) << line.dump();
      EXPECT_EQ(line["dispatch_count"], 1) << line.dump();
      ranges[line["epoch"].get<uint64_t>()].push_back({line["begin"].get<uint64_t>(), line["end"].get<uint64_t>()});
    }
    EXPECT_EQ(entries.size(), steps * kWorld * kMicroBatches);
    // Walk the epochs as the design says: floor(size / G) steps each.
    uint64_t step = 0;
    for (uint64_t epoch = 0; step < steps; ++epoch) {
      const uint64_t steps_in_epoch = std::min(EpochSamples(epoch) / kGlobalBatch, steps - step);
      ASSERT_GT(steps_in_epoch, 0u);
      std::vector<std::pair<uint64_t, uint64_t>>& r = ranges[epoch];
      std::sort(r.begin(), r.end());
      uint64_t next = 0;
      for (const auto& [begin, end] : r) {
        ASSERT_EQ(begin, next) << "epoch " << epoch << ": a gap or a sample twice";
        ASSERT_EQ(end - begin, kMicroBatch);
        next = end;
      }
      EXPECT_EQ(next, steps_in_epoch * kGlobalBatch) << "epoch " << epoch;
      for (uint64_t k = 0; k < steps_in_epoch; ++k, ++step) {
        for (uint64_t rank = 0; rank < kWorld; ++rank) {
          for (uint64_t micro = 0; micro < kMicroBatches; ++micro) {
            const Json& e = entries[{step, rank, micro}];
            ASSERT_FALSE(e.is_null()) << "step " << step << " rank " << rank << " micro " << micro << " missing";
            EXPECT_EQ(e["epoch"], epoch);
            EXPECT_EQ(e["begin"], k * kGlobalBatch + rank * (kGlobalBatch / kWorld) + micro * kMicroBatch);
          }
        }
      }
    }
    EXPECT_GE(ranges.size(), 2u) << "the run should cross an epoch boundary";
  }

  TempDir work_;
  static inline TempDir* corpus_dir_ = nullptr;
};

}  // namespace bert::testing
