#include "worker/compress/pruning.h"

#include <glog/logging.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>
#include <tuple>

#include "common/file_util.h"
#include "common/protocol.h"
#include "interop/pretrained.h"
#include "worker/finetune/finetune_loss.h"
#include "worker/finetune/finetune_model.h"

namespace bert {
namespace {

std::string LayerName(int64_t layer) { return "bert.encoder.layer." + std::to_string(layer) + "."; }

// Rows `rows` of a row-major [R, C] tensor (a vector: R = its length, C = 1).
NamedTensor KeepRows(const NamedTensor& tensor, const std::vector<int64_t>& rows) {
  const int64_t columns = tensor.shape.size() == 2 ? tensor.shape[1] : 1;
  NamedTensor out{tensor.name, tensor.shape, {}};
  out.shape[0] = static_cast<int64_t>(rows.size());
  out.values.reserve(rows.size() * static_cast<size_t>(columns));
  for (int64_t row : rows) {
    const auto begin = tensor.values.begin() + row * columns;
    out.values.insert(out.values.end(), begin, begin + columns);
  }
  return out;
}

// Columns `columns` of a row-major [R, C] tensor.
NamedTensor KeepColumns(const NamedTensor& tensor, const std::vector<int64_t>& columns) {
  const int64_t width = tensor.shape[1];
  NamedTensor out{tensor.name, {tensor.shape[0], static_cast<int64_t>(columns.size())}, {}};
  out.values.reserve(static_cast<size_t>(tensor.shape[0]) * columns.size());
  for (int64_t row = 0; row < tensor.shape[0]; ++row) {
    for (int64_t column : columns) out.values.push_back(tensor.values[row * width + column]);
  }
  return out;
}

// Every index in [0, n) not in `removed` (sorted).
std::vector<int64_t> Complement(int64_t n, const std::vector<int64_t>& removed) {
  std::vector<int64_t> kept;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::binary_search(removed.begin(), removed.end(), i)) kept.push_back(i);
  }
  return kept;
}

int64_t CountParameters(const std::vector<NamedTensor>& tensors) {
  int64_t count = 0;
  for (const NamedTensor& tensor : tensors) count += static_cast<int64_t>(tensor.values.size());
  return count;
}

}  // namespace

Result<PruneImportance> ComputePruneImportance(BertForSequenceClassification* model,
                                               const std::vector<finetune::Feature>& features, int32_t batch_size,
                                               int32_t pad_id) {
  CHECK_GT(batch_size, 0);
  const BertConfig& config = model->config();
  FlatParameters& params = model->parameters();
  const int64_t layers = config.num_hidden_layers, d = config.head_size();
  PruneImportance importance;
  std::vector<torch::Tensor> head_sums, neuron_sums;
  for (int64_t l = 0; l < layers; ++l) {
    head_sums.push_back(torch::zeros({config.heads_in_layer(l)}, torch::kDouble));
    neuron_sums.push_back(torch::zeros({config.intermediate_size}, torch::kDouble));
  }
  std::vector<int64_t> order(features.size());
  std::iota(order.begin(), order.end(), 0);
  const int64_t count = static_cast<int64_t>(features.size());
  for (int64_t first = 0; first < count; first += batch_size) {
    const int64_t last = std::min(count, first + batch_size);
    const ClassificationBatch batch = CollateFeatures(features, order, first, last, pad_id);
    if (batch.labels.min().item<int64_t>() < 0) {
      return Status::InvalidArgument("pruning needs labelled examples (example " + std::to_string(first + 1) +
                                     " onward has none)");
    }
    params.ZeroGrad();
    torch::Tensor logits = model->Forward(batch.input_ids, batch.token_type_ids, batch.lengths, /*training=*/false);
    CrossEntropyLoss(logits, batch.labels, 0.0, {}, static_cast<double>(last - first)).backward();
    torch::NoGradGuard no_grad;
    for (int64_t l = 0; l < layers; ++l) {
      const size_t output = static_cast<size_t>(params.IndexOf(LayerName(l) + "attention.output.dense.weight"));
      const torch::Tensor gate = (params.param(output) * params.grad(output)).to(torch::kDouble);  // [H, A]
      head_sums[l] += gate.view({gate.size(0), config.heads_in_layer(l), d}).sum(std::vector<int64_t>{0, 2}).abs();
      const size_t ffn = static_cast<size_t>(params.IndexOf(LayerName(l) + "output.dense.weight"));
      neuron_sums[l] += (params.param(ffn) * params.grad(ffn)).to(torch::kDouble).sum(0).abs();  // [I]
    }
  }
  params.ZeroGrad();
  for (int64_t l = 0; l < layers; ++l) {
    const double norm = head_sums[l].norm().item<double>();
    if (norm > 0) head_sums[l] /= norm;
    importance.heads.emplace_back(head_sums[l].data_ptr<double>(), head_sums[l].data_ptr<double>() + head_sums[l].numel());
    importance.neurons.emplace_back(neuron_sums[l].data_ptr<double>(),
                                    neuron_sums[l].data_ptr<double>() + neuron_sums[l].numel());
  }
  return importance;
}

