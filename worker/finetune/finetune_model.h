// The fine-tuning model and its inputs: a BertForSequenceClassification
// built from a pretrained init (interop/pretrained.h) or from scratch,
// per-batch collation with dynamic padding, and conversion of a trained
// classifier to an HF directory's PretrainedModel.
//
// Weights from an init: every "bert.*" tensor of the model is copied by name
// (a shape mismatch is an error naming the tensor and both shapes; a missing
// one is an error, except the pooler, which then keeps its seeded init);
// tensors the model lacks (pretraining heads "cls.*", an old classifier)
// are ignored. The classifier head is drawn from the seed. Loading a
// fine-tuned HF directory (prediction) also requires "classifier.*".
// Not thread-safe.
#pragma once

#include "worker/torch.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "datapipe/tokenizer.h"
#include "datapipe/vocab.h"
#include "finetune/classification_data.h"
#include "finetune/finetune_config.h"
#include "interop/pretrained.h"
#include "worker/model/bert_heads.h"

namespace bert {

// One padded batch: [B, T] with T the longest example of the batch.
struct ClassificationBatch {
  torch::Tensor input_ids;       // [B, T] int64, padded with the [PAD] id
  torch::Tensor token_type_ids;  // [B, T] int64, 0 in the padding
  torch::Tensor lengths;         // [B] int64, real tokens per row
  torch::Tensor labels;          // [B] int64 (-1 for unlabelled examples)
  int64_t num_tokens = 0;        // sum of lengths
  int64_t size() const { return lengths.defined() ? lengths.size(0) : 0; }
  // The same batch on `device` (itself when it is there already).
  ClassificationBatch To(torch::Device device) const;
};

// features[order[i]] for i in [begin, end), padded to the longest; empty
// when begin == end.
ClassificationBatch CollateFeatures(const std::vector<finetune::Feature>& features, const std::vector<int64_t>& order,
                                    int64_t begin, int64_t end, int32_t pad_id);

// A classifier and the tokenizer it reads text with.
struct ClassifierBundle {
  std::unique_ptr<BertForSequenceClassification> model;
  std::shared_ptr<const Vocab> vocab;
  std::unique_ptr<FullTokenizer> tokenizer;
  std::vector<std::string> labels;  // id order (id2label)
  int64_t model_max_length = 512;   // tokenizer_config's (prediction's default max_seq_len)
};

// The model to fine-tune: config.init ("none": config.model and
// config.vocab with config.lower_case; otherwise LoadPretrained(init))
// with num_labels = config.labels.size(), seeded by config.seed, on
// `device` (weights drawn or read on the CPU, then copied there).
Result<ClassifierBundle> BuildFinetuneModel(const finetune::FinetuneConfig& config,
                                            torch::Dtype dtype = torch::kFloat32, torch::Device device = torch::kCPU);

// Copies `tensors` into `model` as described above. `source` names the
// file in errors; with_classifier also requires (and copies) classifier.*.
Status CopyPretrainedTensors(const std::vector<NamedTensor>& tensors, const std::string& source, bool with_classifier,
                             BertForSequenceClassification* model);

// The label names in id order from a classifier's config.json id2label
// (ids 0..C-1, each once, valid label names); errors name `source`.
Result<std::vector<std::string>> ClassifierLabelNames(const nlohmann::json& config, const std::string& source);

// A fine-tuned classifier from an HF directory (config.json with id2label).
Result<ClassifierBundle> LoadClassifier(const std::string& dir, torch::Device device = torch::kCPU);

// `values` (a flat buffer of the model's layout, e.g. the best weights) as
// an HF BertForSequenceClassification directory's contents.
PretrainedModel ToHfClassifier(const BertForSequenceClassification& model, const torch::Tensor& values,
                               const std::vector<std::string>& labels, const Vocab& vocab, bool lower_case,
                               int64_t model_max_length);

}  // namespace bert
