// Pretraining runs of real processes for the worker integration tests:
// bert-coordinator plus `mpirun -np W bert-worker` on loopback, on the small
// real corpus of CoordinatorRunTest, with helpers to find and signal the
// worker processes.
#pragma once

#include <signal.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <thread>

#include "checkpoint/checkpoint.h"
#include "common/protocol.h"
#include "integration/coordinator/coordinator_run.h"

namespace bert::testing {

inline std::string Worker() { return std::string(BERT_BIN_DIR) + "/bert-worker"; }

inline std::vector<float> ReadFloats(const std::string& path) {
  Result<std::string> bytes = ReadFile(path);
  if (!bytes.ok()) return {};
  std::vector<float> values(bytes->size() / sizeof(float));
  std::memcpy(values.data(), bytes->data(), values.size() * sizeof(float));
  return values;
}

// The bert-worker processes mpirun started (its children).
inline std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> children;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const size_t paren = line.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream rest(line.substr(paren + 2));
    char state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent && line.find("bert-worker") != std::string::npos) children.push_back(std::stoi(name));
  }
  return children;
}

// Running (a zombie whose parent is gone counts as ended).
inline bool Alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z';
}

inline int RankOf(pid_t pid) {
  Result<std::string> environ = ReadFile("/proc/" + std::to_string(pid) + "/environ");
  if (!environ.ok()) return -1;
  const std::string key = std::string("OMPI_COMM_WORLD_RANK=");
  const size_t at = environ->find(key);
  return at == std::string::npos ? -1 : std::atoi(environ->c_str() + at + key.size());
}

// A file's text; "" when it cannot be read.
inline std::string Text(const std::string& path) {
  Result<std::string> text = ReadFile(path);
  return text.ok() ? *text : "";
}

// A checkpoint's parameters and optimizer moments, one after the other.
inline std::vector<float> CheckpointState(const LoadedCheckpoint& checkpoint) {
  const uint64_t n = checkpoint.manifest.total_elements;
  std::vector<float> state(3 * n);
  const char* sections[] = {"params", "exp_avg", "exp_avg_sq"};
  for (int s = 0; s < 3; ++s) {
    Status read = ReadRange(checkpoint, sections[s], 0, n, state.data() + s * n);
    EXPECT_TRUE(read.ok()) << read.message();
  }
  return state;
}

// Processes whose command line mentions `needle` and whose program is `name`.
inline std::vector<pid_t> FindProcesses(const std::string& name, const std::string& needle) {
  std::vector<pid_t> found;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string pid = entry.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    Result<std::string> cmdline = ReadFile(entry.path() / "cmdline");
    if (!cmdline.ok() || cmdline->find(needle) == std::string::npos) continue;
    const std::string program = cmdline->substr(0, cmdline->find('\0'));
    if (fs::path(program).filename() == name && Alive(std::stoi(pid))) found.push_back(std::stoi(pid));
  }
  return found;
}

class PretrainRunTest : public CoordinatorRunTest {
 protected:
  // bert-tiny without dropout (so that W = 1 and W = 2 compute the same
  // function), seq 64, G = 32.
  // train_extra, data_extra: more lines of the train and data sections ("  key: value\n").
  std::string WriteRun(const std::string& name, uint64_t micro_batch, uint64_t steps, uint64_t checkpoint_every = 0,
                       const std::string& train_extra = "", const std::string& data_extra = "") {
    const std::string model = work_ / "tiny-no-dropout.json";
    Result<std::string> tiny = ReadFile(std::string(BERT_SOURCE_DIR) + "/configs/models/bert-tiny.json");
    Json config = Json::parse(*tiny);
    config["hidden_dropout_prob"] = 0.0;
    config["attention_probs_dropout_prob"] = 0.0;
    WriteText(model, config.dump(2));
    const std::string path = work_ / (name + ".yaml");
    WriteText(path, "name: " + name + "\nrun_dir: " + (work_ / name) + "\nmodel: " + model + "\ndata:\n  db: " + Db() +
                        "\n  seed: " + std::to_string(kSeed) + "\n  max_seq_len: 64\n  max_predictions: 10\n" +
                        data_extra + "train:\n  global_batch_size: " + std::to_string(kGlobalBatch) + "\n  micro_batch_size: " +
                        std::to_string(micro_batch) + "\n  steps: " + std::to_string(steps) +
                        "\n  lr: 0.002\n  warmup_steps: 3\n" + train_extra + "log:\n  every_steps: 1\ncheckpoint:\n  every_steps: " +
                        std::to_string(checkpoint_every) + "\n  keep_last: 2\n");
    return path;
  }

  // A config of WriteRun with another global batch (e.g. 30 for 3 ranks).
  static void SetGlobalBatch(const std::string& config, uint64_t global_batch) {
    Result<std::string> yaml = ReadFile(config);
    ASSERT_TRUE(yaml.ok()) << yaml.status().message();
    const std::string from = "global_batch_size: " + std::to_string(kGlobalBatch);
    const size_t at = yaml->find(from);
    ASSERT_NE(at, std::string::npos) << *yaml;
    WriteText(config, yaml->replace(at, from.size(), "global_batch_size: " + std::to_string(global_batch)));
  }

