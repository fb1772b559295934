// HF BERT tensor names and shapes (interop/pretrained.h): the name
// normalisation applied on import and the shape check against a config.
// The names and shapes are those of transformers' modeling_bert.py (and of
// worker/model/bert_model.cc's AppendBertModelSpecs, which follows it).
#include <algorithm>
#include <map>
#include <set>

#include "interop/pretrained.h"

namespace bert {
namespace {

bool StartsWith(const std::string& text, const std::string& prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}
bool EndsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A positive integer key of the config (or its default when absent and
// `fallback` > 0). Errors name `source` and the key.
Status PositiveInt(const nlohmann::json& config, const std::string& source, const char* key, int64_t fallback,
                   int64_t* out) {
  auto it = config.find(key);
  if (it == config.end()) {
    if (fallback > 0) {
      *out = fallback;
      return Status::Ok();
    }
    return Status::InvalidArgument(source + ": " + key + ": missing");
  }
  if (!it->is_number_integer() || it->get<int64_t>() <= 0) {
    return Status::InvalidArgument(source + ": " + key + ": expected a positive integer, got " + it->dump());
  }
  *out = it->get<int64_t>();
  return Status::Ok();
}

}  // namespace

Result<BertShapes> BertShapesFromConfig(const nlohmann::json& config, const std::string& source) {
  if (!config.is_object()) return Status::InvalidArgument(source + ": expected a JSON object");
  BertShapes shapes;
  BERT_RETURN_IF_ERROR(PositiveInt(config, source, "vocab_size", 0, &shapes.vocab_size));
  BERT_RETURN_IF_ERROR(PositiveInt(config, source, "hidden_size", 0, &shapes.hidden_size));
  BERT_RETURN_IF_ERROR(PositiveInt(config, source, "num_hidden_layers", 0, &shapes.num_hidden_layers));
  BERT_RETURN_IF_ERROR(PositiveInt(config, source, "num_attention_heads", 0, &shapes.num_attention_heads));
  BERT_RETURN_IF_ERROR(PositiveInt(config, source, "intermediate_size", 0, &shapes.intermediate_size));
  BERT_RETURN_IF_ERROR(PositiveInt(config, source, "max_position_embeddings", 512, &shapes.max_position_embeddings));
  BERT_RETURN_IF_ERROR(PositiveInt(config, source, "type_vocab_size", 2, &shapes.type_vocab_size));
  if (shapes.hidden_size % shapes.num_attention_heads != 0) {
    return Status::InvalidArgument(source + ": hidden_size: " + std::to_string(shapes.hidden_size) +
                                   " is not divisible by num_attention_heads (" +
                                   std::to_string(shapes.num_attention_heads) + ")");
  }
  if (auto pre = config.find("pre_layer_norm"); pre != config.end()) {
    if (!pre->is_boolean()) {
      return Status::InvalidArgument(source + ": pre_layer_norm: expected true or false, got " + pre->dump());
    }
    shapes.pre_layer_norm = pre->get<bool>();
  }
  Result<std::map<int64_t, std::vector<int64_t>>> pruned =
      ParsePrunedHeads(config, shapes.num_hidden_layers, shapes.num_attention_heads, source);
  if (!pruned.ok()) return pruned.status();
  shapes.pruned_heads = std::move(pruned).value();
  // HF derives num_labels from id2label when both are given.
  auto id2label = config.find("id2label");
  if (id2label != config.end()) {
    if (!id2label->is_object() || id2label->empty()) {
      return Status::InvalidArgument(source + ": id2label: expected a non-empty object {\"0\": \"label\", ...}");
    }
    shapes.num_labels = static_cast<int64_t>(id2label->size());
  } else {
    BERT_RETURN_IF_ERROR(PositiveInt(config, source, "num_labels", 2, &shapes.num_labels));
  }
  return shapes;
}

Result<std::map<int64_t, std::vector<int64_t>>> ParsePrunedHeads(const nlohmann::json& config, int64_t layers,
                                                                 int64_t heads, const std::string& source) {
  std::map<int64_t, std::vector<int64_t>> pruned;
  auto it = config.find("pruned_heads");
  if (it == config.end() || it->is_null()) return pruned;
  const std::string where = source + ": pruned_heads";
  if (!it->is_object()) return Status::InvalidArgument(where + ": expected an object {\"layer\": [head, ...]}");
  for (const auto& [key, value] : it->items()) {
    int64_t layer = -1;
    try {
      size_t used = 0;
      layer = std::stoll(key, &used);
      if (used != key.size()) layer = -1;
    } catch (const std::exception&) {
      layer = -1;
    }
    if (layer < 0 || layer >= layers) {
      return Status::InvalidArgument(where + ": \"" + key + "\" is not a layer (0.." + std::to_string(layers - 1) + ")");
    }
    if (!value.is_array()) return Status::InvalidArgument(where + "." + key + ": expected a list of heads");
    std::vector<int64_t> list;
    for (const nlohmann::json& head : value) {
      if (!head.is_number_integer() || head.get<int64_t>() < 0 || head.get<int64_t>() >= heads) {
        return Status::InvalidArgument(where + "." + key + ": " + head.dump() + " is not a head (0.." +
                                       std::to_string(heads - 1) + ")");
      }
      list.push_back(head.get<int64_t>());
    }
    std::sort(list.begin(), list.end());
    if (std::adjacent_find(list.begin(), list.end()) != list.end()) {
      return Status::InvalidArgument(where + "." + key + ": a head is listed twice");
    }
    if (static_cast<int64_t>(list.size()) >= heads) {
      return Status::InvalidArgument(where + "." + key + ": removes all " + std::to_string(heads) +
                                     " heads; a layer keeps at least one");
    }
    if (!list.empty()) pruned[layer] = std::move(list);
  }
  return pruned;
}

nlohmann::json PrunedHeadsToJson(const std::map<int64_t, std::vector<int64_t>>& pruned_heads) {
  nlohmann::json json = nlohmann::json::object();
  for (const auto& [layer, heads] : pruned_heads) {
    if (!heads.empty()) json[std::to_string(layer)] = heads;
  }
  return json;
}

Status ExpandPrunedHeads(PretrainedModel* model) {
  Result<BertShapes> shapes = BertShapesFromConfig(model->config, model->path + ": config.json");
  if (!shapes.ok()) return shapes.status();
  if (shapes->pruned_heads.empty()) return Status::Ok();
  const int64_t h = shapes->hidden_size, d = shapes->head_size(), heads = shapes->num_attention_heads;
  for (NamedTensor& tensor : model->tensors) {
    for (const auto& [layer, pruned] : shapes->pruned_heads) {
      const std::string prefix = "bert.encoder.layer." + std::to_string(layer) + ".";
      const bool rows = tensor.name.rfind(prefix + "attention.self.", 0) == 0;
      const bool columns = tensor.name == prefix + "attention.output.dense.weight";
      if (!rows && !columns) continue;
      const int64_t kept = heads - static_cast<int64_t>(pruned.size());
      const int64_t width = rows ? (tensor.shape.size() == 2 ? tensor.shape[1] : 1) : tensor.shape[0];
      if ((rows && tensor.shape[0] != kept * d) || (columns && tensor.shape[1] != kept * d)) {
        return Status::InvalidArgument(model->path + ": tensor " + tensor.name + " does not have the " +
                                       std::to_string(kept) + " heads its pruned_heads leave");
      }
      // Original head i sits at kept position `slot` (or is pruned: zeros).
      std::vector<float> full(static_cast<size_t>(heads * d * width), 0.0f);
      int64_t slot = 0;
      for (int64_t head = 0; head < heads; ++head) {
        if (std::binary_search(pruned.begin(), pruned.end(), head)) continue;
        for (int64_t i = 0; i < d; ++i) {
          for (int64_t j = 0; j < width; ++j) {
            const int64_t from = rows ? (slot * d + i) * width + j : j * kept * d + slot * d + i;
            const int64_t to = rows ? (head * d + i) * width + j : j * heads * d + head * d + i;
            full[to] = tensor.values[from];
          }
        }
        ++slot;
      }
      tensor.values = std::move(full);
      if (rows) {
        tensor.shape[0] = heads * d;
      } else {
        tensor.shape = {h, heads * d};
      }
    }
  }
  model->config.erase("pruned_heads");
  return Status::Ok();
}

std::map<std::string, std::vector<int64_t>> ExpectedTensorShapes(const BertShapes& s) {
  const int64_t h = s.hidden_size;
  std::map<std::string, std::vector<int64_t>> shapes = {
      {"bert.embeddings.word_embeddings.weight", {s.vocab_size, h}},
      {"bert.embeddings.position_embeddings.weight", {s.max_position_embeddings, h}},
      {"bert.embeddings.token_type_embeddings.weight", {s.type_vocab_size, h}},
      {"bert.embeddings.LayerNorm.weight", {h}},
      {"bert.embeddings.LayerNorm.bias", {h}},
      {"bert.pooler.dense.weight", {h, h}},
      {"bert.pooler.dense.bias", {h}},
      {"cls.predictions.bias", {s.vocab_size}},
      {"cls.predictions.transform.dense.weight", {h, h}},
      {"cls.predictions.transform.dense.bias", {h}},
      {"cls.predictions.transform.LayerNorm.weight", {h}},
      {"cls.predictions.transform.LayerNorm.bias", {h}},
      {"cls.seq_relationship.weight", {2, h}},
      {"cls.seq_relationship.bias", {2}},
      {"classifier.weight", {s.num_labels, h}},
      {"classifier.bias", {s.num_labels}},
  };
  for (int64_t i = 0; i < s.num_hidden_layers; ++i) {
    const std::string layer = "bert.encoder.layer." + std::to_string(i) + ".";
    const int64_t attention = s.heads_in_layer(i) * s.head_size();  // h unless heads were pruned
    for (const char* part : {"query", "key", "value"}) {
      shapes[layer + "attention.self." + part + ".weight"] = {attention, h};
      shapes[layer + "attention.self." + part + ".bias"] = {attention};
    }
    shapes[layer + "attention.output.dense.weight"] = {h, attention};
    shapes[layer + "attention.output.dense.bias"] = {h};
    shapes[layer + "attention.output.LayerNorm.weight"] = {h};
    shapes[layer + "attention.output.LayerNorm.bias"] = {h};
    shapes[layer + "intermediate.dense.weight"] = {s.intermediate_size, h};
    shapes[layer + "intermediate.dense.bias"] = {s.intermediate_size};
    shapes[layer + "output.dense.weight"] = {h, s.intermediate_size};
    shapes[layer + "output.dense.bias"] = {h};
    shapes[layer + "output.LayerNorm.weight"] = {h};
    shapes[layer + "output.LayerNorm.bias"] = {h};
  }
  if (s.pre_layer_norm) {
    shapes["bert.encoder.final_layer_norm.weight"] = {h};
    shapes["bert.encoder.final_layer_norm.bias"] = {h};
  }
  return shapes;
}

std::string NormalizeHfTensorName(const std::string& hf_name) {
  std::string name = hf_name;
  // Buffers, not parameters (BertEmbeddings registers both).
  if (EndsWith(name, "position_ids") || EndsWith(name, "token_type_ids")) return "";
  // Tied to word_embeddings and cls.predictions.bias: not separate weights.
  if (name == "cls.predictions.decoder.weight" || name == "cls.predictions.decoder.bias") return "";
  // BertModel files (and TF-converted ones) name the encoder without "bert.".
  if (StartsWith(name, "embeddings.") || StartsWith(name, "encoder.") || StartsWith(name, "pooler.")) {
    name = "bert." + name;
  }
  // Old (TF-era) LayerNorm parameter names.
  if (name.find("LayerNorm.") != std::string::npos) {
    if (EndsWith(name, ".gamma")) name = name.substr(0, name.size() - 5) + "weight";
    if (EndsWith(name, ".beta")) name = name.substr(0, name.size() - 4) + "bias";
  }
  return name;
}

Status CheckTensorsAgainstConfig(const nlohmann::json& config, const std::vector<NamedTensor>& tensors,
                                 const std::string& source) {
  Result<BertShapes> shapes = BertShapesFromConfig(config, source + " (config)");
  if (!shapes.ok()) return shapes.status();
  const std::map<std::string, std::vector<int64_t>> expected = ExpectedTensorShapes(*shapes);
  std::set<std::string> present;
  for (const NamedTensor& tensor : tensors) {
    auto it = expected.find(tensor.name);
    if (it == expected.end()) {
      return Status::InvalidArgument(source + ": tensor \"" + tensor.name + "\" is not a BERT parameter");
    }
    if (tensor.shape != it->second) {
      auto text = [](const std::vector<int64_t>& shape) {
        std::string out = "[";
        for (size_t d = 0; d < shape.size(); ++d) out += (d ? ", " : "") + std::to_string(shape[d]);
        return out + "]";
      };
      return Status::InvalidArgument(source + ": tensor \"" + tensor.name + "\" has shape " + text(tensor.shape) +
                                     " but the config gives " + text(it->second));
    }
    if (!present.insert(tensor.name).second) {
      return Status::InvalidArgument(source + ": tensor \"" + tensor.name + "\" appears twice");
    }
  }
  // The encoder must be complete; the pooler and the heads are optional
  // (BertForMaskedLM has no pooler, BertModel no heads).
  for (const auto& [name, unused] : expected) {
    if (StartsWith(name, "bert.") && !StartsWith(name, "bert.pooler.") && !present.count(name)) {
      return Status::InvalidArgument(source + ": tensor \"" + name + "\" is missing");
    }
  }
  for (const char* head : {"cls.predictions.", "cls.seq_relationship.", "classifier.", "bert.pooler."}) {
    bool any = false, all = true;
    for (const auto& [name, unused] : expected) {
      if (!StartsWith(name, head)) continue;
      any = any || present.count(name);
      all = all && present.count(name);
    }
    if (any && !all) return Status::InvalidArgument(source + ": the " + std::string(head) + "* tensors are incomplete");
  }
  return Status::Ok();
}

}  // namespace bert
