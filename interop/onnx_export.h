// ONNX export of a fine-tuned BERT sequence classifier (bertctl export
// --format onnx), fp32 or int8, without LibTorch: the ModelProto is written
// with our own copy of ONNX's schema subset (interop/onnx_subset.proto).
//
// The graph (opset 17, IR version 8, default domain only):
//   inputs   input_ids, attention_mask, token_type_ids: int64 [batch, sequence]
//            (both axes symbolic: dim_param "batch" and "sequence";
//            sequence <= max_position_embeddings; attention_mask 1 = token, 0 = padding)
//   outputs  logits: float [batch, num_labels]
//            probabilities: float [batch, num_labels] (softmax of logits)
// and computes HF's BertForSequenceClassification in eval mode
// (transformers' modeling_bert.py, post-LayerNorm): word + position +
// token-type embeddings, LayerNormalization(layer_norm_eps); per layer
// self-attention with the additive mask (1 - attention_mask) * float_min,
// softmax(q k^T / sqrt(head_dim)), output dense + residual + LayerNorm,
// intermediate dense + hidden_act ("gelu": the erf form; "gelu_new",
// "gelu_pytorch_tanh": the tanh form; "relu"), output dense + residual +
// LayerNorm; the pooler tanh(dense([CLS])); the classifier on the pooled output.
//
// Linear layers: fp32 MatMul with W^T stored as [in, out], then Add bias.
// int8 (interop/int8_model.h): DynamicQuantizeLinear of the activation
// (uint8, per tensor; "static": QuantizeLinear with the stored input scale
// and zero point), MatMulInteger with the int8 weight as [in, out] and zero
// point 0, Cast to float, Mul by activation scale * weight_scale[out], Add bias.
// Embeddings, LayerNorms and the attention products stay fp32.
//
// Thread-safe (no shared state). Errors are one line naming `source` and the
// config key or tensor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "interop/safetensors.h"

namespace bert {

constexpr int64_t kOnnxOpset = 17;
constexpr int64_t kOnnxIrVersion = 8;
constexpr char kOnnxModelFile[] = "model.onnx";

// How the Linear layers (attention query/key/value/output, intermediate,
// output, pooler, classifier) are stored and exported.
enum class LinearQuantization {
  kNone,         // fp32 X.weight [out, in]
  kInt8Dynamic,  // I8 X.weight, F32 X.weight_scale [out]; activation scale per batch
  kInt8Static,   // the same plus F32 X.input_scale [1], U8 X.input_zero_point [1]
};

struct OnnxClassifierSource {
  nlohmann::json config;             // HF BertConfig of a BertForSequenceClassification (id2label)
  std::vector<NamedTensor> tensors;  // HF names ("bert.*", "classifier.*"); other heads ignored
  LinearQuantization quantization = LinearQuantization::kNone;
};

struct OnnxModelStats {
  int64_t num_nodes = 0;
  int64_t num_initializers = 0;
  uint64_t bytes = 0;  // the serialized ModelProto
};

// The serialized ModelProto. Refuses (InvalidArgument) what the graph cannot
// express faithfully: a model that is not a BertForSequenceClassification
// (no classifier.*), pre-LayerNorm, a position_embedding_type other than
// "absolute", an unsupported hidden_act, missing or misshaped tensors, and
// for int8 the checks of CheckInt8Tensors; a model over protobuf's 2 GiB.
Result<std::string> BuildOnnxClassifier(const OnnxClassifierSource& model, const std::string& source,
                                        OnnxModelStats* stats = nullptr);

// Writes DIR/model.onnx (`model_bytes`) and copies config.json, vocab.txt
// and tokenizer_config.json from `source_dir`, each atomically (temp file,
// fsync, rename, fsync the directory); config.json last, so a directory
// without it is an unfinished export. Creates DIR.
Status WriteOnnxDirectory(const std::string& dir, const std::string& model_bytes, const std::string& source_dir);

}  // namespace bert
