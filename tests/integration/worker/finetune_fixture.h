// The labelled fixture of the fine-tuning tests (tests/fixtures/classification/:
// 360 short Debian `fortunes` entries of three topics, 240 train / 60 dev /
// 60 test) and what the tests build on it: resolved configs (what bertctl
// finetune writes), bert-tiny model configs, JSON readers.
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "finetune/finetune_config.h"
#include "test_util.h"

namespace bert {

inline std::string Fixture(const std::string& split) {
  return std::string(BERT_FIXTURE_DIR) + "/classification/fortunes_" + split + ".jsonl";
}
inline std::string Worker() { return std::string(BERT_BIN_DIR) + "/bert-worker"; }

// A resolved finetune.yaml (what bertctl finetune writes) for the fixture.
inline finetune::FinetuneConfig FortunesConfig(const std::string& output, const std::string& model) {
  finetune::FinetuneConfig config;
  config.init = "none";
  config.model = model;
  config.vocab = testing::UncasedVocab();
  config.output = output;
  config.train_file = Fixture("train");
  config.dev_file = Fixture("dev");
  config.test_file = Fixture("test");
  config.labels = {"computers", "food", "love"};
  config.max_seq_len = 48;
  config.batch_size = 16;
  config.lr = 1e-3;
  config.intra_op_threads = 1;
  return config;
}

// Writes `config` to DIR/finetune.yaml and returns the path.
inline std::string WriteConfig(const testing::TempDir& dir, const std::string& name,
                               const finetune::FinetuneConfig& config) {
  const std::string path = dir / name;
  testing::WriteText(path, finetune::FinetuneConfigToYaml(config));
  return path;
}

// bert-tiny's shape with the given dropout, written under `dir`.
inline std::string TinyModel(const testing::TempDir& dir, double dropout) {
  nlohmann::json json =
      nlohmann::json::parse(*ReadFile(std::string(BERT_SOURCE_DIR) + "/configs/models/bert-tiny.json"));
  json["hidden_dropout_prob"] = dropout;
  json["attention_probs_dropout_prob"] = dropout;
  const std::string path = dir / ("tiny-dropout-" + std::to_string(dropout) + ".json");
  testing::WriteText(path, json.dump());
  return path;
}

inline nlohmann::json ReadJson(const std::string& path) {
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return nlohmann::json();
  return nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
}

inline std::vector<nlohmann::json> ReadJsonLines(const std::string& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

}  // namespace bert
