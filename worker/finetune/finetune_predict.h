// Inference with a sequence classifier: batched class probabilities over
// encoded examples (the trainer's dev/test evaluation and prediction), and
// `bert-worker --predict`, which labels a file of texts with a fine-tuned
// HF directory (fp32, or int8 as `bertctl quantize` writes it: detected from
// its config.json, worker/compress/int8_format.h; int8 runs on the CPU) and
// writes one JSON line per input example, in input order:
//   {"label": "<name>", "probabilities": {"<label>": p, ...}}
// (labels from the directory's config.json id2label; written atomically).
// Not thread-safe (one model, one thread).
#pragma once

#include "worker/torch.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "finetune/classification_data.h"
#include "worker/model/bert_heads.h"
#include "worker/comm/communicator.h"
#include "worker/finetune/finetune_loss.h"
#include "worker/finetune/finetune_model.h"

namespace bert {

struct InferenceResult {
  torch::Tensor probabilities;     // [N, C] double, softmax of the logits, in feature order
  std::vector<int32_t> predicted;  // argmax per example
  double loss = 0;                 // mean loss over labelled examples (when a loss was given)
};

// Evaluation mode (no dropout), batches of batch_size in feature order.
// With `comm` (may be null: one process), rank r scores a contiguous slice
// of the features and the results are summed across ranks, so every rank
// returns the whole result. `loss` (may be null) also computes the mean
// loss against the features' labels (all must be labelled then).
Result<InferenceResult> RunInference(BertForSequenceClassification* model,
                                     const std::vector<finetune::Feature>& features, int32_t batch_size, int32_t pad_id,
                                     Communicator* comm, const ClassificationLossOptions* loss = nullptr);

// The same over any classifier: `logits` maps a batch (on `device`) to its
// [B, num_labels] logits (e.g. the int8 model, worker/compress/int8_model.h).
using ClassifierLogits = std::function<torch::Tensor(const ClassificationBatch&)>;
Result<InferenceResult> RunInference(const ClassifierLogits& logits, int64_t num_labels, torch::Device device,
                                     const std::vector<finetune::Feature>& features, int32_t batch_size, int32_t pad_id,
                                     Communicator* comm, const ClassificationLossOptions* loss = nullptr);

struct PredictOptions {
  std::string model_dir;  // fine-tuned HF directory (config.json with id2label)
  std::string input;      // examples to label (JSONL, CSV or TSV)
  std::string output;     // JSON lines, one per example
  finetune::FileFormat format = finetune::FileFormat::kAuto;
  std::string text_field = "text";
  std::string text_pair_field;  // "" = single texts
  int32_t batch_size = 64;
  int32_t max_seq_len = 0;       // 0 = the directory's tokenizer_config model_max_length
  int32_t intra_op_threads = 0;  // 0 = LibTorch's default
  std::string device = "auto";   // auto | cpu | cuda (worker/train/device.h)
};

// One JSON line per example of `input` (see above). Errors name the file
// and line; the output exists only when complete.
struct PredictOutcome {
  Status status;
  int exit_code = 0;  // common/protocol.h ExitCode
  int64_t num_examples = 0;
};
PredictOutcome RunPredict(const PredictOptions& options);

}  // namespace bert