Result<PrunePlan> ChoosePrune(const PruneImportance& importance, int64_t heads, double ffn_keep) {
  const int64_t layers = static_cast<int64_t>(importance.heads.size());
  int64_t total = 0;
  std::vector<std::tuple<double, int64_t, int64_t>> ranked;  // (score, layer, head), least important first
  for (int64_t l = 0; l < layers; ++l) {
    total += static_cast<int64_t>(importance.heads[l].size());
    for (size_t h = 0; h < importance.heads[l].size(); ++h) ranked.emplace_back(importance.heads[l][h], l, h);
  }
  if (heads < 0 || heads > total - layers) {
    return Status::InvalidArgument("--heads: " + std::to_string(heads) + " is not in [0, " +
                                   std::to_string(total - layers) + "]: the model has " + std::to_string(total) +
                                   " heads in " + std::to_string(layers) + " layers and each layer keeps one");
  }
  if (!(ffn_keep > 0 && ffn_keep <= 1)) {
    return Status::InvalidArgument("--ffn-keep: must be in (0, 1], got " + std::to_string(ffn_keep));
  }
  std::sort(ranked.begin(), ranked.end());
  PrunePlan plan;
  plan.remove_heads.resize(static_cast<size_t>(layers));
  int64_t removed = 0;
  for (const auto& [score, l, h] : ranked) {
    if (removed == heads) break;
    const int64_t left = static_cast<int64_t>(importance.heads[l].size() - plan.remove_heads[l].size());
    if (left <= 1) continue;  // the last head of a layer stays
    plan.remove_heads[l].push_back(h);
    ++removed;
  }
  for (int64_t l = 0; l < layers; ++l) {
    std::sort(plan.remove_heads[l].begin(), plan.remove_heads[l].end());
    const std::vector<double>& scores = importance.neurons[l];
    const int64_t width = static_cast<int64_t>(scores.size());
    const int64_t keep = std::clamp<int64_t>(std::llround(ffn_keep * static_cast<double>(width)), 1, width);
    std::vector<int64_t> order(static_cast<size_t>(width));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
    order.resize(static_cast<size_t>(keep));
    std::sort(order.begin(), order.end());
    plan.keep_neurons.push_back(std::move(order));
  }
  return plan;
}

Result<std::vector<NamedTensor>> ApplyPrune(const std::vector<NamedTensor>& tensors, const PrunePlan& plan,
                                            BertConfig* config) {
  const int64_t layers = config->num_hidden_layers, d = config->head_size();
  if (static_cast<int64_t>(plan.remove_heads.size()) != layers ||
      static_cast<int64_t>(plan.keep_neurons.size()) != layers) {
    return Status::InvalidArgument("pruning plan: " + std::to_string(plan.remove_heads.size()) + " layers, the model has " +
                                   std::to_string(layers));
  }
  std::map<std::string, std::vector<int64_t>> rows, columns;  // tensor name -> what it keeps
  std::map<int64_t, std::vector<int64_t>> pruned_heads = config->pruned_heads;
  for (int64_t l = 0; l < layers; ++l) {
    const std::vector<int64_t> kept_heads = Complement(config->heads_in_layer(l), plan.remove_heads[l]);
    std::vector<int64_t> attention;  // the rows of q/k/v (columns of the output) those heads span
    for (int64_t head : kept_heads) {
      for (int64_t i = 0; i < d; ++i) attention.push_back(head * d + i);
    }
    const std::string layer = LayerName(l);
    for (const char* part : {"query", "key", "value"}) {
      rows[layer + "attention.self." + part + ".weight"] = attention;
      rows[layer + "attention.self." + part + ".bias"] = attention;
    }
    columns[layer + "attention.output.dense.weight"] = attention;
    rows[layer + "intermediate.dense.weight"] = plan.keep_neurons[l];
    rows[layer + "intermediate.dense.bias"] = plan.keep_neurons[l];
    columns[layer + "output.dense.weight"] = plan.keep_neurons[l];
    // Heads are named by their original index: the layer's heads as it is
    // are the original ones not pruned before, in order.
    const std::vector<int64_t> original = Complement(config->num_attention_heads, pruned_heads[l]);
    for (int64_t head : plan.remove_heads[l]) {
      if (head >= static_cast<int64_t>(original.size())) {
        return Status::InvalidArgument("pruning plan: layer " + std::to_string(l) + " has no head " + std::to_string(head));
      }
      pruned_heads[l].push_back(original[head]);
    }
    std::sort(pruned_heads[l].begin(), pruned_heads[l].end());
    if (pruned_heads[l].empty()) pruned_heads.erase(l);
    if (plan.keep_neurons[l].size() != plan.keep_neurons[0].size()) {
      return Status::InvalidArgument("pruning plan: every layer must keep as many FFN neurons (intermediate_size)");
    }
  }
  std::vector<NamedTensor> out;
  for (const NamedTensor& tensor : tensors) {
    if (auto it = rows.find(tensor.name); it != rows.end()) {
      out.push_back(KeepRows(tensor, it->second));
    } else if (auto column = columns.find(tensor.name); column != columns.end()) {
      out.push_back(KeepColumns(tensor, column->second));
    } else {
      out.push_back(tensor);
    }
  }
  config->pruned_heads = std::move(pruned_heads);
  config->intermediate_size = static_cast<int64_t>(plan.keep_neurons[0].size());
  return out;
}

