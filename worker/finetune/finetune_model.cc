#include "worker/finetune/finetune_model.h"

#include <glog/logging.h>

#include <algorithm>

namespace bert {
namespace {

bool StartsWith(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

// Builds the model, tokenizer and label list around a parsed config.
Result<ClassifierBundle> MakeBundle(BertConfig bert_config, const std::vector<std::string>& labels,
                                    std::shared_ptr<const Vocab> vocab, bool lower_case, uint64_t seed,
                                    torch::Dtype dtype, const std::string& source, torch::Device device) {
  bert_config.num_labels = static_cast<int64_t>(labels.size());
  BERT_RETURN_IF_ERROR(bert_config.Validate(source));
  if (vocab->size() > bert_config.vocab_size) {
    return Status::InvalidArgument(source + ": the vocabulary has " + std::to_string(vocab->size()) +
                                   " tokens but vocab_size is " + std::to_string(bert_config.vocab_size));
  }
  ClassifierBundle bundle;
  ModelOptions options;
  options.seed = seed;
  options.dtype = dtype;
  options.device = device;
  bundle.model = std::make_unique<BertForSequenceClassification>(bert_config, options);
  TokenizerOptions tokenizer_options;
  tokenizer_options.lower_case = lower_case;
  bundle.tokenizer = std::make_unique<FullTokenizer>(vocab, tokenizer_options);
  bundle.vocab = std::move(vocab);
  bundle.labels = labels;
  return bundle;
}

}  // namespace

ClassificationBatch CollateFeatures(const std::vector<finetune::Feature>& features, const std::vector<int64_t>& order,
                                    int64_t begin, int64_t end, int32_t pad_id) {
  ClassificationBatch batch;
  CHECK(begin >= 0 && begin <= end && end <= static_cast<int64_t>(order.size()));
  const int64_t rows = end - begin;
  if (rows == 0) return batch;
  int64_t longest = 1;
  for (int64_t i = begin; i < end; ++i) {
    longest = std::max<int64_t>(longest, static_cast<int64_t>(features.at(order[i]).input_ids.size()));
  }
  batch.input_ids = torch::full({rows, longest}, pad_id, torch::kLong);
  batch.token_type_ids = torch::zeros({rows, longest}, torch::kLong);
  batch.lengths = torch::empty({rows}, torch::kLong);
  batch.labels = torch::empty({rows}, torch::kLong);
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto types = batch.token_type_ids.accessor<int64_t, 2>();
  auto lengths = batch.lengths.accessor<int64_t, 1>();
  auto labels = batch.labels.accessor<int64_t, 1>();
  for (int64_t row = 0; row < rows; ++row) {
    const finetune::Feature& feature = features.at(order[begin + row]);
    const int64_t length = static_cast<int64_t>(feature.input_ids.size());
    CHECK_GT(length, 0);
    for (int64_t t = 0; t < length; ++t) {
      ids[row][t] = feature.input_ids[t];
      types[row][t] = feature.token_type_ids[t];
    }
    lengths[row] = length;
    labels[row] = feature.label;
    batch.num_tokens += length;
  }
  return batch;
}

ClassificationBatch ClassificationBatch::To(torch::Device device) const {
  if (!input_ids.defined() || input_ids.device() == device) return *this;
  ClassificationBatch out = *this;
  out.input_ids = input_ids.to(device, /*non_blocking=*/true);
  out.token_type_ids = token_type_ids.to(device, /*non_blocking=*/true);
  out.lengths = lengths.to(device, /*non_blocking=*/true);
  out.labels = labels.to(device, /*non_blocking=*/true);
  return out;
}

Status CopyPretrainedTensors(const std::vector<NamedTensor>& tensors, const std::string& source, bool with_classifier,
                             BertForSequenceClassification* model) {
  FlatParameters& params = model->parameters();
  Result<std::vector<bool>> copied = params.CopyNamed(
      tensors, source,
      [with_classifier](const std::string& name) {
        return StartsWith(name, "bert.") || (with_classifier && StartsWith(name, "classifier."));
      },
      "[finetune]");
  if (!copied.ok()) return copied.status();
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string& name = params.slot(i).spec.name;
    if ((*copied)[i] || StartsWith(name, "bert.pooler.")) continue;
    if (StartsWith(name, "bert.") || with_classifier) {
      return Status::InvalidArgument(source + ": tensor " + name + " is missing");
    }
  }
  return Status::Ok();
}

Result<ClassifierBundle> BuildFinetuneModel(const finetune::FinetuneConfig& config, torch::Dtype dtype,
                                            torch::Device device) {
  const std::string& source = config.source;
  if (config.labels.size() < 2) {
    return Status::InvalidArgument(source + ": labels: need at least 2 resolved labels, got " +
                                   std::to_string(config.labels.size()));
  }
  if (config.init == "none") {
    if (config.model.empty()) return Status::InvalidArgument(source + ": model: required when init is none");
    if (config.vocab.empty()) return Status::InvalidArgument(source + ": vocab: required when init is none");
    Result<BertConfig> bert_config = LoadBertConfig(config.model);
    if (!bert_config.ok()) return bert_config.status();
    Result<std::shared_ptr<const Vocab>> vocab = Vocab::Load(config.vocab);
    if (!vocab.ok()) return vocab.status();
    Result<ClassifierBundle> bundle =
        MakeBundle(*bert_config, config.labels, *vocab, config.lower_case, config.seed, dtype, config.model, device);
    if (bundle.ok()) bundle->model_max_length = config.max_seq_len;
    return bundle;
  }
  Result<PretrainedModel> pretrained = LoadPretrained(config.init, /*with_weights=*/true);
  if (!pretrained.ok()) return pretrained.status();
  Result<BertConfig> bert_config = BertConfigFromJson(pretrained->config, pretrained->path);
  if (!bert_config.ok()) return bert_config.status();
  Result<std::shared_ptr<const Vocab>> vocab = Vocab::FromTokens(pretrained->vocab);
  if (!vocab.ok()) return Status::InvalidArgument(pretrained->path + ": vocabulary: " + vocab.status().message());
  Result<ClassifierBundle> bundle =
      MakeBundle(*bert_config, config.labels, *vocab, pretrained->do_lower_case, config.seed, dtype, pretrained->path,
                 device);
  if (!bundle.ok()) return bundle.status();
  // A fine-tuned init with exactly these labels, in this order (a pruned
  // model's recovery, continued training) keeps its classifier, as
  // transformers' from_pretrained does; any other init gets a new head.
  bool same_labels = pretrained->config.contains("id2label") && pretrained->config["id2label"].is_object() &&
                     pretrained->config["id2label"].size() == config.labels.size();
  for (size_t i = 0; same_labels && i < config.labels.size(); ++i) {
    const nlohmann::json name = pretrained->config["id2label"].value(std::to_string(i), nlohmann::json());
    same_labels = name.is_string() && name.get<std::string>() == config.labels[i];
  }
  bool has_classifier = false;
  for (const NamedTensor& tensor : pretrained->tensors) has_classifier |= tensor.name == "classifier.weight";
  const bool keep_classifier = same_labels && has_classifier;
  if (keep_classifier) LOG(INFO) << "[finetune] " << pretrained->path << ": same labels: its classifier is kept";
  BERT_RETURN_IF_ERROR(
      CopyPretrainedTensors(pretrained->tensors, pretrained->path, keep_classifier, bundle->model.get()));
  bundle->model_max_length = config.max_seq_len;
  return bundle;
}

Result<std::vector<std::string>> ClassifierLabelNames(const nlohmann::json& json, const std::string& source) {
  if (!json.contains("id2label") || !json["id2label"].is_object()) {
    return Status::InvalidArgument(source + ": config.json: id2label is missing (not a fine-tuned classifier)");
  }
  std::vector<std::string> names(json["id2label"].size());
  for (const auto& [key, value] : json["id2label"].items()) {
    size_t id = 0;
    try {
      id = std::stoul(key);
    } catch (const std::exception&) {
      return Status::InvalidArgument(source + ": config.json: id2label: key \"" + key + "\" is not an id");
    }
    if (id >= names.size() || !value.is_string() || !names[id].empty()) {
      return Status::InvalidArgument(source + ": config.json: id2label: ids must be 0.." +
                                     std::to_string(names.size() - 1) + " with string names, got \"" + key + "\"");
    }
    names[id] = value.get<std::string>();
  }
  Result<finetune::LabelMap> labels = finetune::LabelMap::FromNames(names, source + ": config.json: id2label");
  if (!labels.ok()) return labels.status();
  return names;
}

Result<ClassifierBundle> LoadClassifier(const std::string& dir, torch::Device device) {
  Result<PretrainedModel> pretrained = LoadPretrained(dir, /*with_weights=*/true);
  if (!pretrained.ok()) return pretrained.status();
  const std::string& source = pretrained->path;
  const nlohmann::json& json = pretrained->config;
  Result<std::vector<std::string>> label_names = ClassifierLabelNames(json, source);
  if (!label_names.ok()) return label_names.status();
  const std::vector<std::string>& names = *label_names;
  Result<BertConfig> bert_config = BertConfigFromJson(json, source);
  if (!bert_config.ok()) return bert_config.status();
  Result<std::shared_ptr<const Vocab>> vocab = Vocab::FromTokens(pretrained->vocab);
  if (!vocab.ok()) return Status::InvalidArgument(source + ": vocabulary: " + vocab.status().message());
  Result<ClassifierBundle> bundle =
      MakeBundle(*bert_config, names, *vocab, pretrained->do_lower_case, 0, torch::kFloat32, source, device);
  if (!bundle.ok()) return bundle.status();
  BERT_RETURN_IF_ERROR(CopyPretrainedTensors(pretrained->tensors, source, true, bundle->model.get()));
  bundle->model_max_length = pretrained->model_max_length;
  return bundle;
}

PretrainedModel ToHfClassifier(const BertForSequenceClassification& model, const torch::Tensor& values,
                               const std::vector<std::string>& labels, const Vocab& vocab, bool lower_case,
                               int64_t model_max_length) {
  const FlatParameters& params = model.parameters();
  CHECK_EQ(values.numel(), params.numel());
  PretrainedModel hf;
  hf.config = model.config().ToJson();
  hf.config["architectures"] = {"BertForSequenceClassification"};
  hf.config["num_labels"] = static_cast<int64_t>(labels.size());
  nlohmann::json id2label = nlohmann::json::object(), label2id = nlohmann::json::object();
  for (size_t id = 0; id < labels.size(); ++id) {
    id2label[std::to_string(id)] = labels[id];
    label2id[labels[id]] = static_cast<int64_t>(id);
  }
  hf.config["id2label"] = id2label;
  hf.config["label2id"] = label2id;
  hf.vocab = vocab.tokens();
  hf.vocab_checksum = vocab.checksum();
  hf.do_lower_case = lower_case;
  hf.model_max_length = model_max_length;
  const torch::Tensor flat = values.detach().to(torch::kCPU, torch::kFloat).contiguous();
  const float* data = flat.data_ptr<float>();
  for (const ParameterSlot& slot : params.slots()) {
    hf.tensors.push_back(NamedTensor{slot.spec.name, slot.spec.shape,
                                     std::vector<float>(data + slot.offset, data + slot.offset + slot.numel)});
  }
  return hf;
}

}  // namespace bert
