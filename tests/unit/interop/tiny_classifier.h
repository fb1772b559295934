// A tiny BertForSequenceClassification (vocab 24, hidden 8, 2 layers, 2
// heads, 3 labels) with deterministic weights, and its int8 form per the
// bert-int8 format (interop/int8_model.h), for the ONNX export tests.
#pragma once

#include <glog/logging.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "interop/int8_model.h"
#include "interop/onnx_export.h"
#include "interop/pretrained.h"
#include "unit/interop/tiny_checkpoint.h"

namespace bert::testing {

inline nlohmann::json TinyClassifierConfig() {
  nlohmann::json config = TinyModelConfig();
  config["architectures"] = {"BertForSequenceClassification"};
  config["id2label"] = {{"0", "red"}, {"1", "green"}, {"2", "blue"}};
  config["label2id"] = {{"red", 0}, {"green", 1}, {"blue", 2}};
  config["num_labels"] = 3;
  return config;
}

// Every encoder, pooler and classifier tensor, values a smooth function of the index.
inline std::vector<NamedTensor> TinyClassifierTensors() {
  Result<BertShapes> shapes = BertShapesFromConfig(TinyClassifierConfig(), "tiny");
  std::vector<NamedTensor> tensors;
  int salt = 0;
  for (const auto& [name, shape] : ExpectedTensorShapes(*shapes)) {
    if (name.rfind("cls.", 0) == 0) continue;
    NamedTensor tensor;
    tensor.name = name;
    tensor.shape = shape;
    size_t numel = 1;
    for (int64_t d : shape) numel *= static_cast<size_t>(d);
    ++salt;
    for (size_t i = 0; i < numel; ++i) tensor.values.push_back(1.2f * std::sin(0.7f * i + salt));
    tensors.push_back(std::move(tensor));
  }
  return tensors;
}

// The same model in the int8 format: symmetric per-row weights; for
// kInt8Static a fixed input scale 0.05 and zero point 128 per Linear.
inline std::vector<NamedTensor> TinyInt8Tensors(LinearQuantization quantization) {
  Result<BertShapes> shapes = BertShapesFromConfig(TinyClassifierConfig(), "tiny");
  const std::vector<std::string> prefixes = QuantizedLinearPrefixes(*shapes);
  std::vector<NamedTensor> out;
  for (NamedTensor tensor : TinyClassifierTensors()) {
    bool linear_weight = false;
    for (const std::string& p : prefixes) linear_weight |= tensor.name == p + ".weight";
    if (!linear_weight) {
      out.push_back(std::move(tensor));
      continue;
    }
    const std::string prefix = tensor.name.substr(0, tensor.name.size() - std::string(".weight").size());
    const int64_t rows = tensor.shape[0], cols = tensor.shape[1];
    NamedTensor scale{prefix + ".weight_scale", {rows}, {}, "F32"};
    for (int64_t r = 0; r < rows; ++r) {
      float absmax = 0;
      for (int64_t c = 0; c < cols; ++c) absmax = std::max(absmax, std::abs(tensor.values[r * cols + c]));
      const float s = absmax > 0 ? absmax / 127 : 1;
      scale.values.push_back(s);
      for (int64_t c = 0; c < cols; ++c) tensor.values[r * cols + c] = std::nearbyint(tensor.values[r * cols + c] / s);
    }
    tensor.dtype = "I8";
    out.push_back(std::move(tensor));
    out.push_back(std::move(scale));
    if (quantization == LinearQuantization::kInt8Static) {
      out.push_back(NamedTensor{prefix + ".input_scale", {1}, {0.05f}, "F32"});
      out.push_back(NamedTensor{prefix + ".input_zero_point", {1}, {128}, "U8"});
    }
  }
  return out;
}

// An int8 directory at `dir` of the tiny model.
inline void WriteTinyInt8Dir(const std::string& dir, LinearQuantization quantization,
                             const std::vector<NamedTensor>& tensors) {
  std::filesystem::create_directories(dir);
  nlohmann::json config = TinyClassifierConfig();
  config["quantization"] = {{"format", "bert-int8"}, {"version", 1}, {"weights", "int8 symmetric per output channel"},
                            {"activations", quantization == LinearQuantization::kInt8Static ? "static" : "dynamic"}};
  CHECK(WriteFileAtomic(dir + "/config.json", config.dump(2)).ok());
  CHECK(WriteSafetensors(dir + "/model.int8.safetensors", tensors, {{"bert_format", "bert-int8"}, {"version", "1"}})
            .ok());
  std::string vocab;
  for (const std::string& token : TinyVocab()) vocab += token + "\n";
  CHECK(WriteFileAtomic(dir + "/vocab.txt", vocab).ok());
  CHECK(WriteFileAtomic(dir + "/tokenizer_config.json",
                        "{\"do_lower_case\": true, \"model_max_length\": 32, \"tokenizer_class\": \"BertTokenizer\"}")
            .ok());
}

// The fp32 tiny classifier as an HF directory (what bertctl finetune writes).
inline void WriteTinyClassifierHfDir(const std::string& dir, const std::string& hidden_act = "gelu") {
  PretrainedModel model;
  model.config = TinyClassifierConfig();
  model.config["hidden_act"] = hidden_act;
  model.vocab = TinyVocab();
  model.model_max_length = 32;
  model.tensors = TinyClassifierTensors();
  const Status written = WriteHfDirectory(dir, model);
  CHECK(written.ok()) << written.ToString();
}

}  // namespace bert::testing