  struct Run {
    std::unique_ptr<Subprocess> coordinator, workers;
  };

  // Logs go to NAME-coordinator.log and NAME-workers.log (appended: a
  // restarted run adds to them). coordinator_flags are added to the
  // coordinator's command line.
  Run Start(const std::string& name, const std::string& config, uint32_t world, std::vector<std::string> worker_flags,
            std::vector<std::string> coordinator_flags = {}) {
    Run run;
    std::error_code ignored;
    fs::remove(work_ / (name + "/coordinator/endpoint"), ignored);  // a restart must not read the old one
    fs::remove(work_ / (name + "/coordinator/http"), ignored);
    std::vector<std::string> coordinator_argv = {Coordinator(), "--config", config, "--world-size",
                                                 std::to_string(world), "--bind", "tcp://127.0.0.1:*",
                                                 "--heartbeat-interval-ms", "500"};
    // Defaults the test's own flags may replace.
    for (const auto& [flag, value] : {std::pair<const char*, const char*>{"--prefetch", "4"},
                                      std::pair<const char*, const char*>{"--heartbeat-timeout-ms", "3000"}}) {
      if (std::find(coordinator_flags.begin(), coordinator_flags.end(), flag) == coordinator_flags.end()) {
        coordinator_argv.insert(coordinator_argv.end(), {flag, value});
      }
    }
    coordinator_argv.insert(coordinator_argv.end(), coordinator_flags.begin(), coordinator_flags.end());
    run.coordinator = std::make_unique<Subprocess>(coordinator_argv, work_ / (name + "-coordinator.log"));
    std::vector<std::string> argv = {"/usr/bin/mpirun", "--allow-run-as-root", "-np", std::to_string(world),
                                     "--bind-to", "none"};
    if (world > std::thread::hardware_concurrency()) argv.push_back("--oversubscribe");  // more ranks than cores
    argv.insert(argv.end(), {Worker(), "--config", config});
    argv.insert(argv.end(), worker_flags.begin(), worker_flags.end());
    run.workers = std::make_unique<Subprocess>(argv, work_ / (name + "-workers.log"));
    return run;
  }

  // Runs to completion; returns the final parameters rank 0 saved.
  std::vector<float> Train(const std::string& name, uint32_t world, uint64_t micro_batch, uint64_t steps,
                           uint64_t checkpoint_every = 0) {
    return Finish(Start(name, WriteRun(name, micro_batch, steps, checkpoint_every), world, Flags(name)), name);
  }

  std::vector<std::string> Flags(const std::string& name) const {
    return {"--save-params", work_ / (name + ".params"), "--checksum-every", "5"};
  }

  // Waits for a run to complete; returns the final parameters rank 0 saved.
  std::vector<float> Finish(Run run, const std::string& name) {
    const std::string params = work_ / (name + ".params");
    const std::optional<int> workers = run.workers->Wait(180000);
    const std::optional<int> coordinator = run.coordinator->Wait(10000);
    EXPECT_EQ(workers, 0) << ReadLog(*run.workers);
    EXPECT_EQ(coordinator, 0) << ReadLog(*run.coordinator);
    return ReadFloats(params);
  }

  // The step of RUN/checkpoints/latest (0 when there is none yet).
  uint64_t LatestStep(const std::string& name) const {
    Result<std::string> latest = ReadFile(work_ / (name + "/checkpoints/latest"));
    if (!latest.ok() || latest->rfind("step-", 0) != 0) return 0;
    return std::stoull(latest->substr(5));
  }

  // The coordinator's status URL (RUN/coordinator/http), waiting up to
  // 60 s for it; "" if it did not appear.
  std::string StatusUrl(const std::string& name) const {
    std::string url;
    WaitFor(
        [&] {
          Result<std::string> text = ReadFile(work_ / (name + "/coordinator/http"));
          if (!text.ok() || text->empty() || text->back() != '\n') return false;
          url = text->substr(0, text->size() - 1);
          return true;
        },
        60000);
    return url;
  }

  // Ends a run that is still going: SIGTERM to the coordinator, which tells
  // the workers to abort; waits for both.
  void Stop(Run& run) {
    run.coordinator->Signal(SIGTERM);
    EXPECT_TRUE(run.coordinator->Wait(20000).has_value()) << ReadLog(*run.coordinator);
    EXPECT_TRUE(run.workers->Wait(20000).has_value()) << ReadLog(*run.workers);
  }

  std::vector<Json> Ledger(const std::string& name) const {
    CommandResult r = RunCommand(Coordinator() + " --dump-ledger " + (work_ / name) + " 2>/dev/null");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return JsonLines(r.output);
  }
};

}  // namespace bert::testing
