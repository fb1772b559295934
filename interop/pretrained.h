// Pretrained and fine-tuned models in and out: our sharded pretraining
// checkpoints (checkpoint/) and HuggingFace model directories.
//
// An HF directory (what `transformers` loads with from_pretrained):
//   config.json            BertConfig keys, "architectures", and for
//                          classifiers "id2label"/"label2id" (+ num_labels)
//   model.safetensors      fp32 tensors under HF names (safetensors.h)
//   vocab.txt              one token per line, in id order
//   tokenizer_config.json  {"do_lower_case", "model_max_length",
//                           "tokenizer_class": "BertTokenizer"}
// LoadPretrained accepts
//   - a run directory: its latest committed checkpoint;
//   - a checkpoint directory (manifest.json + shards): the "params" section,
//     named by the manifest's layout; the model config and vocabulary are the
//     run's (the manifest records them; the vocabulary checksum must match);
//   - an HF directory. Names are normalised to ours: a missing "bert." prefix
//     (BertModel files) is added, LayerNorm gamma/beta become weight/bias,
//     buffers such as position_ids are dropped.
// Tensor names are HF's: "bert.*", "cls.*" (pretraining heads), "classifier.*".
// PretrainedModel::tensors never holds the tied aliases
// cls.predictions.decoder.{weight,bias} (= word_embeddings, cls.predictions.bias):
// import drops them, WriteHfDirectory writes them where BertForPreTraining's
// state_dict lists them. Shapes are checked against the config both ways.
// A checkpoint's model config is the manifest's model_config, or for older
// checkpoints the file its config_yaml's `model:` names; its vocabulary is
// the run's `vocab:` file, else the one stored in the first data.db corpus;
// model_max_length is max_position_embeddings. Loading a checkpoint
// directory with weights verifies every shard's xxh3 (a run directory's
// latest is verified by CheckpointStore::LoadLatest either way).
// WriteHfDirectory writes every file under a temporary name and renames
// config.json last, so a directory without config.json is incomplete and
// LoadPretrained refuses it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "interop/safetensors.h"

namespace bert {

struct PretrainedModel {
  enum class Source { kCheckpoint, kHfDirectory };
  Source source = Source::kHfDirectory;
  std::string path;                 // the checkpoint or HF directory actually read
  nlohmann::json config;            // HF BertConfig (hidden_size, num_hidden_layers, ...,
                                    // architectures, and id2label/label2id for classifiers)
  std::vector<std::string> vocab;   // tokens in id order
  bool do_lower_case = true;
  int64_t model_max_length = 512;
  std::string vocab_checksum;       // Vocab::checksum() of `vocab`
  std::vector<NamedTensor> tensors; // empty unless loaded with weights
};

// `path`: a run, checkpoint or HF directory (see above). Errors name the
// path and what is missing or wrong.
Result<PretrainedModel> LoadPretrained(const std::string& path, bool with_weights);

// Writes `model` (config, tensors, vocab, casing, max length) as an HF directory at `dir`.
Status WriteHfDirectory(const std::string& dir, const PretrainedModel& model);

// --- Helpers (also used by tests) ---

// The shape-determining keys of an HF BertConfig, validated (positive;
// hidden_size divisible by num_attention_heads). max_position_embeddings,
// type_vocab_size and num_labels default as in HF (512, 2, 2); num_labels
// is len(id2label) when id2label is given. Errors name `source` and the key.
// config.json's model_type of a pre-LayerNorm model ("pre_layer_norm": true;
// BertConfig::pre_layer_norm): not HF BERT, so that transformers refuses it
// rather than loading it as post-LN; bertctl export refuses it.
constexpr char kPreLnModelType[] = "bert-pre-ln";

struct BertShapes {
  int64_t vocab_size = 0;               // rows of word_embeddings and cls.predictions.bias
  int64_t hidden_size = 0;              // H
  int64_t num_hidden_layers = 0;        // encoder layers
  int64_t num_attention_heads = 0;      // divides H
  int64_t intermediate_size = 0;        // feed-forward width
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
  int64_t num_labels = 2;               // rows of classifier.weight
  bool pre_layer_norm = false;          // config "pre_layer_norm": adds bert.encoder.final_layer_norm
  // config "pruned_heads" ({"layer": [head, ...]}, the heads removed from
  // each layer, as transformers 4 wrote it; bertctl prune): a layer keeps
  // num_attention_heads minus its pruned heads, each hidden_size /
  // num_attention_heads wide, so its query/key/value rows and attention
  // output columns shrink to match. At least one head stays in every layer.
  std::map<int64_t, std::vector<int64_t>> pruned_heads;
  int64_t head_size() const { return hidden_size / num_attention_heads; }
  int64_t heads_in_layer(int64_t layer) const {
    auto it = pruned_heads.find(layer);
    return num_attention_heads - (it == pruned_heads.end() ? 0 : static_cast<int64_t>(it->second.size()));
  }
};
// Parses and checks config "pruned_heads" (absent or {} = none) for a model
// of `layers` layers of `heads` heads. Errors name `source` and the layer.
Result<std::map<int64_t, std::vector<int64_t>>> ParsePrunedHeads(const nlohmann::json& config, int64_t layers,
                                                                 int64_t heads, const std::string& source);
// The config value: {"layer": [heads...]} with sorted heads (layers without any left out).
nlohmann::json PrunedHeadsToJson(const std::map<int64_t, std::vector<int64_t>>& pruned_heads);
// `model` with its pruned heads put back as zeros (query/key/value rows and
// attention output columns of 0): the same function at full shapes, and
// config.json without pruned_heads. transformers 5 no longer prunes heads
// (it ignores the key and expects full shapes), so bertctl export writes
// this form. No-op without pruned heads. Errors name the tensor.
Status ExpandPrunedHeads(PretrainedModel* model);
Result<BertShapes> BertShapesFromConfig(const nlohmann::json& config, const std::string& source);
// Every parameter name a BERT model of these shapes can have (encoder,
// pooler, pretraining heads, classifier; no tied aliases) and its shape.
std::map<std::string, std::vector<int64_t>> ExpectedTensorShapes(const BertShapes& shapes);
// An HF state-dict name in our form: "bert." added to BertModel names,
// LayerNorm gamma/beta -> weight/bias. "" for names to drop: buffers
// (position_ids, token_type_ids) and the tied cls.predictions.decoder.*.
std::string NormalizeHfTensorName(const std::string& hf_name);
// Every tensor is a known parameter of the config's shape, no name twice,
// the encoder (bert.* but the pooler) complete and each head all or nothing.
Status CheckTensorsAgainstConfig(const nlohmann::json& config, const std::vector<NamedTensor>& tensors,
                                 const std::string& source);

}  // namespace bert
