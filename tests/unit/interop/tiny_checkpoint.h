// A synthetic pretraining run for the interop tests: a tiny BERT's
// parameters under the names and in the order of worker/model/bert_heads.cc's
// BertForPreTrainingSpecs (rebuilt here: the tests cannot link the worker),
// written as a committed checkpoint with the checkpoint library.
#pragma once

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "common/file_util.h"
#include "common/run_config.h"
#include "datapipe/vocab.h"
#include "interop/safetensors.h"

namespace bert::testing {

// vocab 24, hidden 8, 2 layers, 2 heads, intermediate 16, 32 positions.
inline nlohmann::json TinyModelConfig() {
  return {{"architectures", {"BertForPreTraining"}}, {"model_type", "bert"}, {"vocab_size", 24},
          {"hidden_size", 8}, {"num_hidden_layers", 2}, {"num_attention_heads", 2}, {"intermediate_size", 16},
          {"max_position_embeddings", 32}, {"type_vocab_size", 2}, {"hidden_act", "gelu"},
          {"layer_norm_eps", 1e-12}};
}

inline std::vector<std::string> TinyVocab() {
  std::vector<std::string> tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (char c = 'a'; tokens.size() < 24; ++c) tokens.push_back(std::string(1, c));
  return tokens;
}

// BertForPreTrainingSpecs' names and shapes, in its order.
inline std::vector<std::pair<std::string, std::vector<int64_t>>> TinyPretrainingLayout() {
  const int64_t v = 24, h = 8, inter = 16, p = 32;
  std::vector<std::pair<std::string, std::vector<int64_t>>> layout = {
      {"bert.embeddings.word_embeddings.weight", {v, h}},
      {"bert.embeddings.position_embeddings.weight", {p, h}},
      {"bert.embeddings.token_type_embeddings.weight", {2, h}},
      {"bert.embeddings.LayerNorm.weight", {h}},
      {"bert.embeddings.LayerNorm.bias", {h}}};
  for (int i = 0; i < 2; ++i) {
    const std::string layer = "bert.encoder.layer." + std::to_string(i) + ".";
    for (const char* part : {"query", "key", "value"}) layout.push_back({layer + "attention.self." + part + ".weight", {h, h}});
    for (const char* part : {"query", "key", "value"}) layout.push_back({layer + "attention.self." + part + ".bias", {h}});
    layout.push_back({layer + "attention.output.dense.weight", {h, h}});
    layout.push_back({layer + "attention.output.dense.bias", {h}});
    layout.push_back({layer + "attention.output.LayerNorm.weight", {h}});
    layout.push_back({layer + "attention.output.LayerNorm.bias", {h}});
    layout.push_back({layer + "intermediate.dense.weight", {inter, h}});
    layout.push_back({layer + "intermediate.dense.bias", {inter}});
    layout.push_back({layer + "output.dense.weight", {h, inter}});
    layout.push_back({layer + "output.dense.bias", {h}});
    layout.push_back({layer + "output.LayerNorm.weight", {h}});
    layout.push_back({layer + "output.LayerNorm.bias", {h}});
  }
  const std::vector<std::pair<std::string, std::vector<int64_t>>> tail = {
      {"bert.pooler.dense.weight", {h, h}},
      {"bert.pooler.dense.bias", {h}},
      {"cls.predictions.bias", {v}},
      {"cls.predictions.transform.dense.weight", {h, h}},
      {"cls.predictions.transform.dense.bias", {h}},
      {"cls.predictions.transform.LayerNorm.weight", {h}},
      {"cls.predictions.transform.LayerNorm.bias", {h}},
      {"cls.seq_relationship.weight", {2, h}},
      {"cls.seq_relationship.bias", {2}}};
  layout.insert(layout.end(), tail.begin(), tail.end());
  return layout;
}

// Distinct, reproducible bit patterns (negative zero and subnormals included).
inline std::vector<NamedTensor> TinyTensors(uint32_t seed) {
  std::vector<NamedTensor> tensors;
  uint32_t state = seed;
  for (const auto& [name, shape] : TinyPretrainingLayout()) {
    NamedTensor tensor{name, shape, {}};
    size_t numel = 1;
    for (int64_t dim : shape) numel *= static_cast<size_t>(dim);
    for (size_t i = 0; i < numel; ++i) {
      state = state * 1664525u + 1013904223u;
      float value;
      uint32_t bits = (state & 0x807fffffu) | (((state >> 23) % 16 + 116) << 23);  // |x| in ~[2^-11, 2^4)
      if (i == 1) bits = 0x80000000u;                                              // -0
      if (i == 2) bits = 0x00000003u;                                              // subnormal
      std::memcpy(&value, &bits, 4);
      tensor.values.push_back(value);
    }
    tensors.push_back(std::move(tensor));
  }
  return tensors;
}

struct TinyRun {
  std::string run_dir;                // RUN_DIR (checkpoints/ under it)
  std::string checkpoint_dir;         // RUN_DIR/checkpoints/step-NNNNNN
  std::string vocab_path;             // the run's vocab.txt
  std::string model_path;             // the run's config.json
  std::vector<NamedTensor> tensors;   // the "params" section, by tensor
};

struct TinyRunOptions {
  uint32_t world_size = 2;             // shards
  uint64_t step = 10;
  bool record_model_config = true;     // manifest.model_config (false: an older checkpoint)
  std::string vocab_checksum;          // "" = the vocabulary's own
  uint32_t seed = 7;
};

// Writes RUN_DIR with its config.json, vocab.txt and a committed checkpoint.
// Fails the calling test (ADD_FAILURE) and returns what it has on errors.
inline TinyRun WriteTinyRun(const std::string& run_dir, const TinyRunOptions& options = {}) {
  TinyRun run;
  run.run_dir = run_dir;
  run.tensors = TinyTensors(options.seed);
  std::filesystem::create_directories(run_dir);
  run.model_path = run_dir + "/config.json";
  run.vocab_path = run_dir + "/vocab.txt";
  std::string vocab_text;
  for (const std::string& token : TinyVocab()) vocab_text += token + "\n";
  if (!WriteFileAtomic(run.vocab_path, vocab_text).ok() ||
      !WriteFileAtomic(run.model_path, TinyModelConfig().dump(2)).ok()) {
    ADD_FAILURE() << "cannot write " << run_dir;
    return run;
  }
  RunConfig config;
  config.name = "tiny";
  config.run_dir = run_dir;
  config.model = run.model_path;
  config.vocab = run.vocab_path;
  config.data.db = {run_dir + "/corpus"};

  std::vector<float> params, zeros;
  Manifest manifest;
  manifest.run_id = "tiny";
  manifest.step = manifest.data_cursor = options.step;
  manifest.world_size = options.world_size;
  manifest.sections = {"params", "exp_avg", "exp_avg_sq"};
  for (const NamedTensor& tensor : run.tensors) {
    manifest.layout.push_back(TensorLayout{tensor.name, "float32", tensor.shape, params.size()});
    params.insert(params.end(), tensor.values.begin(), tensor.values.end());
  }
  manifest.total_elements = params.size();
  zeros.assign(params.size(), 0.0f);
  manifest.optimizer = {{"kind", "adamw"}, {"step", options.step}};
  manifest.scheduler = nlohmann::json::object();
  manifest.rng = {{"init_seed", 42}};
  manifest.config_yaml = config.ToYaml();
  if (options.record_model_config) manifest.model_config = TinyModelConfig();
  manifest.vocab_checksum = options.vocab_checksum;
  if (manifest.vocab_checksum.empty()) manifest.vocab_checksum = (*Vocab::FromTokens(TinyVocab()))->checksum();
  manifest.created_at = "2024-01-02T03:04:05Z";

  CheckpointStore store(run_dir);
  Result<std::string> staging = store.Staging(options.step);
  if (!staging.ok()) {
    ADD_FAILURE() << staging.status().ToString();
    return run;
  }
  for (const ShardRange& range : ShardRanges(params.size(), options.world_size)) {
    ShardWriteRequest request;
    request.path = *staging + "/" + ShardFileName(range.rank, options.world_size);
    request.rank = range.rank;
    request.world_size = options.world_size;
    request.begin = range.begin;
    request.end = range.end;
    request.section_names = manifest.sections;
    request.section_data = {params.data() + range.begin, zeros.data() + range.begin, zeros.data() + range.begin};
    ShardInfo info;
    Status written = WriteShard(request, &info);
    if (!written.ok()) ADD_FAILURE() << written.ToString();
    manifest.shards.push_back(info);
  }
  Status committed = store.Commit(manifest);
  if (!committed.ok()) ADD_FAILURE() << committed.ToString();
  run.checkpoint_dir = store.dir() + "/" + CheckpointStore::StepName(options.step);
  return run;
}

// Bitwise equality of two tensor lists (names, shapes, every value's bits).
inline ::testing::AssertionResult SameTensors(const std::vector<NamedTensor>& a, const std::vector<NamedTensor>& b) {
  if (a.size() != b.size()) {
    return ::testing::AssertionFailure() << a.size() << " tensors vs " << b.size();
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name) return ::testing::AssertionFailure() << "tensor " << i << ": " << a[i].name << " vs " << b[i].name;
    if (a[i].shape != b[i].shape) return ::testing::AssertionFailure() << a[i].name << ": shapes differ";
    if (a[i].values.size() != b[i].values.size() ||
        std::memcmp(a[i].values.data(), b[i].values.data(), 4 * a[i].values.size()) != 0) {
      return ::testing::AssertionFailure() << a[i].name << ": values differ";
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace bert::testing