PruneOutcome RunPrune(const PruneOptions& options) {
  PruneOutcome outcome;
  auto fail = [&outcome](Status status, int exit_code) {
    outcome.status = std::move(status);
    outcome.exit_code = exit_code;
    return outcome;
  };
  if (options.intra_op_threads > 0) torch::set_num_threads(options.intra_op_threads);
  Result<ClassifierBundle> bundle = LoadClassifier(options.model_dir);
  if (!bundle.ok()) return fail(bundle.status(), kExitUsage);
  const int32_t max_seq_len = options.max_seq_len > 0 ? options.max_seq_len
                                                      : static_cast<int32_t>(bundle->model_max_length);
  Result<std::vector<finetune::Example>> examples =
      finetune::ReadExamples(options.data, options.fields, options.format, /*require_label=*/true);
  if (!examples.ok()) return fail(examples.status(), kExitBadData);
  if (examples->empty()) return fail(Status::InvalidArgument(options.data + ": no examples"), kExitBadData);
  Result<finetune::LabelMap> labels = finetune::LabelMap::FromNames(bundle->labels, options.model_dir);
  if (!labels.ok()) return fail(labels.status(), kExitUsage);
  Result<finetune::EncodedSet> encoded =
      finetune::EncodeExamples(*examples, *labels, *bundle->tokenizer, max_seq_len, options.data);
  if (!encoded.ok()) return fail(encoded.status(), kExitBadData);

  Result<PruneImportance> importance = ComputePruneImportance(bundle->model.get(), encoded->features,
                                                              options.batch_size, std::max(0, bundle->vocab->pad_id()));
  if (!importance.ok()) return fail(importance.status(), kExitBadData);
  Result<PrunePlan> plan = ChoosePrune(*importance, options.heads, options.ffn_keep);
  if (!plan.ok()) return fail(plan.status(), kExitUsage);
  Result<PretrainedModel> source = LoadPretrained(options.model_dir, /*with_weights=*/true);
  if (!source.ok()) return fail(source.status(), kExitUsage);
  BertConfig config = bundle->model->config();
  Result<std::vector<NamedTensor>> pruned = ApplyPrune(source->tensors, *plan, &config);
  if (!pruned.ok()) return fail(pruned.status(), kExitError);
  outcome.parameters_before = CountParameters(source->tensors);
  outcome.parameters_after = CountParameters(*pruned);

  PretrainedModel model = std::move(source).value();
  model.tensors = std::move(pruned).value();
  model.config["intermediate_size"] = config.intermediate_size;
  model.config["pruned_heads"] = PrunedHeadsToJson(config.pruned_heads);
  Status written = WriteHfDirectory(options.output, model);
  if (!written.ok()) return fail(written, kExitError);
  // What was measured and removed, beside the model.
  nlohmann::json report = {{"source", options.model_dir},
                           {"data", options.data},
                           {"examples", examples->size()},
                           {"heads_removed", options.heads},
                           {"ffn_keep", options.ffn_keep},
                           {"pruned_heads", PrunedHeadsToJson(config.pruned_heads)},
                           {"intermediate_size", config.intermediate_size},
                           {"parameters_before", outcome.parameters_before},
                           {"parameters_after", outcome.parameters_after},
                           {"kept_neurons", plan->keep_neurons},
                           {"removed_heads_by_layer", plan->remove_heads},
                           {"head_importance", importance->heads}};
  written = WriteFileAtomic(options.output + "/prune.json", report.dump(2) + "\n");
  if (!written.ok()) return fail(written, kExitError);
  // The result must load as any classifier does.
  Result<ClassifierBundle> check = LoadClassifier(options.output);
  if (!check.ok()) return fail(Status::Internal("the pruned model does not load: " + check.status().message()), kExitError);
  LOG(INFO) << "[prune] " << options.model_dir << ": removed " << options.heads << " heads (now "
            << PrunedHeadsToJson(config.pruned_heads).dump() << " pruned), kept " << config.intermediate_size
            << " FFN neurons a layer; " << outcome.parameters_before << " -> " << outcome.parameters_after
            << " parameters; wrote " << options.output;
  return outcome;
}

}  // namespace bert
