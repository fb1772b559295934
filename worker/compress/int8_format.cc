#include "worker/compress/int8_format.h"

#include <glog/logging.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "common/file_util.h"
#include "worker/finetune/finetune_model.h"
#include "worker/model/bert_heads.h"

namespace bert {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

bool IsFile(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

torch::Tensor ToTensor(const NamedTensor& tensor) {
  return torch::from_blob(const_cast<float*>(tensor.values.data()), tensor.shape, torch::kFloat).clone();
}

// The "quantization" object of config.json: format, version, activations.
Result<std::string> CheckQuantizationKey(const json& config, const std::string& config_path) {
  auto quant = config.find("quantization");
  if (quant == config.end() || !quant->is_object()) {
    return Status::InvalidArgument(config_path +
                                   ": quantization: missing (not an int8 model directory; bertctl quantize writes one)");
  }
  auto format = quant->find("format");
  if (format == quant->end() || !format->is_string() || *format != kInt8FormatName) {
    return Status::InvalidArgument(config_path + ": quantization.format: " +
                                   (format == quant->end() ? std::string("missing") : format->dump()) +
                                   " is not \"" + kInt8FormatName + "\"");
  }
  auto version = quant->find("version");
  if (version == quant->end() || !version->is_number_integer() || version->get<int64_t>() != kInt8FormatVersion) {
    return Status::InvalidArgument(config_path + ": quantization.version: " +
                                   (version == quant->end() ? std::string("missing") : version->dump()) +
                                   " is not supported (this build reads version " +
                                   std::to_string(kInt8FormatVersion) + ")");
  }
  auto activations = quant->find("activations");
  if (activations == quant->end() || !activations->is_string() ||
      (*activations != "dynamic" && *activations != "static")) {
    return Status::InvalidArgument(config_path + ": quantization.activations: " +
                                   (activations == quant->end() ? std::string("missing") : activations->dump()) +
                                   " is not \"dynamic\" or \"static\"");
  }
  return activations->get<std::string>();
}

// The safetensors __metadata__ of `path` (the header only).
Result<std::map<std::string, std::string>> ReadMetadata(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot open");
  in.seekg(0, std::ios::end);
  const uint64_t size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  uint64_t header_bytes = 0;
  if (size < 8 || !in.read(reinterpret_cast<char*>(&header_bytes), 8) || header_bytes > size - 8) {
    return Status::Corruption(path + ": truncated safetensors header");
  }
  std::string bytes(8 + header_bytes, '\0');
  std::memcpy(bytes.data(), &header_bytes, 8);
  if (!in.read(bytes.data() + 8, static_cast<std::streamsize>(header_bytes))) {
    return Status::Corruption(path + ": truncated safetensors header");
  }
  Result<SafetensorsHeader> header = ParseSafetensorsHeader(bytes, size, path);
  if (!header.ok()) return header.status();
  return header->metadata;
}

// One tensor of the file, checked for dtype and shape.
Result<const NamedTensor*> Expect(const std::map<std::string, const NamedTensor*>& by_name, const std::string& path,
                                  const std::string& name, const std::string& dtype,
                                  const std::vector<int64_t>& shape, std::set<std::string>* used) {
  auto it = by_name.find(name);
  if (it == by_name.end()) return Status::InvalidArgument(path + ": " + name + ": missing");
  const NamedTensor& tensor = *it->second;
  if (tensor.dtype != dtype) {
    return Status::InvalidArgument(path + ": " + name + ": dtype " + tensor.dtype + ", expected " + dtype);
  }
  if (tensor.shape != shape) {
    return Status::InvalidArgument(path + ": " + name + ": shape " + ShapeText(tensor.shape) + ", expected " +
                                   ShapeText(shape));
  }
  used->insert(name);
  return &tensor;
}

Status CheckPositiveFinite(const NamedTensor& tensor, const std::string& path) {
  for (size_t i = 0; i < tensor.values.size(); ++i) {
    if (!(tensor.values[i] > 0) || !std::isfinite(tensor.values[i])) {
      return Status::InvalidArgument(path + ": " + tensor.name + ": element " + std::to_string(i) + " is " +
                                     std::to_string(tensor.values[i]) + " (scales must be finite and > 0)");
    }
  }
  return Status::Ok();
}

struct TokenizerFiles {
  bool do_lower_case = true;
  int64_t model_max_length = 512;
};

Result<TokenizerFiles> ReadTokenizerConfig(const std::string& dir, int64_t max_positions) {
  TokenizerFiles files;
  files.model_max_length = max_positions;
  const std::string path = dir + "/tokenizer_config.json";
  if (!IsFile(path)) return files;
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  const json parsed = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) return Status::InvalidArgument(path + ": not a JSON object");
  auto lower = parsed.find("do_lower_case");
  if (lower != parsed.end() && !lower->is_boolean()) {
    return Status::InvalidArgument(path + ": do_lower_case: expected true or false");
  }
  if (lower != parsed.end()) files.do_lower_case = lower->get<bool>();
  auto max_length = parsed.find("model_max_length");
  if (max_length != parsed.end() && max_length->is_number_integer() && max_length->get<int64_t>() > 0 &&
      max_length->get<int64_t>() < files.model_max_length) {
    files.model_max_length = max_length->get<int64_t>();
  }
  return files;
}

}  // namespace

