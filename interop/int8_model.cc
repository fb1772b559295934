// Reading and checking the int8 model directory (interop/int8_model.h).
#include "interop/int8_model.h"

#include <glog/logging.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "common/file_util.h"

namespace bert {
namespace {

namespace fs = std::filesystem;

bool EndsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t d = 0; d < shape.size(); ++d) out += (d ? ", " : "") + std::to_string(shape[d]);
  return out + "]";
}

// `tensor` has `dtype` and `shape`, else an error naming it.
Status Expect(const NamedTensor& tensor, const std::string& dtype, const std::vector<int64_t>& shape,
              const std::string& source) {
  if (tensor.dtype != dtype) {
    return Status::InvalidArgument(source + ": tensor \"" + tensor.name + "\" is " + tensor.dtype + ", the int8 format "
                                   "stores it as " + dtype);
  }
  if (tensor.shape != shape) {
    return Status::InvalidArgument(source + ": tensor \"" + tensor.name + "\" has shape " + ShapeText(tensor.shape) +
                                   ", expected " + ShapeText(shape));
  }
  return Status::Ok();
}

Status ExpectScales(const NamedTensor& tensor, bool allow_zero, const std::string& source) {
  for (float value : tensor.values) {
    if (!std::isfinite(value) || value < 0 || (!allow_zero && value == 0)) {
      return Status::InvalidArgument(source + ": tensor \"" + tensor.name + "\" holds " + std::to_string(value) +
                                     " (a scale must be finite and " + (allow_zero ? "non-negative" : "positive") +
                                     ")");
    }
  }
  return Status::Ok();
}

Result<nlohmann::json> ReadJsonFile(const std::string& path) {
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  nlohmann::json json = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return Status::InvalidArgument(path + ": not a JSON object");
  return json;
}

// config.json's "quantization" block: format, version, weights, activations.
Result<LinearQuantization> ParseQuantization(const nlohmann::json& config, const std::string& path) {
  if (!config.contains("quantization") || !config["quantization"].is_object()) {
    return Status::InvalidArgument(path + ": no \"quantization\" object (not an int8 directory)");
  }
  const nlohmann::json& q = config["quantization"];
  if (q.value("format", nlohmann::json()) != kInt8Format) {
    return Status::InvalidArgument(path + ": quantization.format is " + q.value("format", nlohmann::json()).dump() +
                                   ", expected \"" + kInt8Format + "\"");
  }
  if (!q.contains("version") || !q["version"].is_number_integer() || q["version"].get<int64_t>() != kInt8Version) {
    return Status::InvalidArgument(path + ": quantization.version is " + q.value("version", nlohmann::json()).dump() +
                                   ", this bertctl reads version " + std::to_string(kInt8Version));
  }
  if (q.value("weights", nlohmann::json()) != kInt8WeightsScheme) {
    return Status::InvalidArgument(path + ": quantization.weights is " + q.value("weights", nlohmann::json()).dump() +
                                   ", expected \"" + kInt8WeightsScheme + "\"");
  }
  const nlohmann::json activations = q.value("activations", nlohmann::json());
  if (activations == "dynamic") return LinearQuantization::kInt8Dynamic;
  if (activations == "static") return LinearQuantization::kInt8Static;
  return Status::InvalidArgument(path + ": quantization.activations is " + activations.dump() +
                                 ", expected \"dynamic\" or \"static\"");
}

}  // namespace

bool LooksLikeInt8Directory(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir + "/" + kInt8WeightsFile, ec)) return true;
  Result<nlohmann::json> config = ReadJsonFile(dir + "/config.json");
  return config.ok() && config->contains("quantization");
}

std::vector<std::string> QuantizedLinearPrefixes(const BertShapes& shapes) {
  std::vector<std::string> prefixes;
  for (int64_t i = 0; i < shapes.num_hidden_layers; ++i) {
    const std::string p = "bert.encoder.layer." + std::to_string(i) + ".";
    for (const char* part : {"attention.self.query", "attention.self.key", "attention.self.value",
                             "attention.output.dense", "intermediate.dense", "output.dense"}) {
      prefixes.push_back(p + part);
    }
  }
  prefixes.push_back("bert.pooler.dense");
  prefixes.push_back("classifier");
  return prefixes;
}

