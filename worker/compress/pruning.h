// Structured pruning of a fine-tuned classifier (`bertctl prune`): whole
// attention heads and feed-forward neurons are removed, leaving a smaller
// dense model.
//
// Importance (Michel, Levy and Neubig 2019, "Are Sixteen Heads Really Better
// than One?", section 4.1): a gate xi_h on head h's output, at xi = 1, has
// dL/dxi_h = <W_o^(h), dL/dW_o^(h)>, the Frobenius product of the attention
// output weight's columns that read head h with their gradient (the output is
// sum_h xi_h W_o^(h) ctx_h, so both sides are sum_t g_t^T W_o^(h) ctx_h,t).
// No gates are added to the model: the gradient of the flat buffer gives it.
// I_h is the sum over batches of |dL/dxi_h| on labelled data, normalised by
// its L2 norm within each layer (their section 4.2). The same holds for an
// FFN neuron k with the column k of the output dense weight (Molchanov et al.
// 2017, first-order Taylor importance).
//
// Choice: the `heads` least important heads over all layers go (a layer keeps
// at least one), and in each layer the most important round(ffn_keep * I)
// neurons stay (the same width everywhere, so intermediate_size describes it).
// The output directory is a fine-tuned classifier directory with config.json
// "pruned_heads" ({"layer": [original head indices]}, transformers 4's key)
// and the smaller shapes; eval and predict run it at its size, and bertctl
// export re-inserts the removed heads as zeros for transformers 5, which no
// longer prunes heads. prune.json records the scores and what was removed
// (removed_heads_by_layer and kept_neurons in the indices of the model as it
// was, pruned_heads in original head indices).
// Not thread-safe.
#pragma once

#include "worker/torch.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "finetune/classification_data.h"
#include "interop/safetensors.h"
#include "worker/model/bert_heads.h"

namespace bert {

struct PruneImportance {
  std::vector<std::vector<double>> heads;    // [layer][head of the layer as it is], normalised per layer
  std::vector<std::vector<double>> neurons;  // [layer][FFN neuron], raw sums
};

// Sums |dL/dxi| over batches of `features` (evaluation mode, cross-entropy
// against their labels, which must be set).
Result<PruneImportance> ComputePruneImportance(BertForSequenceClassification* model,
                                               const std::vector<finetune::Feature>& features, int32_t batch_size,
                                               int32_t pad_id);

struct PrunePlan {
  std::vector<std::vector<int64_t>> remove_heads;  // [layer]: head indices of the layer as it is, sorted
  std::vector<std::vector<int64_t>> keep_neurons;  // [layer]: FFN neurons kept, sorted
};

// The plan above; `heads` in [0, total heads - layers], ffn_keep in (0, 1]. Pure.
Result<PrunePlan> ChoosePrune(const PruneImportance& importance, int64_t heads, double ffn_keep);

// `tensors` of a classifier of `config` with the plan applied (rows of
// query/key/value and columns of attention.output.dense for heads; rows of
// intermediate.dense and columns of output.dense for neurons), and `config`
// updated (pruned_heads in original head indices, intermediate_size). Pure.
Result<std::vector<NamedTensor>> ApplyPrune(const std::vector<NamedTensor>& tensors, const PrunePlan& plan,
                                            BertConfig* config);

struct PruneOptions {
  std::string model_dir;  // fine-tuned classifier (HF directory)
  std::string data;       // labelled examples the importance is measured on
  finetune::FileFormat format = finetune::FileFormat::kAuto;
  finetune::FieldNames fields;
  int64_t heads = 0;       // attention heads to remove, over all layers
  double ffn_keep = 1.0;   // share of each layer's FFN neurons kept
  int32_t batch_size = 32;
  int32_t max_seq_len = 0;  // 0 = the model's tokenizer_config model_max_length
  int32_t intra_op_threads = 0;
  std::string output;       // the pruned classifier directory
};

struct PruneOutcome {
  Status status;
  int exit_code = 0;  // common/protocol.h ExitCode
  int64_t parameters_before = 0, parameters_after = 0;
};
PruneOutcome RunPrune(const PruneOptions& options);

}  // namespace bert
