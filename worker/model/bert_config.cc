#include "worker/model/bert_config.h"

#include <glog/logging.h>

#include <set>
#include <sstream>

#include "common/file_util.h"

namespace bert {
namespace {

// Keys HF writes into BERT configs that do not change the architecture we
// build (or whose only supported value is checked separately).
const std::set<std::string>& IgnoredHfKeys() {
  static const std::set<std::string> keys = {
      "_name_or_path", "architectures", "model_type", "transformers_version", "torch_dtype",
      "pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "use_cache",
      "gradient_checkpointing", "id2label", "label2id", "problem_type", "finetuning_task",
      "directionality", "output_past", "pooler_fc_size", "pooler_num_attention_heads",
      "pooler_num_fc_layers", "pooler_size_per_head", "pooler_type", "output_attentions",
      "output_hidden_states", "return_dict", "is_decoder", "add_cross_attention",
      "chunk_size_feed_forward", "tie_word_embeddings", "position_embedding_type"};
  return keys;
}

std::string Where(const std::string& source, const std::string& key) { return source + ": " + key + ": "; }

// Reads an integer key into *out when present. Rejects floats with a
// fractional part and non-numbers.
Status ReadInt(const nlohmann::json& json, const std::string& source, const std::string& key, bool required,
               int64_t* out) {
  auto it = json.find(key);
  if (it == json.end()) {
    if (required) return Status::InvalidArgument(source + ": missing required key " + key);
    return Status::Ok();
  }
  if (it->is_number_integer()) {
    *out = it->get<int64_t>();
    return Status::Ok();
  }
  return Status::InvalidArgument(Where(source, key) + "must be an integer, got " + it->dump());
}

Status ReadDouble(const nlohmann::json& json, const std::string& source, const std::string& key, double* out) {
  auto it = json.find(key);
  if (it == json.end()) return Status::Ok();
  if (it->is_number()) {
    *out = it->get<double>();
    return Status::Ok();
  }
  return Status::InvalidArgument(Where(source, key) + "must be a number, got " + it->dump());
}

template <typename T>
std::string Str(T value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

}  // namespace

Status BertConfig::Validate(const std::string& source) const {
  auto positive = [&](const char* key, int64_t value) -> Status {
    if (value <= 0) return Status::InvalidArgument(Where(source, key) + "must be positive, got " + Str(value));
    return Status::Ok();
  };
  BERT_RETURN_IF_ERROR(positive("vocab_size", vocab_size));
  BERT_RETURN_IF_ERROR(positive("hidden_size", hidden_size));
  BERT_RETURN_IF_ERROR(positive("num_hidden_layers", num_hidden_layers));
  BERT_RETURN_IF_ERROR(positive("num_attention_heads", num_attention_heads));
  BERT_RETURN_IF_ERROR(positive("intermediate_size", intermediate_size));
  BERT_RETURN_IF_ERROR(positive("max_position_embeddings", max_position_embeddings));
  BERT_RETURN_IF_ERROR(positive("type_vocab_size", type_vocab_size));
  BERT_RETURN_IF_ERROR(positive("num_labels", num_labels));
  if (hidden_size % num_attention_heads != 0) {
    return Status::InvalidArgument(Where(source, "hidden_size") + "must be divisible by num_attention_heads (" +
                                   Str(num_attention_heads) + "), got " + Str(hidden_size));
  }
  if (hidden_act != "gelu" && hidden_act != "gelu_new" && hidden_act != "gelu_pytorch_tanh" &&
      hidden_act != "relu") {
    return Status::InvalidArgument(Where(source, "hidden_act") +
                                   "must be one of gelu, gelu_new, gelu_pytorch_tanh, relu; got \"" + hidden_act +
                                   "\"");
  }
  auto probability = [&](const char* key, double value) -> Status {
    if (!(value >= 0.0 && value < 1.0)) {
      return Status::InvalidArgument(Where(source, key) + "must be in [0, 1), got " + Str(value));
    }
    return Status::Ok();
  };
  BERT_RETURN_IF_ERROR(probability("hidden_dropout_prob", hidden_dropout_prob));
  BERT_RETURN_IF_ERROR(probability("attention_probs_dropout_prob", attention_probs_dropout_prob));
  if (classifier_dropout >= 0) BERT_RETURN_IF_ERROR(probability("classifier_dropout", classifier_dropout));
  if (!(initializer_range > 0.0 && initializer_range < 1.0)) {
    return Status::InvalidArgument(Where(source, "initializer_range") + "must be in (0, 1), got " +
                                   Str(initializer_range));
  }
  if (!(layer_norm_eps > 0.0 && layer_norm_eps < 1.0)) {
    return Status::InvalidArgument(Where(source, "layer_norm_eps") + "must be in (0, 1), got " + Str(layer_norm_eps));
  }
  return Status::Ok();
}

nlohmann::json BertConfig::ToJson() const {
  nlohmann::json json = {{"architectures", {"BertForPreTraining"}},
                         {"model_type", pre_layer_norm ? kPreLnModelType : "bert"},
                         {"vocab_size", vocab_size},
                         {"hidden_size", hidden_size},
                         {"num_hidden_layers", num_hidden_layers},
                         {"num_attention_heads", num_attention_heads},
                         {"intermediate_size", intermediate_size},
                         {"hidden_act", hidden_act},
                         {"hidden_dropout_prob", hidden_dropout_prob},
                         {"attention_probs_dropout_prob", attention_probs_dropout_prob},
                         {"max_position_embeddings", max_position_embeddings},
                         {"type_vocab_size", type_vocab_size},
                         {"initializer_range", initializer_range},
                         {"layer_norm_eps", layer_norm_eps},
                         {"num_labels", num_labels},
                         {"position_embedding_type", "absolute"},
                         {"pad_token_id", 0}};
  if (classifier_dropout >= 0) json["classifier_dropout"] = classifier_dropout;
  if (pre_layer_norm) json["pre_layer_norm"] = true;
  if (!pruned_heads.empty()) json["pruned_heads"] = PrunedHeadsToJson(pruned_heads);
  return json;
}

Result<BertConfig> BertConfigFromJson(const nlohmann::json& json, const std::string& source) {
  if (!json.is_object()) return Status::InvalidArgument(source + ": must be a JSON object");
  BertConfig config;
  BERT_RETURN_IF_ERROR(ReadInt(json, source, "vocab_size", true, &config.vocab_size));
  BERT_RETURN_IF_ERROR(ReadInt(json, source, "hidden_size", true, &config.hidden_size));
  BERT_RETURN_IF_ERROR(ReadInt(json, source, "num_hidden_layers", true, &config.num_hidden_layers));
  BERT_RETURN_IF_ERROR(ReadInt(json, source, "num_attention_heads", true, &config.num_attention_heads));
  BERT_RETURN_IF_ERROR(ReadInt(json, source, "intermediate_size", true, &config.intermediate_size));
  BERT_RETURN_IF_ERROR(ReadInt(json, source, "max_position_embeddings", false, &config.max_position_embeddings));
  BERT_RETURN_IF_ERROR(ReadInt(json, source, "type_vocab_size", false, &config.type_vocab_size));
  BERT_RETURN_IF_ERROR(ReadDouble(json, source, "hidden_dropout_prob", &config.hidden_dropout_prob));
  BERT_RETURN_IF_ERROR(
      ReadDouble(json, source, "attention_probs_dropout_prob", &config.attention_probs_dropout_prob));
  BERT_RETURN_IF_ERROR(ReadDouble(json, source, "initializer_range", &config.initializer_range));
  BERT_RETURN_IF_ERROR(ReadDouble(json, source, "layer_norm_eps", &config.layer_norm_eps));
  if (auto it = json.find("hidden_act"); it != json.end()) {
    if (!it->is_string()) {
      return Status::InvalidArgument(Where(source, "hidden_act") + "must be a string, got " + it->dump());
    }
    config.hidden_act = it->get<std::string>();
  }
  if (auto it = json.find("classifier_dropout"); it != json.end() && !it->is_null()) {
    BERT_RETURN_IF_ERROR(ReadDouble(json, source, "classifier_dropout", &config.classifier_dropout));
    if (config.classifier_dropout < 0) {
      return Status::InvalidArgument(Where(source, "classifier_dropout") + "must be in [0, 1) or null, got " +
                                     it->dump());
    }
  }
  // HF derives num_labels from id2label when it is not written out.
  if (auto it = json.find("id2label"); it != json.end()) {
    if (!it->is_object()) return Status::InvalidArgument(Where(source, "id2label") + "must be an object");
    config.num_labels = static_cast<int64_t>(it->size());
  }
  BERT_RETURN_IF_ERROR(ReadInt(json, source, "num_labels", false, &config.num_labels));
  if (auto it = json.find("position_embedding_type"); it != json.end() && *it != "absolute") {
    return Status::InvalidArgument(Where(source, "position_embedding_type") + "only \"absolute\" is supported, got " +
                                   it->dump());
  }
  if (auto it = json.find("pre_layer_norm"); it != json.end()) {
    if (!it->is_boolean()) {
      return Status::InvalidArgument(Where(source, "pre_layer_norm") + "must be true or false, got " + it->dump());
    }
    config.pre_layer_norm = it->get<bool>();
  }
  if (auto it = json.find("model_type"); it != json.end()) {
    const bool pre = *it == kPreLnModelType;
    if (*it != "bert" && !pre) {
      return Status::InvalidArgument(Where(source, "model_type") + "must be \"bert\" or \"" + kPreLnModelType +
                                     "\", got " + it->dump());
    }
    if (pre && !config.pre_layer_norm) {
      return Status::InvalidArgument(Where(source, "model_type") + "\"" + kPreLnModelType +
                                     "\" needs \"pre_layer_norm\": true");
    }
  }
  static const std::set<std::string> known = {
      "vocab_size",  "hidden_size",          "num_hidden_layers", "num_attention_heads",
      "intermediate_size", "hidden_act",     "hidden_dropout_prob", "attention_probs_dropout_prob",
      "max_position_embeddings", "type_vocab_size", "initializer_range", "layer_norm_eps",
      "num_labels",  "classifier_dropout", "pre_layer_norm", "pruned_heads"};
  for (const auto& item : json.items()) {
    if (known.count(item.key()) == 0 && IgnoredHfKeys().count(item.key()) == 0) {
      LOG(WARNING) << source << ": ignoring unknown key " << item.key();
    }
  }
  BERT_RETURN_IF_ERROR(config.Validate(source));
  Result<std::map<int64_t, std::vector<int64_t>>> pruned =
      ParsePrunedHeads(json, config.num_hidden_layers, config.num_attention_heads, source);
  if (!pruned.ok()) return pruned.status();
  config.pruned_heads = std::move(pruned).value();
  return config;
}

Result<BertConfig> LoadBertConfig(const std::string& path) {
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  nlohmann::json json = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return Status::InvalidArgument(path + ": not valid JSON");
  return BertConfigFromJson(json, path);
}

}  // namespace bert
