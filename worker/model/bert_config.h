// BertConfig: the architecture hyper-parameters of a BERT model, read from a
// HuggingFace `config.json` (same keys, same meaning, same defaults), so that
// importing and exporting HF checkpoints is a rename-free copy (DESIGN.md).
//
// Loading validates every known key's type and range and fails with
// InvalidArgument naming the file and the key, e.g.
//   "configs/models/x.json: hidden_size: must be divisible by num_attention_heads (12), got 100".
// The five shape keys (vocab_size, hidden_size, num_hidden_layers,
// num_attention_heads, intermediate_size) are required; the others default
// to HF's BertConfig defaults. Keys HF writes that do not change the
// architecture (architectures, model_type, pad_token_id, transformers_version,
// id2label, ...) are accepted and ignored; any other key is logged as a
// warning, not an error, so that newer HF files still load.
//
// configs/models/ holds BERT-Tiny/Mini/Small/Medium (Turc et al. 2019,
// "Well-Read Students Learn Better") and BERT-Base/Large (Devlin et al. 2019).
// A value type; all functions are pure and thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "interop/pretrained.h"  // kPreLnModelType

namespace bert {

struct BertConfig {
  int64_t vocab_size = 30522;             // rows of the word embedding and the MLM decoder
  int64_t hidden_size = 768;              // H: width of every token representation
  int64_t num_hidden_layers = 12;         // L: encoder layers
  int64_t num_attention_heads = 12;       // A: heads per layer; hidden_size % A == 0
  int64_t intermediate_size = 3072;       // width of the feed-forward block (4H in the paper)
  std::string hidden_act = "gelu";        // "gelu" (erf, HF default), "gelu_new"/"gelu_pytorch_tanh" (tanh approx.) or "relu"
  double hidden_dropout_prob = 0.1;       // dropout on embeddings and on each sub-layer output
  double attention_probs_dropout_prob = 0.1;  // dropout on the attention probabilities
  int64_t max_position_embeddings = 512;  // longest sequence the position table covers
  int64_t type_vocab_size = 2;            // token types (segments A and B)
  double initializer_range = 0.02;        // std of the normal init of weights
  double layer_norm_eps = 1e-12;          // epsilon of every LayerNorm
  int64_t num_labels = 2;                 // classes of BertForSequenceClassification (HF: num_labels or len(id2label))
  double classifier_dropout = -1;         // dropout before the classifier; < 0 means hidden_dropout_prob (HF: null)
  // Pre-LayerNorm layers (Xiong et al. 2020; Cramming): x + f(LN(x)) for
  // attention and feed-forward, and one more LayerNorm after the last layer
  // (bert.encoder.final_layer_norm). Not HF BERT: its config.json says
  // "pre_layer_norm": true and model_type "bert-pre-ln", which transformers
  // refuses instead of loading it as post-LN, and bertctl export refuses it.
  bool pre_layer_norm = false;
  // Heads removed from each layer (bertctl prune; config.json "pruned_heads",
  // interop/pretrained.h BertShapes): layer l keeps heads_in_layer(l) heads
  // of head_size() each, so its query/key/value are [heads * head_size, H].
  std::map<int64_t, std::vector<int64_t>> pruned_heads;

  int64_t head_size() const { return hidden_size / num_attention_heads; }
  int64_t heads_in_layer(int64_t layer) const {
    auto it = pruned_heads.find(layer);
    return num_attention_heads - (it == pruned_heads.end() ? 0 : static_cast<int64_t>(it->second.size()));
  }
  // Width of layer l's attention (query, key, value, context): H unless pruned.
  int64_t attention_size(int64_t layer) const { return heads_in_layer(layer) * head_size(); }
  double effective_classifier_dropout() const {
    return classifier_dropout < 0 ? hidden_dropout_prob : classifier_dropout;
  }

  // Checks ranges and cross-key constraints; `source` prefixes the message
  // (a file name, or "config").
  Status Validate(const std::string& source = "config") const;
  // HF config.json object: the keys above plus model_type and architectures.
  nlohmann::json ToJson() const;
};

// Parses an HF config object. `source` names it in error messages.
Result<BertConfig> BertConfigFromJson(const nlohmann::json& json, const std::string& source);
// Reads and parses a config.json file; errors name the path.
Result<BertConfig> LoadBertConfig(const std::string& path);

}  // namespace bert
