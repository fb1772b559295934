// Int8BertClassifier: BertForSequenceClassification (bert_heads.h) with its
// Linears on int8 GEMMs (quantized_linear.h): attention query/key/value
// (one fused [3H, H] Linear when their static inputs agree, as they do when
// calibrated: they read the same tensor), attention output, intermediate,
// output, pooler and classifier. Embeddings, LayerNorm, softmax, GELU and
// tanh stay fp32. The graph is BertModel::Forward's (post-LN, or pre-LN
// with BertConfig::pre_layer_norm), in evaluation mode (no dropout).
//
// The same class also runs the graph with fp32 Linears (FromFloat), with a
// RangeObserver per Linear input: calibration for static quantization, and
// the check that this graph is BertModel's.
//
// Thread-compatible when no observers are attached.
#pragma once

#include "worker/torch.h"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/compress/quantized_linear.h"
#include "worker/model/attention.h"
#include "worker/model/bert_config.h"

namespace bert {

// The HF names (without ".weight") of every Linear of a sequence
// classifier of `config`, in layout order: per layer query, key, value,
// attention.output.dense, intermediate.dense, output.dense; then
// bert.pooler.dense and classifier.
std::vector<std::string> ClassifierLinearNames(const BertConfig& config);

// What each Linear's input was quantized with (static) or nothing (dynamic).
using InputQuantMap = std::map<std::string, ActivationQuant>;

class Int8BertClassifier {
 public:
  // fp32 tensors by HF name (BertForSequenceClassificationSpecs' names and
  // shapes; CHECKed), Linears in fp32. With `observers`, each Linear's input
  // range is recorded there under its name (query/key/value share theirs).
  static std::unique_ptr<Int8BertClassifier> FromFloat(const BertConfig& config,
                                                       const std::map<std::string, torch::Tensor>& tensors,
                                                       std::map<std::string, RangeObserver>* observers = nullptr);
  // Non-Linear tensors fp32 by name, the Linears' int8 weights and scales
  // (by Linear name) and fp32 biases (NAME.bias in `tensors`); `inputs`
  // empty (dynamic) or holding every Linear (static). CHECKed: the loader
  // (int8_format.h) validates files first.
  static std::unique_ptr<Int8BertClassifier> FromInt8(const BertConfig& config,
                                                      const std::map<std::string, torch::Tensor>& tensors,
                                                      const std::map<std::string, Int8Weight>& weights,
                                                      const InputQuantMap& inputs);

  // input_ids, token_type_ids [B, T] int64, lengths [B] int64 in [1, T] -> logits [B, num_labels] fp32.
  torch::Tensor Forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                        const torch::Tensor& lengths) const;

  const BertConfig& config() const { return config_; }
  bool is_static() const { return is_static_; }

 private:
  // One Linear: fp32 (weight, bias, optional observer) or int8.
  struct Linear {
    torch::Tensor weight, bias;  // fp32 mode
    RangeObserver* observer = nullptr;
    std::optional<QuantizedLinear> int8;
    torch::Tensor operator()(const torch::Tensor& x) const;
  };
  struct Layer {
    int64_t num_heads = 0;    // BertConfig::heads_in_layer (fewer in a pruned model)
    std::vector<Linear> qkv;  // one fused [3A, H] Linear (A = heads * head size), or query, key, value
    Linear attention_output, intermediate, output;
    torch::Tensor attention_norm_weight, attention_norm_bias, output_norm_weight, output_norm_bias;
  };
  explicit Int8BertClassifier(const BertConfig& config) : config_(config) {}
  void SetNonLinear(const std::map<std::string, torch::Tensor>& tensors);
  torch::Tensor LayerForward(const Layer& layer, const torch::Tensor& x, const AttentionMask& mask) const;

  BertConfig config_;
  bool is_static_ = false;
  torch::Tensor word_embeddings_, position_embeddings_, token_type_embeddings_;
  torch::Tensor embedding_norm_weight_, embedding_norm_bias_;
  std::vector<Layer> layers_;
  torch::Tensor final_norm_weight_, final_norm_bias_;  // pre_layer_norm only
  Linear pooler_, classifier_;
};

}  // namespace bert
