// The int8 model directory ("bert-int8", version 1; docs/compression.md),
// written by `bertctl quantize` and read by eval, predict and the ONNX
// exporter:
//   config.json             the fp32 classifier's config.json plus
//                           "quantization": {"format": "bert-int8", "version": 1,
//                             "weights": "int8 symmetric per output channel",
//                             "activations": "dynamic" | "static",
//                             "calibration": {"file": ..., "examples": N} (static only)}
//   model.int8.safetensors  HF names. Per Linear X (int8_model.h's ClassifierLinearNames):
//                             X.weight I8 [out, in] in [-127, 127], X.weight_scale F32 [out] (> 0),
//                             X.bias F32 [out]; static only: X.input_scale F32 [1] (> 0),
//                             X.input_zero_point U8 [1]. Every other tensor F32 as in model.safetensors.
//                           __metadata__ {"format": "pt", "bert_format": "bert-int8", "version": "1"}
//   vocab.txt, tokenizer_config.json   copied from the fp32 directory
// There is no model.safetensors. LoadInt8Classifier checks all of it and
// fails with one line naming the file and the key or tensor.
// WriteInt8Directory builds the directory under a temporary sibling name and
// renames it into place, so OUTPUT exists only when complete.
#pragma once

#include "worker/torch.h"

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "datapipe/tokenizer.h"
#include "datapipe/vocab.h"
#include "interop/safetensors.h"
#include "worker/compress/int8_model.h"

namespace bert {

constexpr char kInt8FormatName[] = "bert-int8";
constexpr int kInt8FormatVersion = 1;
constexpr char kInt8WeightsFile[] = "model.int8.safetensors";

// Whether `dir` holds an int8 model rather than an fp32 one: its config.json
// has a "quantization" key, or it has model.int8.safetensors and no
// model.safetensors. (LoadInt8Classifier then says what is wrong with it.)
bool IsInt8ModelDirectory(const std::string& dir);

struct Int8Classifier {
  std::unique_ptr<Int8BertClassifier> model;
  std::shared_ptr<const Vocab> vocab;
  std::unique_ptr<FullTokenizer> tokenizer;
  std::vector<std::string> labels;  // id order (id2label)
  int64_t model_max_length = 512;   // tokenizer_config's, at most max_position_embeddings
  std::string activations;          // "dynamic" or "static"
};

// Reads and validates an int8 directory (see above); selects the quantized engine.
Result<Int8Classifier> LoadInt8Classifier(const std::string& dir);

struct Int8DirectoryContents {
  nlohmann::json config;             // config.json, "quantization" included
  std::vector<NamedTensor> tensors;  // model.int8.safetensors, in this order
  std::string source_dir;            // vocab.txt and tokenizer_config.json are copied from here
};
// Writes the directory at `output` (absent, empty, or replaced when
// `overwrite`; the caller has refused other cases).
Status WriteInt8Directory(const std::string& output, const Int8DirectoryContents& contents, bool overwrite);

}  // namespace bert
