#include "worker/model/bert_heads.h"

#include <glog/logging.h>

#include "worker/model/flat_ops.h"
#include "worker/model/mlm_loss.h"

namespace bert {
namespace {

void AddSpec(std::vector<ParameterSpec>* specs, const std::string& name, std::vector<int64_t> shape, ParamInit init) {
  specs->push_back(ParameterSpec{name, std::move(shape), init, DefaultWeightDecay(name)});
}

}  // namespace

std::vector<ParameterSpec> BertForPreTrainingSpecs(const BertConfig& config) {
  const int64_t h = config.hidden_size;
  std::vector<ParameterSpec> specs;
  AppendBertModelSpecs(config, "bert.", &specs);
  // HF order: BertLMPredictionHead registers its own bias before its
  // children (transform, then the tied decoder, which adds no new tensor).
  AddSpec(&specs, "cls.predictions.bias", {config.vocab_size}, ParamInit::kZeros);
  AddSpec(&specs, "cls.predictions.transform.dense.weight", {h, h}, ParamInit::kNormal);
  AddSpec(&specs, "cls.predictions.transform.dense.bias", {h}, ParamInit::kZeros);
  AddSpec(&specs, "cls.predictions.transform.LayerNorm.weight", {h}, ParamInit::kOnes);
  AddSpec(&specs, "cls.predictions.transform.LayerNorm.bias", {h}, ParamInit::kZeros);
  AddSpec(&specs, "cls.seq_relationship.weight", {2, h}, ParamInit::kNormal);
  AddSpec(&specs, "cls.seq_relationship.bias", {2}, ParamInit::kZeros);
  return specs;
}

std::vector<ParameterSpec> BertForSequenceClassificationSpecs(const BertConfig& config) {
  std::vector<ParameterSpec> specs;
  AppendBertModelSpecs(config, "bert.", &specs);
  AddSpec(&specs, "classifier.weight", {config.num_labels, config.hidden_size}, ParamInit::kNormal);
  AddSpec(&specs, "classifier.bias", {config.num_labels}, ParamInit::kZeros);
  return specs;
}

BertForPreTraining::BertForPreTraining(const BertConfig& config, const ModelOptions& options)
    : config_(config),
      params_(BertForPreTrainingSpecs(config), options.dtype, options.device),
      bert_(config, params_, "bert."),
      rng_(options.seed) {
  CHECK(config.Validate().ok()) << config.Validate().ToString();
  params_.Initialize(options.seed, config.initializer_range);
  transform_weight_ = params_.param("cls.predictions.transform.dense.weight");
  transform_bias_ = params_.param("cls.predictions.transform.dense.bias");
  transform_norm_weight_ = params_.param("cls.predictions.transform.LayerNorm.weight");
  transform_norm_bias_ = params_.param("cls.predictions.transform.LayerNorm.bias");
  decoder_weight_ = params_.param("bert.embeddings.word_embeddings.weight");
  decoder_bias_ = params_.param("cls.predictions.bias");
  nsp_weight_ = params_.param("cls.seq_relationship.weight");
  nsp_bias_ = params_.param("cls.seq_relationship.bias");
}

Result<std::unique_ptr<BertForPreTraining>> BertForPreTraining::FromConfigFile(const std::string& path,
                                                                               const ModelOptions& options) {
  Result<BertConfig> config = LoadBertConfig(path);
  if (!config.ok()) return config.status();
  return std::make_unique<BertForPreTraining>(*config, options);
}

torch::Tensor BertForPreTraining::MlmTransform(const torch::Tensor& rows) const {
  // BertPredictionHeadTransform: dense, activation, LayerNorm.
  return at::layer_norm(LinearActivation(config_.hidden_act, rows, transform_weight_, transform_bias_),
                        {config_.hidden_size}, transform_norm_weight_, transform_norm_bias_, config_.layer_norm_eps);
}

BertForPreTraining::Output BertForPreTraining::Forward(const PretrainBatch& batch, bool training) {
  ForwardMode mode{training, &rng_, checkpoint_layers_};
  BertModel::Output encoded = bert_.Forward(batch.input_ids, batch.token_type_ids, batch.lengths, mode);
  Output out;
  out.sequence = encoded.sequence;
  out.mlm_hidden = MlmTransform(at::index_select(encoded.sequence, 0, batch.masked_positions));
  out.nsp_logits = FlatLinear(encoded.pooled, nsp_weight_, nsp_bias_);
  return out;
}

torch::Tensor BertForPreTraining::MlmLogits(const Output& output) const {
  // The decoder is tied to the word embeddings, with its own output bias.
  return FlatLinear(output.mlm_hidden, decoder_weight_, decoder_bias_);
}

torch::Tensor BertForPreTraining::FullMlmLogits(const PretrainBatch& batch, bool training) {
  ForwardMode mode{training, &rng_};
  Output all;
  all.mlm_hidden = MlmTransform(bert_.Forward(batch.input_ids, batch.token_type_ids, batch.lengths, mode).sequence);
  return MlmLogits(all);
}

PreTrainingLoss BertForPreTraining::Loss(const Output& output, const PretrainBatch& batch) const {
  PreTrainingLoss result;
  MlmLossOutput mlm = TiedDecoderCrossEntropy(output.mlm_hidden, decoder_weight_, decoder_bias_, batch.masked_labels);
  torch::Tensor nsp = CrossEntropyMean(output.nsp_logits, batch.nsp_labels);
  result.mlm = mlm.loss;
  result.nsp = nsp;
  result.loss = mlm.loss + nsp;
  torch::NoGradGuard no_grad;
  result.mlm_loss = mlm.loss.item<double>();
  result.nsp_loss = nsp.item<double>();
  result.mlm_correct = mlm.correct;
  result.num_masked = batch.num_masked();
  result.num_sequences = batch.batch_size();
  result.nsp_correct = output.nsp_logits.argmax(1).eq(batch.nsp_labels).sum().item<int64_t>();
  return result;
}

BertForSequenceClassification::BertForSequenceClassification(const BertConfig& config, const ModelOptions& options)
    : config_(config),
      params_(BertForSequenceClassificationSpecs(config), options.dtype, options.device),
      bert_(config, params_, "bert."),
      rng_(options.seed) {
  CHECK(config.Validate().ok()) << config.Validate().ToString();
  params_.Initialize(options.seed, config.initializer_range);
  classifier_weight_ = params_.param("classifier.weight");
  classifier_bias_ = params_.param("classifier.bias");
}

Result<std::unique_ptr<BertForSequenceClassification>> BertForSequenceClassification::FromConfigFile(
    const std::string& path, const ModelOptions& options) {
  Result<BertConfig> config = LoadBertConfig(path);
  if (!config.ok()) return config.status();
  return std::make_unique<BertForSequenceClassification>(*config, options);
}

torch::Tensor BertForSequenceClassification::Forward(const torch::Tensor& input_ids,
                                                     const torch::Tensor& token_type_ids,
                                                     const torch::Tensor& lengths, bool training) {
  ForwardMode mode{training, &rng_};
  torch::Tensor pooled = bert_.Forward(input_ids, token_type_ids, lengths, mode).pooled;
  pooled = Dropout(pooled, training ? config_.effective_classifier_dropout() : 0.0, &rng_);
  return FlatLinear(pooled, classifier_weight_, classifier_bias_);
}

}  // namespace bert
