// The trainable models: BertForPreTraining (masked LM + next sentence
// prediction, Devlin et al. 2019 section 3.1) and
// BertForSequenceClassification (section 4.1), numerically as HuggingFace's
// classes of the same names and with the same parameter names.
//
// Each owns its parameters (one FlatParameters: values and gradients are two
// flat buffers, flat_parameters.h) and a DropoutRng. Construction is
// deterministic given ModelOptions::seed: the same seed gives bit-identical
// initial weights, and, with the same batches, bit-identical training on the
// CPU for a fixed thread count.
//
// BertForPreTraining's MLM decoder is tied to the word embeddings (the same
// view, so its gradient adds into the same flat range) and has its own bias
// cls.predictions.bias; HF's state_dict also lists the aliases
// cls.predictions.decoder.weight and cls.predictions.decoder.bias, which
// checkpoint export writes from those two. The MLM head runs only on the
// masked rows, so its cost is O(M*H*V), not O(B*T*H*V).
//
// Not thread-safe: one model per training thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "worker/torch.h"

#include "common/status.h"
#include "worker/model/bert_config.h"
#include "worker/model/bert_model.h"
#include "worker/model/flat_parameters.h"
#include "worker/train/pretrain_batch.h"

namespace bert {

struct ModelOptions {
  uint64_t seed = 42;                    // decides the initial weights and the dropout stream
  torch::Dtype dtype = torch::kFloat32;  // parameters' dtype (kFloat64 for gradient checks)
  torch::Device device = torch::kCPU;
};

// Losses and counts of one forward pass of BertForPreTraining.
struct PreTrainingLoss {
  torch::Tensor loss;         // scalar: mlm_loss + nsp_loss, differentiable
  torch::Tensor mlm, nsp;     // its two terms, differentiable (weighted apart by the trainer)
  double mlm_loss = 0;        // mean cross-entropy over masked positions
  double nsp_loss = 0;        // mean cross-entropy over sequences
  int64_t mlm_correct = 0;    // masked positions whose argmax is the label
  int64_t num_masked = 0;
  int64_t nsp_correct = 0;
  int64_t num_sequences = 0;
};

std::vector<ParameterSpec> BertForPreTrainingSpecs(const BertConfig& config);
std::vector<ParameterSpec> BertForSequenceClassificationSpecs(const BertConfig& config);

class BertForPreTraining {
 public:
  BertForPreTraining(const BertConfig& config, const ModelOptions& options = ModelOptions());
  // Reads and validates an HF config.json (errors name the file and key).
  static Result<std::unique_ptr<BertForPreTraining>> FromConfigFile(const std::string& path,
                                                                    const ModelOptions& options = ModelOptions());

  struct Output {
    torch::Tensor mlm_hidden;  // [M, H]: the MLM transform's output at batch.masked_positions, in that order
    torch::Tensor nsp_logits;  // [B, 2]: index 0 = "B follows A"
    torch::Tensor sequence;    // [B*T, H] final hidden states
  };
  Output Forward(const PretrainBatch& batch, bool training);
  // [M, V] MLM logits of a forward's masked rows (the decoder applied to
  // mlm_hidden). Loss() does not need them: it fuses decoder and loss.
  torch::Tensor MlmLogits(const Output& output) const;
  // MLM logits at every position, [B*T, V] (tests: the masked-only path must match it).
  torch::Tensor FullMlmLogits(const PretrainBatch& batch, bool training);
  // Losses of `output` against the batch's labels (mlm_loss.h's fused
  // decoder + cross-entropy). Counts are computed without grad.
  PreTrainingLoss Loss(const Output& output, const PretrainBatch& batch) const;

  const BertConfig& config() const { return config_; }
  FlatParameters& parameters() { return params_; }
  const FlatParameters& parameters() const { return params_; }
  DropoutRng& dropout_rng() { return rng_; }
  // Activation checkpointing of the encoder layers in training passes
  // (ForwardMode::checkpoint_layers; train.activation_checkpointing).
  void set_activation_checkpointing(bool on) { checkpoint_layers_ = on; }
  bool activation_checkpointing() const { return checkpoint_layers_; }

 private:
  torch::Tensor MlmTransform(const torch::Tensor& rows) const;  // [R, H] -> [R, H]

  BertConfig config_;
  FlatParameters params_;
  BertModel bert_;
  DropoutRng rng_;
  bool checkpoint_layers_ = false;
  torch::Tensor transform_weight_, transform_bias_, transform_norm_weight_, transform_norm_bias_;
  torch::Tensor decoder_weight_, decoder_bias_;  // word embeddings (tied), cls.predictions.bias
  torch::Tensor nsp_weight_, nsp_bias_;
};

class BertForSequenceClassification {
 public:
  BertForSequenceClassification(const BertConfig& config, const ModelOptions& options = ModelOptions());
  static Result<std::unique_ptr<BertForSequenceClassification>> FromConfigFile(
      const std::string& path, const ModelOptions& options = ModelOptions());

  // [B, num_labels] logits from the pooled [CLS] representation (after dropout).
  torch::Tensor Forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                        const torch::Tensor& lengths, bool training);

  const BertConfig& config() const { return config_; }
  FlatParameters& parameters() { return params_; }
  const FlatParameters& parameters() const { return params_; }
  DropoutRng& dropout_rng() { return rng_; }
  // The encoder under the classifier head (its hidden states and pooled output).
  const BertModel& encoder() const { return bert_; }

 private:
  BertConfig config_;
  FlatParameters params_;
  BertModel bert_;
  DropoutRng rng_;
  torch::Tensor classifier_weight_, classifier_bias_;
};

}  // namespace bert