bool IsInt8ModelDirectory(const std::string& dir) {
  if (IsFile(dir + "/" + kInt8WeightsFile) && !IsFile(dir + "/model.safetensors")) return true;
  Result<std::string> text = ReadFile(dir + "/config.json");
  if (!text.ok()) return false;
  const json config = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  return config.is_object() && config.contains("quantization");
}

Result<Int8Classifier> LoadInt8Classifier(const std::string& dir) {
  const std::string config_path = dir + "/config.json";
  Result<std::string> text = ReadFile(config_path);
  if (!text.ok()) return Status::InvalidArgument(config_path + ": missing or unreadable (not a model directory)");
  const json config = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!config.is_object()) return Status::InvalidArgument(config_path + ": not a JSON object");
  Result<std::string> activations = CheckQuantizationKey(config, config_path);
  if (!activations.ok()) return activations.status();
  Result<std::vector<std::string>> labels = ClassifierLabelNames(config, dir);
  if (!labels.ok()) return labels.status();
  json model_keys = config;  // the model's own keys (BertConfigFromJson warns about others)
  model_keys.erase("quantization");
  Result<BertConfig> bert_config = BertConfigFromJson(model_keys, config_path);
  if (!bert_config.ok()) return bert_config.status();
  bert_config->num_labels = static_cast<int64_t>(labels->size());
  BERT_RETURN_IF_ERROR(bert_config->Validate(config_path));

  Int8Classifier out;
  out.activations = *activations;
  out.labels = *labels;
  Result<std::shared_ptr<const Vocab>> vocab = Vocab::Load(dir + "/vocab.txt");
  if (!vocab.ok()) return vocab.status();
  if ((*vocab)->size() > bert_config->vocab_size) {
    return Status::InvalidArgument(dir + "/vocab.txt: " + std::to_string((*vocab)->size()) +
                                   " tokens but config.json's vocab_size is " +
                                   std::to_string(bert_config->vocab_size));
  }
  Result<TokenizerFiles> tokenizer_files = ReadTokenizerConfig(dir, bert_config->max_position_embeddings);
  if (!tokenizer_files.ok()) return tokenizer_files.status();
  out.model_max_length = tokenizer_files->model_max_length;
  TokenizerOptions tokenizer_options;
  tokenizer_options.lower_case = tokenizer_files->do_lower_case;
  out.tokenizer = std::make_unique<FullTokenizer>(*vocab, tokenizer_options);
  out.vocab = *vocab;

  const std::string path = dir + "/" + kInt8WeightsFile;
  if (!IsFile(path)) return Status::InvalidArgument(path + ": missing");
  Result<std::map<std::string, std::string>> metadata = ReadMetadata(path);
  if (!metadata.ok()) return metadata.status();
  auto bert_format = metadata->find("bert_format");
  if (bert_format == metadata->end() || bert_format->second != kInt8FormatName) {
    return Status::InvalidArgument(path + ": __metadata__.bert_format: " +
                                   (bert_format == metadata->end() ? "missing" : "\"" + bert_format->second + "\"") +
                                   " is not \"" + kInt8FormatName + "\"");
  }
  auto version = metadata->find("version");
  if (version == metadata->end() || version->second != std::to_string(kInt8FormatVersion)) {
    return Status::InvalidArgument(path + ": __metadata__.version: " +
                                   (version == metadata->end() ? "missing" : "\"" + version->second + "\"") +
                                   " is not \"" + std::to_string(kInt8FormatVersion) + "\"");
  }
  Result<std::vector<NamedTensor>> tensors = ReadSafetensors(path);
  if (!tensors.ok()) return tensors.status();
  std::map<std::string, const NamedTensor*> by_name;
  for (const NamedTensor& tensor : *tensors) by_name[tensor.name] = &tensor;

  const std::vector<std::string> linear_names = ClassifierLinearNames(*bert_config);
  const std::set<std::string> linears(linear_names.begin(), linear_names.end());
  const bool is_static = *activations == "static";
  std::set<std::string> used;
  std::map<std::string, torch::Tensor> floats;
  std::map<std::string, Int8Weight> weights;
  InputQuantMap inputs;
  for (const ParameterSpec& spec : BertForSequenceClassificationSpecs(*bert_config)) {
    const size_t dot = spec.name.rfind('.');
    const std::string base = spec.name.substr(0, dot), leaf = spec.name.substr(dot + 1);
    if (!linears.count(base) || leaf != "weight") {
      Result<const NamedTensor*> tensor = Expect(by_name, path, spec.name, "F32", spec.shape, &used);
      if (!tensor.ok()) return tensor.status();
      floats[spec.name] = ToTensor(**tensor);
      continue;
    }
    const int64_t rows = spec.shape[0];
    Result<const NamedTensor*> weight = Expect(by_name, path, spec.name, "I8", spec.shape, &used);
    if (!weight.ok()) return weight.status();
    for (size_t i = 0; i < (*weight)->values.size(); ++i) {
      if ((*weight)->values[i] < -127) {
        return Status::InvalidArgument(path + ": " + spec.name + ": element " + std::to_string(i) +
                                       " is -128 (symmetric int8 weights lie in [-127, 127])");
      }
    }
    Result<const NamedTensor*> scale = Expect(by_name, path, base + ".weight_scale", "F32", {rows}, &used);
    if (!scale.ok()) return scale.status();
    BERT_RETURN_IF_ERROR(CheckPositiveFinite(**scale, path));
    weights[base] = Int8Weight{ToTensor(**weight).to(torch::kChar), ToTensor(**scale)};
    if (is_static) {
      Result<const NamedTensor*> input_scale = Expect(by_name, path, base + ".input_scale", "F32", {1}, &used);
      if (!input_scale.ok()) return input_scale.status();
      BERT_RETURN_IF_ERROR(CheckPositiveFinite(**input_scale, path));
      Result<const NamedTensor*> zero_point = Expect(by_name, path, base + ".input_zero_point", "U8", {1}, &used);
      if (!zero_point.ok()) return zero_point.status();
      inputs[base] = ActivationQuant{(*input_scale)->values[0], static_cast<int32_t>((*zero_point)->values[0])};
    }
  }
  for (const NamedTensor& tensor : *tensors) {
    if (!used.count(tensor.name)) {
      return Status::InvalidArgument(path + ": " + tensor.name + ": unexpected tensor for a " +
                                     (is_static ? "static" : "dynamic") + " int8 classifier of this config");
    }
  }
  if (SelectQuantizedEngine().empty()) {
    return Status::FailedPrecondition(path + ": this LibTorch has no quantized engine (x86, fbgemm or qnnpack)");
  }
  out.model = Int8BertClassifier::FromInt8(*bert_config, floats, weights, inputs);
  return out;
}

