#include "worker/compress/quantize.h"

#include <glog/logging.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>
#include <set>

#include "common/exit_codes.h"
#include "common/file_util.h"
#include "worker/compress/int8_format.h"
#include "worker/compress/int8_model.h"
#include "worker/finetune/finetune_model.h"

namespace bert {
namespace {

namespace fs = std::filesystem;

std::set<std::string> LinearSet(const BertConfig& config) {
  const std::vector<std::string> names = ClassifierLinearNames(config);
  return std::set<std::string>(names.begin(), names.end());
}

NamedTensor Named(const std::string& name, const torch::Tensor& tensor, const std::string& dtype) {
  const torch::Tensor flat = tensor.detach().to(torch::kCPU, torch::kFloat).contiguous();
  return NamedTensor{name, flat.sizes().vec(),
                     std::vector<float>(flat.data_ptr<float>(), flat.data_ptr<float>() + flat.numel()), dtype};
}

// Logits of `model` over `features` in batches (feature order).
template <typename Forward>
torch::Tensor Logits(const Forward& forward, const std::vector<finetune::Feature>& features, int32_t batch_size,
                     int32_t pad_id) {
  std::vector<int64_t> order(features.size());
  std::iota(order.begin(), order.end(), 0);
  std::vector<torch::Tensor> parts;
  for (int64_t first = 0; first < static_cast<int64_t>(features.size()); first += batch_size) {
    const int64_t last = std::min<int64_t>(static_cast<int64_t>(features.size()), first + batch_size);
    parts.push_back(forward(CollateFeatures(features, order, first, last, pad_id)));
  }
  return torch::cat(parts);
}

}  // namespace

QuantizeOutcome RunQuantize(const QuantizeOptions& options) {
  QuantizeOutcome outcome;
  auto fail = [&outcome](Status status, int exit_code) {
    outcome.status = std::move(status);
    outcome.exit_code = exit_code;
    return outcome;
  };
  torch::NoGradGuard no_grad;
  if (IsInt8ModelDirectory(options.model_dir)) {
    return fail(Status::InvalidArgument("--model: " + options.model_dir +
                                        " is already an int8 model (quantize its fp32 directory)"),
                kExitUsage);
  }
  const std::string engine = SelectQuantizedEngine();
  if (engine.empty()) return fail(Status::FailedPrecondition("this LibTorch has no quantized engine"), kExitError);
  Result<ClassifierBundle> bundle = LoadClassifier(options.model_dir, torch::kCPU);
  if (!bundle.ok()) return fail(bundle.status(), kExitUsage);
  const BertConfig& config = bundle->model->config();
  const FlatParameters& params = bundle->model->parameters();
  std::map<std::string, torch::Tensor> tensors;
  for (const ParameterSlot& slot : params.slots()) tensors[slot.spec.name] = params.param(slot.spec.name).detach();

  // Calibration: the first calibration_samples texts through the fp32 graph.
  std::vector<finetune::Feature> calibration;
  const int32_t pad_id = std::max(0, bundle->vocab->pad_id());
  if (!options.calibration.empty()) {
    const int64_t max_seq_len = options.max_seq_len > 0 ? options.max_seq_len : bundle->model_max_length;
    if (max_seq_len > config.max_position_embeddings) {
      return fail(Status::InvalidArgument("--max-seq-len: " + std::to_string(max_seq_len) +
                                          " exceeds the model's max_position_embeddings (" +
                                          std::to_string(config.max_position_embeddings) + ")"),
                  kExitUsage);
    }
    finetune::FieldNames fields;
    fields.text = options.text_field;
    fields.text_pair = options.text_pair_field;
    Result<std::vector<finetune::Example>> examples =
        finetune::ReadExamples(options.calibration, fields, options.format, /*require_label=*/false);
    if (!examples.ok()) return fail(examples.status(), kExitBadData);
    if (examples->empty()) return fail(Status::Corruption(options.calibration + ": no examples"), kExitBadData);
    if (static_cast<int64_t>(examples->size()) > options.calibration_samples) {
      examples->resize(static_cast<size_t>(options.calibration_samples));
    }
    for (finetune::Example& example : *examples) example.label.clear();
    Result<finetune::LabelMap> labels = finetune::LabelMap::FromNames(bundle->labels, options.model_dir);
    if (!labels.ok()) return fail(labels.status(), kExitUsage);
    Result<finetune::EncodedSet> encoded = finetune::EncodeExamples(
        *examples, *labels, *bundle->tokenizer, static_cast<int32_t>(max_seq_len), options.calibration);
    if (!encoded.ok()) return fail(encoded.status(), kExitBadData);
    calibration = std::move(encoded->features);
  }
  std::map<std::string, RangeObserver> observers;
  if (!calibration.empty()) {
    std::unique_ptr<Int8BertClassifier> observed = Int8BertClassifier::FromFloat(config, tensors, &observers);
    Logits([&](const ClassificationBatch& b) { return observed->Forward(b.input_ids, b.token_type_ids, b.lengths); },
           calibration, options.batch_size, pad_id);
    for (int64_t i = 0; i < config.num_hidden_layers; ++i) {  // query, key and value read one input
      const std::string self = "bert.encoder.layer." + std::to_string(i) + ".attention.self.";
      observers[self + "key"] = observers[self + "value"] = observers[self + "query"];
    }
  }

  // The file: HF order; after each Linear's weight its scale (and input quantization).
  const std::set<std::string> linears = LinearSet(config);
  const bool is_static = !calibration.empty();
  Int8DirectoryContents contents;
  contents.source_dir = options.model_dir;
  int64_t int8_bytes = 0, fp32_bytes = 0;
  for (const ParameterSlot& slot : params.slots()) {
    const std::string& name = slot.spec.name;
    const size_t dot = name.rfind('.');
    const std::string base = name.substr(0, dot);
    fp32_bytes += 4 * slot.numel;
    if (!linears.count(base) || name.substr(dot + 1) != "weight") {
      contents.tensors.push_back(Named(name, tensors.at(name), "F32"));
      int8_bytes += 4 * slot.numel;
      continue;
    }
    const Int8Weight weight = QuantizeWeightPerChannel(tensors.at(name));
    contents.tensors.push_back(Named(name, weight.values, "I8"));
    contents.tensors.push_back(Named(base + ".weight_scale", weight.scale, "F32"));
    int8_bytes += slot.numel + 4 * weight.scale.numel();
    if (is_static) {
      const RangeObserver& seen = observers.at(base);
      const ActivationQuant input = ActivationQuantFromRange(seen.lo, seen.hi);
      contents.tensors.push_back(NamedTensor{base + ".input_scale", {1}, {input.scale}, "F32"});
      contents.tensors.push_back(
          NamedTensor{base + ".input_zero_point", {1}, {static_cast<float>(input.zero_point)}, "U8"});
    }
  }
  Result<std::string> config_text = ReadFile(options.model_dir + "/config.json");
  if (!config_text.ok()) return fail(config_text.status(), kExitUsage);
  contents.config = nlohmann::json::parse(*config_text, nullptr, /*allow_exceptions=*/false);
  if (!contents.config.is_object()) {
    return fail(Status::InvalidArgument(options.model_dir + "/config.json: not a JSON object"), kExitUsage);
  }
  nlohmann::json quantization = {{"format", kInt8FormatName},
                                 {"version", kInt8FormatVersion},
                                 {"weights", "int8 symmetric per output channel"},
                                 {"activations", is_static ? "static" : "dynamic"}};
  if (is_static) {
    quantization["calibration"] = {{"file", options.calibration},
                                   {"examples", static_cast<int64_t>(calibration.size())}};
  }
  contents.config["quantization"] = quantization;
  Status written = WriteInt8Directory(options.output, contents, options.overwrite);
  if (!written.ok()) {
    return fail(written, written.code() == Status::Code::kFailedPrecondition ? kExitUsage : kExitError);
  }
  outcome.calibration_examples = static_cast<int64_t>(calibration.size());
  LOG(INFO) << "[quantize] wrote " << options.output << ": " << linears.size() << " Linears int8 ("
            << (is_static ? "static activations from " + std::to_string(calibration.size()) + " texts of " +
                                options.calibration
                          : std::string("dynamic activations"))
            << "), " << kInt8WeightsFile << " " << int8_bytes / 1024 << " KiB of tensors against "
            << fp32_bytes / 1024 << " KiB fp32; engine " << engine;

  // Read it back (the loader's checks), and compare with fp32 on the calibration texts.
  Result<Int8Classifier> loaded = LoadInt8Classifier(options.output);
  if (!loaded.ok()) return fail(Status::Internal("reading back: " + loaded.status().message()), kExitError);
  if (!calibration.empty()) {
    const torch::Tensor fp32 = torch::softmax(
        Logits([&](const ClassificationBatch& b) { return bundle->model->Forward(b.input_ids, b.token_type_ids,
                                                                                 b.lengths, false); },
               calibration, options.batch_size, pad_id),
        1);
    const torch::Tensor int8 = torch::softmax(
        Logits([&](const ClassificationBatch& b) { return loaded->model->Forward(b.input_ids, b.token_type_ids,
                                                                                 b.lengths); },
               calibration, options.batch_size, pad_id),
        1);
    const double agree = fp32.argmax(1).eq(int8.argmax(1)).to(torch::kDouble).mean().item<double>();
    const double max_diff = (fp32 - int8).abs().max().item<double>();
    LOG(INFO) << "[quantize] int8 against fp32 on the " << calibration.size() << " calibration texts: labels agree on "
              << 100 * agree << "%, largest probability difference " << max_diff;
  }
  return outcome;
}

}  // namespace bert
