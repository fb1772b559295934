#include "worker/finetune/finetune_predict.h"

#include <glog/logging.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "common/file_util.h"
#include "common/protocol.h"
#include "worker/compress/int8_format.h"
#include "worker/finetune/finetune_model.h"
#include "worker/train/device.h"

namespace bert {

Result<InferenceResult> RunInference(BertForSequenceClassification* model,
                                     const std::vector<finetune::Feature>& features, int32_t batch_size, int32_t pad_id,
                                     Communicator* comm, const ClassificationLossOptions* loss) {
  auto logits = [model](const ClassificationBatch& batch) {
    return model->Forward(batch.input_ids, batch.token_type_ids, batch.lengths, false);
  };
  return RunInference(logits, model->config().num_labels, model->parameters().values().device(), features, batch_size,
                      pad_id, comm, loss);
}

Result<InferenceResult> RunInference(const ClassifierLogits& forward, int64_t num_labels, torch::Device device,
                                     const std::vector<finetune::Feature>& features, int32_t batch_size, int32_t pad_id,
                                     Communicator* comm, const ClassificationLossOptions* loss) {
  CHECK_GT(batch_size, 0);
  torch::NoGradGuard no_grad;
  const int64_t count = static_cast<int64_t>(features.size());
  const int64_t classes = num_labels;
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->world_size() : 1;
  const int64_t begin = count * rank / world, end = count * (rank + 1) / world;
  std::vector<int64_t> order(static_cast<size_t>(count));
  std::iota(order.begin(), order.end(), 0);
  // probabilities [N, C] then the loss sum: one buffer, one all-reduce.
  torch::Tensor sums = torch::zeros({count * classes + 1}, torch::kDouble);
  torch::Tensor probabilities = sums.narrow(0, 0, count * classes).view({count, classes});
  for (int64_t first = begin; first < end; first += batch_size) {
    const int64_t last = std::min(end, first + batch_size);
    const ClassificationBatch batch = CollateFeatures(features, order, first, last, pad_id).To(device);
    torch::Tensor logits = forward(batch);
    probabilities.narrow(0, first, last - first).copy_(torch::softmax(logits.to(torch::kDouble), 1));
    if (loss != nullptr) {
      if (batch.labels.min().item<int64_t>() < 0) {
        return Status::InvalidArgument("evaluation needs labelled examples (example " + std::to_string(first) +
                                       " onward has none)");
      }
      sums[count * classes] += ClassificationLoss(logits.to(torch::kDouble), batch.labels, *loss, 1.0).item<double>();
    }
  }
  if (comm != nullptr && world > 1) {
    BERT_RETURN_IF_ERROR(comm->AllReduce(sums.data_ptr(), static_cast<size_t>(sums.numel()), CommDataType::kFloat64,
                                         CommReduceOp::kSum));
  }
  InferenceResult result;
  result.probabilities = probabilities;
  const torch::Tensor argmax = count > 0 ? probabilities.argmax(1) : torch::zeros({0}, torch::kLong);
  const auto best = argmax.accessor<int64_t, 1>();
  result.predicted.resize(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) result.predicted[i] = static_cast<int32_t>(best[i]);
  if (loss != nullptr && count > 0) {
    std::vector<int32_t> labels;
    for (const finetune::Feature& feature : features) labels.push_back(feature.label);
    result.loss = sums[count * classes].item<double>() / LossNormalizer(labels, *loss);
  }
  return result;
}

namespace {

// The classifier to predict with: int8 (CPU only) or fp32, by what the directory holds.
struct LoadedClassifier {
  ClassifierBundle bundle;  // vocab, tokenizer, labels, max length; `model` only for fp32
  Int8Classifier int8;      // `model` only for int8
  ClassifierLogits logits;
  torch::Device device = torch::kCPU;
  int64_t max_positions = 0, num_labels = 0;
};

Result<LoadedClassifier> LoadForPrediction(const PredictOptions& options) {
  LoadedClassifier out;
  if (IsInt8ModelDirectory(options.model_dir)) {
    if (options.device == "cuda") {
      return Status::InvalidArgument("--device cuda: " + options.model_dir + " is an int8 model, which runs on the CPU");
    }
    Result<Int8Classifier> loaded = LoadInt8Classifier(options.model_dir);
    if (!loaded.ok()) return loaded.status();
    out.int8 = std::move(loaded).value();
    out.bundle.vocab = out.int8.vocab;
    out.bundle.tokenizer = std::move(out.int8.tokenizer);
    out.bundle.labels = out.int8.labels;
    out.bundle.model_max_length = out.int8.model_max_length;
    out.max_positions = out.int8.model->config().max_position_embeddings;
    out.num_labels = out.int8.model->config().num_labels;
    const Int8BertClassifier* model = out.int8.model.get();
    out.logits = [model](const ClassificationBatch& batch) {
      return model->Forward(batch.input_ids, batch.token_type_ids, batch.lengths);
    };
    LOG(INFO) << "[predict] int8 model (" << out.int8.activations << " activations) on the CPU";
    return out;
  }
  Result<DeviceChoice> choice = ChooseDeviceForThisProcess(options.device, "--device");
  if (!choice.ok()) return choice.status();
  out.device = choice->device;
  Result<ClassifierBundle> loaded = LoadClassifier(options.model_dir, out.device);
  if (!loaded.ok()) return loaded.status();
  out.bundle = std::move(loaded).value();
  out.max_positions = out.bundle.model->config().max_position_embeddings;
  out.num_labels = out.bundle.model->config().num_labels;
  BertForSequenceClassification* model = out.bundle.model.get();
  out.logits = [model](const ClassificationBatch& batch) {
    return model->Forward(batch.input_ids, batch.token_type_ids, batch.lengths, false);
  };
  return out;
}

}  // namespace

PredictOutcome RunPredict(const PredictOptions& options) {
  PredictOutcome outcome;
  auto fail = [&outcome](Status status, int exit_code) {
    outcome.status = std::move(status);
    outcome.exit_code = exit_code;
    return outcome;
  };
  if (options.intra_op_threads > 0) torch::set_num_threads(options.intra_op_threads);
  Result<LoadedClassifier> loaded = LoadForPrediction(options);
  if (!loaded.ok()) return fail(loaded.status(), kExitUsage);
  const ClassifierBundle& bundle = loaded->bundle;
  const int64_t max_positions = loaded->max_positions, num_labels = loaded->num_labels;
  const int64_t max_seq_len = options.max_seq_len > 0 ? options.max_seq_len : bundle.model_max_length;
  if (max_seq_len > max_positions) {
    return fail(Status::InvalidArgument("--max-seq-len: " + std::to_string(max_seq_len) + " exceeds the model's " +
                                        "max_position_embeddings (" + std::to_string(max_positions) + ")"),
                kExitUsage);
  }
  finetune::FieldNames fields;
  fields.text = options.text_field;
  fields.text_pair = options.text_pair_field;
  Result<std::vector<finetune::Example>> examples =
      finetune::ReadExamples(options.input, fields, options.format, /*require_label=*/false);
  if (!examples.ok()) return fail(examples.status(), kExitBadData);
  // Labels in the input play no part in prediction (bertctl eval scores them).
  for (finetune::Example& example : *examples) example.label.clear();
  Result<finetune::LabelMap> labels = finetune::LabelMap::FromNames(bundle.labels, options.model_dir);
  if (!labels.ok()) return fail(labels.status(), kExitUsage);
  Result<finetune::EncodedSet> encoded = finetune::EncodeExamples(*examples, *labels, *bundle.tokenizer,
                                                                  static_cast<int32_t>(max_seq_len), options.input);
  if (!encoded.ok()) return fail(encoded.status(), kExitBadData);
  const int32_t pad_id = std::max(0, bundle.vocab->pad_id());
  Result<InferenceResult> inference =
      RunInference(loaded->logits, num_labels, loaded->device, encoded->features, options.batch_size, pad_id, nullptr);
  if (!inference.ok()) return fail(inference.status(), kExitError);
  std::ostringstream out;
  const auto probabilities = inference->probabilities.accessor<double, 2>();
  for (size_t i = 0; i < inference->predicted.size(); ++i) {
    nlohmann::json line;
    line["label"] = bundle.labels[inference->predicted[i]];
    nlohmann::json probs = nlohmann::json::object();
    for (size_t c = 0; c < bundle.labels.size(); ++c) {
      probs[bundle.labels[c]] = probabilities[static_cast<int64_t>(i)][static_cast<int64_t>(c)];
    }
    line["probabilities"] = probs;
    out << line.dump() << "\n";
  }
  Status written = WriteFileAtomic(options.output, out.str());
  if (!written.ok()) return fail(written, kExitError);
  outcome.num_examples = static_cast<int64_t>(inference->predicted.size());
  LOG(INFO) << "[predict] labelled " << outcome.num_examples << " examples of " << options.input << " -> "
            << options.output
            << (encoded->truncated > 0 ? " (" + std::to_string(encoded->truncated) + " truncated to " +
                                             std::to_string(max_seq_len) + " tokens)"
                                       : "");
  return outcome;
}

}  // namespace bert