Status WriteInt8Directory(const std::string& output, const Int8DirectoryContents& contents, bool overwrite) {
  std::error_code ec;
  const fs::path target = fs::absolute(output).lexically_normal();
  fs::create_directories(target.parent_path(), ec);
  const fs::path partial =
      target.parent_path() / ("." + target.filename().string() + ".partial-" + std::to_string(::getpid()));
  fs::remove_all(partial, ec);
  if (!fs::create_directory(partial, ec)) return Status::IoError(partial.string() + ": cannot create: " + ec.message());
  auto fail = [&](Status status) {
    std::error_code ignored;
    fs::remove_all(partial, ignored);
    return status;
  };
  Status written = WriteSafetensors((partial / kInt8WeightsFile).string(), contents.tensors,
                                    {{"bert_format", kInt8FormatName},
                                     {"version", std::to_string(kInt8FormatVersion)}});
  if (!written.ok()) return fail(written);
  for (const char* name : {"vocab.txt", "tokenizer_config.json"}) {
    const std::string from = contents.source_dir + "/" + name;
    if (!IsFile(from)) continue;
    Result<std::string> bytes = ReadFile(from);
    if (!bytes.ok()) return fail(bytes.status());
    written = WriteFileAtomic((partial / name).string(), *bytes);
    if (!written.ok()) return fail(written);
  }
  written = WriteFileAtomic((partial / "config.json").string(), contents.config.dump(2) + "\n");
  if (!written.ok()) return fail(written);
  if (fs::exists(target, ec)) {
    if (!fs::is_empty(target, ec) && !overwrite) {
      return fail(Status::FailedPrecondition(target.string() + ": exists and is not empty (pass --overwrite)"));
    }
    const fs::path old = target.parent_path() / ("." + target.filename().string() + ".old-" +
                                                 std::to_string(::getpid()));
    fs::remove_all(old, ec);
    fs::rename(target, old, ec);
    if (ec) return fail(Status::IoError(target.string() + ": cannot move aside: " + ec.message()));
    fs::rename(partial, target, ec);
    if (ec) {
      std::error_code ignored;
      fs::rename(old, target, ignored);
      return fail(Status::IoError(target.string() + ": cannot rename into place: " + ec.message()));
    }
    fs::remove_all(old, ec);
    return Status::Ok();
  }
  fs::rename(partial, target, ec);
  if (ec) return fail(Status::IoError(target.string() + ": cannot rename into place: " + ec.message()));
  return Status::Ok();
}

}  // namespace bert