Status CheckInt8Tensors(const nlohmann::json& config, const std::vector<NamedTensor>& tensors,
                        LinearQuantization quantization, const std::string& source) {
  CHECK(quantization != LinearQuantization::kNone);
  Result<BertShapes> shapes = BertShapesFromConfig(config, source + " (config)");
  if (!shapes.ok()) return shapes.status();
  const bool is_static = quantization == LinearQuantization::kInt8Static;
  std::map<std::string, const NamedTensor*> by_name;
  for (const NamedTensor& tensor : tensors) {
    if (!by_name.emplace(tensor.name, &tensor).second) {
      return Status::InvalidArgument(source + ": tensor \"" + tensor.name + "\" appears twice");
    }
  }
  // Each Linear's extra tensors, checked and set aside; what remains is an
  // fp32-shaped parameter list for CheckTensorsAgainstConfig.
  std::set<std::string> quantization_tensors;
  std::set<std::string> linear_weights;
  for (const std::string& prefix : QuantizedLinearPrefixes(*shapes)) {
    auto weight = by_name.find(prefix + ".weight");
    if (weight == by_name.end()) {
      return Status::InvalidArgument(source + ": tensor \"" + prefix + ".weight\" is missing");
    }
    const std::vector<int64_t>& weight_shape = weight->second->shape;
    if (weight_shape.size() != 2) {
      return Status::InvalidArgument(source + ": tensor \"" + prefix + ".weight\" has shape " +
                                     ShapeText(weight_shape) + ", expected [out, in]");
    }
    BERT_RETURN_IF_ERROR(Expect(*weight->second, "I8", weight_shape, source));
    linear_weights.insert(prefix + ".weight");
    std::vector<std::pair<std::string, std::string>> extras = {{".weight_scale", "F32"}};
    if (is_static) extras.insert(extras.end(), {{".input_scale", "F32"}, {".input_zero_point", "U8"}});
    for (const auto& [suffix, dtype] : extras) {
      auto it = by_name.find(prefix + suffix);
      if (it == by_name.end()) {
        return Status::InvalidArgument(source + ": tensor \"" + prefix + suffix + "\" is missing (" +
                                       (is_static ? "static" : "dynamic") + " int8)");
      }
      const std::vector<int64_t> shape = suffix == ".weight_scale" ? std::vector<int64_t>{weight_shape[0]}
                                                                    : std::vector<int64_t>{1};
      BERT_RETURN_IF_ERROR(Expect(*it->second, dtype, shape, source));
      if (dtype == "F32") BERT_RETURN_IF_ERROR(ExpectScales(*it->second, suffix == ".weight_scale", source));
      quantization_tensors.insert(prefix + suffix);
    }
  }
  std::vector<NamedTensor> parameters;
  for (const NamedTensor& tensor : tensors) {
    if (quantization_tensors.count(tensor.name)) continue;
    if (!linear_weights.count(tensor.name) && tensor.dtype != "F32") {
      return Status::InvalidArgument(source + ": tensor \"" + tensor.name + "\" is " + tensor.dtype +
                                     ", the int8 format stores it as F32");
    }
    if (EndsWith(tensor.name, "_scale") || EndsWith(tensor.name, "_zero_point")) {
      return Status::InvalidArgument(source + ": tensor \"" + tensor.name + "\" is not part of the " +
                                     (is_static ? "static" : "dynamic") + " int8 format");
    }
    NamedTensor shape_only;
    shape_only.name = tensor.name;
    shape_only.shape = tensor.shape;
    parameters.push_back(std::move(shape_only));
  }
  return CheckTensorsAgainstConfig(config, parameters, source);
}

Result<OnnxClassifierSource> LoadInt8Directory(const std::string& dir) {
  const std::string config_path = dir + "/config.json";
  Result<nlohmann::json> config = ReadJsonFile(config_path);
  if (!config.ok()) return config.status();
  Result<LinearQuantization> quantization = ParseQuantization(*config, config_path);
  if (!quantization.ok()) return quantization.status();
  const std::string weights_path = dir + "/" + kInt8WeightsFile;
  std::error_code ec;
  if (!fs::exists(weights_path, ec)) return Status::NotFound(weights_path + ": missing");
  Result<std::vector<NamedTensor>> tensors = ReadSafetensors(weights_path);
  if (!tensors.ok()) return tensors.status();
  // The metadata is in the header, which ReadSafetensors validated; read it again for __metadata__.
  Result<std::string> bytes = ReadFile(weights_path);
  if (!bytes.ok()) return bytes.status();
  Result<SafetensorsHeader> header = ParseSafetensorsHeader(*bytes, bytes->size(), weights_path);
  if (!header.ok()) return header.status();
  auto meta = [&](const std::string& key) {
    auto it = header->metadata.find(key);
    return it == header->metadata.end() ? std::string("(missing)") : it->second;
  };
  if (meta("bert_format") != kInt8Format || meta("version") != std::to_string(kInt8Version)) {
    return Status::InvalidArgument(weights_path + ": __metadata__ bert_format " + meta("bert_format") + ", version " +
                                   meta("version") + ", expected " + kInt8Format + " version " +
                                   std::to_string(kInt8Version));
  }
  BERT_RETURN_IF_ERROR(CheckInt8Tensors(*config, *tensors, *quantization, weights_path));
  Result<std::string> vocab = ReadFile(dir + "/vocab.txt");
  if (!vocab.ok()) return vocab.status();
  int64_t tokens = 0;
  for (char c : *vocab) tokens += c == '\n';
  if (!vocab->empty() && vocab->back() != '\n') ++tokens;
  const int64_t vocab_size = config->value("vocab_size", int64_t{0});
  if (tokens != vocab_size) {
    return Status::InvalidArgument(dir + "/vocab.txt: " + std::to_string(tokens) +
                                   " tokens, config.json's vocab_size is " + std::to_string(vocab_size));
  }
  OnnxClassifierSource source;
  source.config = std::move(*config);
  source.tensors = std::move(*tensors);
  source.quantization = *quantization;
  return source;
}

}  // namespace bert
