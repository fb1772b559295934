// The int8 model directory (`bertctl quantize` writes it; the format is
// fixed, version 1):
//   config.json             the fp32 config.json (id2label, ...) plus
//                           "quantization": {"format": "bert-int8", "version": 1,
//                             "weights": "int8 symmetric per output channel",
//                             "activations": "dynamic" | "static", ...}
//   model.int8.safetensors  HF names. Per Linear X (QuantizedLinearPrefixes):
//                             X.weight        I8  [out, in]  (w ~= weight * weight_scale[row], zero point 0)
//                             X.weight_scale  F32 [out]      (positive, finite)
//                             X.bias          F32 [out]
//                           "static" only, per Linear:
//                             X.input_scale       F32 [1]    (positive, finite)
//                             X.input_zero_point  U8  [1]
//                           every other tensor (embeddings, LayerNorms) F32.
//                           __metadata__ {"format": "pt", "bert_format": "bert-int8", "version": "1"}
//   vocab.txt, tokenizer_config.json
// Read without LibTorch; errors are one line naming the file and the key or tensor.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "interop/onnx_export.h"
#include "interop/pretrained.h"

namespace bert {

constexpr char kInt8Format[] = "bert-int8";
constexpr int kInt8Version = 1;
constexpr char kInt8WeightsFile[] = "model.int8.safetensors";
constexpr char kInt8WeightsScheme[] = "int8 symmetric per output channel";

// True when DIR/config.json has a "quantization" key or DIR holds
// model.int8.safetensors: DIR is meant as an int8 directory (and is then
// checked in full by LoadInt8Directory).
bool LooksLikeInt8Directory(const std::string& dir);

// The prefixes of the quantized Linear layers of a classifier of `shapes`:
// "bert.encoder.layer.N.attention.self.{query,key,value}",
// "...attention.output.dense", "...intermediate.dense", "...output.dense",
// "bert.pooler.dense", "classifier".
std::vector<std::string> QuantizedLinearPrefixes(const BertShapes& shapes);

// Checks `tensors` against the format for `config` and `quantization`
// (kInt8Dynamic or kInt8Static): every Linear's weight I8 [out, in],
// weight_scale F32 [out] (finite, >= 0) and bias F32 [out], the static
// input_scale (finite, > 0) and input_zero_point, every other tensor F32 of
// its config shape, no unknown names. Errors name `source` and the tensor.
Status CheckInt8Tensors(const nlohmann::json& config, const std::vector<NamedTensor>& tensors,
                        LinearQuantization quantization, const std::string& source);

// Reads and checks an int8 directory: config.json's quantization block
// (format, version, weights, activations), the safetensors metadata, the
// tensors (CheckInt8Tensors), vocab.txt against vocab_size.
Result<OnnxClassifierSource> LoadInt8Directory(const std::string& dir);

}  // namespace bert
