// BertModel: the BERT encoder of Devlin et al. 2019 ("BERT: Pre-training of
// Deep Bidirectional Transformers for Language Understanding"), numerically
// as HuggingFace's BertModel: embeddings (word + position + token type,
// LayerNorm, dropout), L post-LN Transformer layers (multi-head
// self-attention with a key padding mask from lengths, GELU feed-forward,
// residuals), and the pooler (dense + tanh on [CLS]). With
// BertConfig::pre_layer_norm the layers are pre-LN instead, with a final
// LayerNorm after the last (no HF equivalent).
//
// Parameters are HF-named views into a FlatParameters that the owning head
// model holds (bert_heads.h); BertModel itself owns no storage. Layout order
// is HF's named_parameters() order, except that within a layer the query,
// key and value weights come first, back to back, then their three biases,
// so that the fused [3H, H] projection is one view (one GEMM).
//
// Activations are kept flat, [B*T, H], so every projection is a plain GEMM.
// Forward is const and thread-compatible; training mode draws dropout masks
// from the DropoutRng passed in.
#pragma once

#include <string>
#include <vector>

#include "worker/torch.h"

#include "worker/model/attention.h"
#include "worker/model/bert_config.h"
#include "worker/model/flat_ops.h"
#include "worker/model/flat_parameters.h"

namespace bert {

// How a forward pass runs: dropout on (training) or off; activation
// checkpointing (training only): each encoder layer keeps only its input,
// and its activations are recomputed in the backward pass with the same
// dropout masks (the DropoutRng counter, and on a GPU the device
// generator's state, are replayed), so the loss and gradients are those of
// the plain pass, for about one more forward pass of compute.
struct ForwardMode {
  bool training = false;
  DropoutRng* rng = nullptr;  // required when training with dropout > 0
  bool checkpoint_layers = false;
};

namespace detail {
class CheckpointedLayer;
}

// Appends the specs of BertModel's parameters, named `prefix` + HF name
// ("bert." in the head models), in layout order.
void AppendBertModelSpecs(const BertConfig& config, const std::string& prefix, std::vector<ParameterSpec>* specs);

// Applies config.hidden_act.
torch::Tensor Activation(const std::string& hidden_act, const torch::Tensor& x);
// hidden_act(x W^T + b); the fused kernel for "gelu".
torch::Tensor LinearActivation(const std::string& hidden_act, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias);

class BertModel {
 public:
  // Finds its parameters (prefix + HF names) in `params`; CHECKs they exist.
  BertModel(const BertConfig& config, const FlatParameters& params, const std::string& prefix);

  struct Output {
    torch::Tensor sequence;  // [B*T, H], final hidden states, row-major (b, t)
    torch::Tensor pooled;    // [B, H], tanh(W h_[CLS] + b)
  };
  // input_ids, token_type_ids [B, T] int64; lengths [B] int64 in [1, T].
  Output Forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids, const torch::Tensor& lengths,
                 const ForwardMode& mode) const;

 private:
  friend class detail::CheckpointedLayer;
  struct Layer {
    int64_t num_heads = 0;               // BertConfig::heads_in_layer (fewer when pruned)
    torch::Tensor qkv_weight, qkv_bias;  // [3A, H], [3A] (A = heads * head size): spans over query, key, value
    torch::Tensor attention_output_weight, attention_output_bias;
    torch::Tensor attention_norm_weight, attention_norm_bias;
    torch::Tensor intermediate_weight, intermediate_bias;
    torch::Tensor output_weight, output_bias;
    torch::Tensor output_norm_weight, output_norm_bias;
  };
  torch::Tensor Embed(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                      const ForwardMode& mode) const;
  torch::Tensor LayerForward(const Layer& layer, const torch::Tensor& x, const AttentionMask& mask,
                             const ForwardMode& mode) const;
  double Dropped(double p, const ForwardMode& mode) const { return mode.training ? p : 0.0; }

  BertConfig config_;
  torch::Tensor word_embeddings_, position_embeddings_, token_type_embeddings_;
  torch::Tensor embedding_norm_weight_, embedding_norm_bias_;
  std::vector<Layer> layers_;
  torch::Tensor final_norm_weight_, final_norm_bias_;  // pre_layer_norm only
  torch::Tensor pooler_weight_, pooler_bias_;
};

}  // namespace bert
