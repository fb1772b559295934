#include "worker/model/bert_model.h"

#include <glog/logging.h>

#include <ATen/autocast_mode.h>

#include <optional>

namespace bert {
namespace detail {

// Activation checkpointing of one encoder layer (ForwardMode::checkpoint_layers),
// as torch.utils.checkpoint's reentrant variant: forward without a graph,
// then in backward the same forward again with one, and its backward.
// Parameter gradients land in the flat gradient buffer as usual.
class CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
 public:
  using AutogradContext = torch::autograd::AutogradContext;
  using Tensor = torch::Tensor;

  static Tensor forward(AutogradContext* ctx, const Tensor& x, const BertModel* model, int64_t index,
                        const AttentionMask* mask, const ForwardMode* mode) {
    ctx->save_for_backward({x});
    ctx->saved_data["model"] = reinterpret_cast<int64_t>(model);
    ctx->saved_data["index"] = index;
    ctx->saved_data["batch_size"] = mask->batch_size;
    ctx->saved_data["seq_len"] = mask->seq_len;
    ctx->saved_data["key_bias"] = mask->key_bias;
    ctx->saved_data["keep"] = mask->keep;
    ctx->saved_data["rng"] = reinterpret_cast<int64_t>(mode->rng);
    ctx->saved_data["counter"] = mode->rng ? static_cast<int64_t>(mode->rng->counter()) : int64_t{0};
    if (!x.is_cpu()) ctx->saved_data["generator"] = at::globalContext().defaultGenerator(x.device()).get_state();
    // bf16 autocast (train.precision) covers the forward only; the recomputation must run under it too.
    const at::DeviceType type = x.device().type();
    ctx->saved_data["autocast"] = at::autocast::is_autocast_enabled(type);
    ctx->saved_data["autocast_dtype"] = static_cast<int64_t>(at::autocast::get_autocast_dtype(type));
    return model->LayerForward(model->layers_[index], x, *mask, *mode);
  }

  static torch::autograd::variable_list backward(AutogradContext* ctx, torch::autograd::variable_list grads) {
    const BertModel* model = reinterpret_cast<const BertModel*>(ctx->saved_data["model"].toInt());
    const int64_t index = ctx->saved_data["index"].toInt();
    AttentionMask mask;
    mask.batch_size = ctx->saved_data["batch_size"].toInt();
    mask.seq_len = ctx->saved_data["seq_len"].toInt();
    mask.key_bias = ctx->saved_data["key_bias"].toOptional<Tensor>().value_or(Tensor());
    mask.keep = ctx->saved_data["keep"].toOptional<Tensor>().value_or(Tensor());
    ForwardMode mode;
    mode.training = true;
    mode.rng = reinterpret_cast<DropoutRng*>(ctx->saved_data["rng"].toInt());
    // Replay this layer's dropout draws, then put the streams back.
    const uint64_t now = mode.rng ? mode.rng->counter() : 0;
    if (mode.rng) mode.rng->Restore(mode.rng->seed(), static_cast<uint64_t>(ctx->saved_data["counter"].toInt()));
    const Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    std::optional<at::Generator> generator;
    Tensor generator_now;
    if (ctx->saved_data.count("generator")) {
      generator = at::globalContext().defaultGenerator(x.device());
      generator_now = generator->get_state();
      generator->set_state(ctx->saved_data["generator"].toTensor());
    }
    Tensor y;
    {
      torch::AutoGradMode enable(true);
      const at::DeviceType type = x.device().type();
      const bool autocast = ctx->saved_data["autocast"].toBool();
      const bool was_enabled = at::autocast::is_autocast_enabled(type);
      const at::ScalarType was_dtype = at::autocast::get_autocast_dtype(type);
      if (autocast) {
        at::autocast::set_autocast_dtype(type, static_cast<at::ScalarType>(ctx->saved_data["autocast_dtype"].toInt()));
        at::autocast::set_autocast_enabled(type, true);
        at::autocast::increment_nesting();
      }
      y = model->LayerForward(model->layers_[index], x, mask, mode);
      if (autocast) {
        if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
        at::autocast::set_autocast_enabled(type, was_enabled);
        at::autocast::set_autocast_dtype(type, was_dtype);
      }
    }
    if (generator) generator->set_state(generator_now);
    if (mode.rng) mode.rng->Restore(mode.rng->seed(), now);
    torch::autograd::backward({y}, {grads[0]});
    return {x.grad(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace detail
namespace {

void Add(std::vector<ParameterSpec>* specs, const std::string& name, std::vector<int64_t> shape, ParamInit init) {
  specs->push_back(ParameterSpec{name, std::move(shape), init, DefaultWeightDecay(name)});
}

void AddLinear(std::vector<ParameterSpec>* specs, const std::string& name, int64_t out, int64_t in) {
  Add(specs, name + ".weight", {out, in}, ParamInit::kNormal);
  Add(specs, name + ".bias", {out}, ParamInit::kZeros);
}

void AddLayerNorm(std::vector<ParameterSpec>* specs, const std::string& name, int64_t width) {
  Add(specs, name + ".weight", {width}, ParamInit::kOnes);
  Add(specs, name + ".bias", {width}, ParamInit::kZeros);
}

}  // namespace

void AppendBertModelSpecs(const BertConfig& config, const std::string& prefix, std::vector<ParameterSpec>* specs) {
  const int64_t h = config.hidden_size;
  // HF zeroes the padding row of word_embeddings at init; BERT's original
  // TF code does not, and [PAD] never enters a loss, so we keep it normal.
  Add(specs, prefix + "embeddings.word_embeddings.weight", {config.vocab_size, h}, ParamInit::kNormal);
  Add(specs, prefix + "embeddings.position_embeddings.weight", {config.max_position_embeddings, h},
      ParamInit::kNormal);
  Add(specs, prefix + "embeddings.token_type_embeddings.weight", {config.type_vocab_size, h}, ParamInit::kNormal);
  AddLayerNorm(specs, prefix + "embeddings.LayerNorm", h);
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    const std::string layer = prefix + "encoder.layer." + std::to_string(i) + ".";
    const int64_t a = config.attention_size(i);  // h unless heads were pruned
    for (const char* part : {"query", "key", "value"}) {
      Add(specs, layer + "attention.self." + part + ".weight", {a, h}, ParamInit::kNormal);
    }
    for (const char* part : {"query", "key", "value"}) {
      Add(specs, layer + "attention.self." + part + ".bias", {a}, ParamInit::kZeros);
    }
    AddLinear(specs, layer + "attention.output.dense", h, a);
    AddLayerNorm(specs, layer + "attention.output.LayerNorm", h);
    AddLinear(specs, layer + "intermediate.dense", config.intermediate_size, h);
    AddLinear(specs, layer + "output.dense", h, config.intermediate_size);
    AddLayerNorm(specs, layer + "output.LayerNorm", h);
  }
  if (config.pre_layer_norm) AddLayerNorm(specs, prefix + "encoder.final_layer_norm", h);
  AddLinear(specs, prefix + "pooler.dense", h, h);
}

torch::Tensor Activation(const std::string& hidden_act, const torch::Tensor& x) {
  if (hidden_act == "gelu") return at::gelu(x, "none");  // exact erf form, as HF's "gelu"
  if (hidden_act == "gelu_new" || hidden_act == "gelu_pytorch_tanh") return at::gelu(x, "tanh");
  CHECK_EQ(hidden_act, "relu") << "unvalidated hidden_act";
  return at::relu(x);
}

torch::Tensor LinearActivation(const std::string& hidden_act, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias) {
  if (hidden_act == "gelu") return FlatLinearGelu(x, weight, bias);
  return Activation(hidden_act, FlatLinear(x, weight, bias));
}

BertModel::BertModel(const BertConfig& config, const FlatParameters& params, const std::string& prefix)
    : config_(config) {
  auto get = [&](const std::string& name) { return params.param(prefix + name); };
  word_embeddings_ = get("embeddings.word_embeddings.weight");
  position_embeddings_ = get("embeddings.position_embeddings.weight");
  token_type_embeddings_ = get("embeddings.token_type_embeddings.weight");
  embedding_norm_weight_ = get("embeddings.LayerNorm.weight");
  embedding_norm_bias_ = get("embeddings.LayerNorm.bias");
  const int64_t h = config.hidden_size;
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    const std::string layer_prefix = "encoder.layer." + std::to_string(i) + ".";
    const int64_t query = params.IndexOf(prefix + layer_prefix + "attention.self.query.weight");
    const int64_t query_bias = params.IndexOf(prefix + layer_prefix + "attention.self.query.bias");
    CHECK_GE(query, 0);
    CHECK_GE(query_bias, 0);
    CHECK_EQ(params.slot(query + 1).spec.name, prefix + layer_prefix + "attention.self.key.weight");
    CHECK_EQ(params.slot(query + 2).spec.name, prefix + layer_prefix + "attention.self.value.weight");
    CHECK_EQ(params.slot(query_bias + 2).spec.name, prefix + layer_prefix + "attention.self.value.bias");
    Layer layer;
    layer.num_heads = config.heads_in_layer(i);
    const int64_t a = config.attention_size(i);
    layer.qkv_weight = params.Span(static_cast<size_t>(query), 3, {3 * a, h});
    layer.qkv_bias = params.Span(static_cast<size_t>(query_bias), 3, {3 * a});
    layer.attention_output_weight = get(layer_prefix + "attention.output.dense.weight");
    layer.attention_output_bias = get(layer_prefix + "attention.output.dense.bias");
    layer.attention_norm_weight = get(layer_prefix + "attention.output.LayerNorm.weight");
    layer.attention_norm_bias = get(layer_prefix + "attention.output.LayerNorm.bias");
    layer.intermediate_weight = get(layer_prefix + "intermediate.dense.weight");
    layer.intermediate_bias = get(layer_prefix + "intermediate.dense.bias");
    layer.output_weight = get(layer_prefix + "output.dense.weight");
    layer.output_bias = get(layer_prefix + "output.dense.bias");
    layer.output_norm_weight = get(layer_prefix + "output.LayerNorm.weight");
    layer.output_norm_bias = get(layer_prefix + "output.LayerNorm.bias");
    layers_.push_back(std::move(layer));
  }
  if (config.pre_layer_norm) {
    final_norm_weight_ = get("encoder.final_layer_norm.weight");
    final_norm_bias_ = get("encoder.final_layer_norm.bias");
  }
  pooler_weight_ = get("pooler.dense.weight");
  pooler_bias_ = get("pooler.dense.bias");
}

torch::Tensor BertModel::Embed(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                               const ForwardMode& mode) const {
  const int64_t batch = input_ids.size(0);
  const int64_t seq = input_ids.size(1);
  const int64_t h = config_.hidden_size;
  CHECK_LE(seq, config_.max_position_embeddings);
  torch::Tensor words = FlatEmbedding(input_ids, word_embeddings_);            // [B*T, H]
  torch::Tensor types = FlatEmbedding(token_type_ids, token_type_embeddings_);  // [B*T, H]
  torch::Tensor positions = position_embeddings_.narrow(0, 0, seq);            // [T, H], broadcast over B
  torch::Tensor sum = ((words + types).view({batch, seq, h}) + positions).view({batch * seq, h});
  torch::Tensor normed =
      at::layer_norm(sum, {h}, embedding_norm_weight_, embedding_norm_bias_, config_.layer_norm_eps);
  return Dropout(normed, Dropped(config_.hidden_dropout_prob, mode), mode.rng);
}

torch::Tensor BertModel::LayerForward(const Layer& layer, const torch::Tensor& x, const AttentionMask& mask,
                                      const ForwardMode& mode) const {
  const int64_t h = config_.hidden_size;
  const double p_hidden = Dropped(config_.hidden_dropout_prob, mode);
  if (config_.pre_layer_norm) {
    // x + Attention(LN(x)), then + FFN(LN(.)): the residual stream is never
    // normalised in place (the LayerNorms keep their HF names: the first is
    // attention.output.LayerNorm, the second output.LayerNorm).
    torch::Tensor normed =
        at::layer_norm(x, {h}, layer.attention_norm_weight, layer.attention_norm_bias, config_.layer_norm_eps);
    torch::Tensor qkv = FlatLinear(normed, layer.qkv_weight, layer.qkv_bias);
    torch::Tensor context = SelfAttention(qkv, mask, layer.num_heads,
                                          Dropped(config_.attention_probs_dropout_prob, mode), mode.rng);
    torch::Tensor h1 =
        x + Dropout(FlatLinear(context, layer.attention_output_weight, layer.attention_output_bias), p_hidden, mode.rng);
    torch::Tensor normed1 =
        at::layer_norm(h1, {h}, layer.output_norm_weight, layer.output_norm_bias, config_.layer_norm_eps);
    torch::Tensor inner =
        LinearActivation(config_.hidden_act, normed1, layer.intermediate_weight, layer.intermediate_bias);
    return h1 + Dropout(FlatLinear(inner, layer.output_weight, layer.output_bias), p_hidden, mode.rng);
  }
  torch::Tensor qkv = FlatLinear(x, layer.qkv_weight, layer.qkv_bias);  // [N, 3H]
  torch::Tensor context = SelfAttention(qkv, mask, layer.num_heads,
                                        Dropped(config_.attention_probs_dropout_prob, mode), mode.rng);
  torch::Tensor attended =
      Dropout(FlatLinear(context, layer.attention_output_weight, layer.attention_output_bias), p_hidden, mode.rng);
  torch::Tensor h1 = at::layer_norm(attended + x, {h}, layer.attention_norm_weight, layer.attention_norm_bias,
                                    config_.layer_norm_eps);
  torch::Tensor inner = LinearActivation(config_.hidden_act, h1, layer.intermediate_weight, layer.intermediate_bias);
  torch::Tensor out = Dropout(FlatLinear(inner, layer.output_weight, layer.output_bias), p_hidden, mode.rng);
  return at::layer_norm(out + h1, {h}, layer.output_norm_weight, layer.output_norm_bias, config_.layer_norm_eps);
}

BertModel::Output BertModel::Forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                                     const torch::Tensor& lengths, const ForwardMode& mode) const {
  CHECK_EQ(input_ids.dim(), 2);
  CHECK(token_type_ids.sizes() == input_ids.sizes());
  CHECK(!mode.training || mode.rng != nullptr ||
        (config_.hidden_dropout_prob == 0 && config_.attention_probs_dropout_prob == 0))
      << "training with dropout needs a DropoutRng";
  const int64_t batch = input_ids.size(0);
  const int64_t seq = input_ids.size(1);
  AttentionMask mask =
      MakeAttentionMask(lengths, seq, word_embeddings_.scalar_type(), word_embeddings_.device());
  torch::Tensor x = Embed(input_ids, token_type_ids, mode);
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (mode.training && mode.checkpoint_layers && torch::GradMode::is_enabled()) {
      x = detail::CheckpointedLayer::apply(x, this, static_cast<int64_t>(i), &mask, &mode);
    } else {
      x = LayerForward(layers_[i], x, mask, mode);
    }
  }
  if (config_.pre_layer_norm) {
    x = at::layer_norm(x, {config_.hidden_size}, final_norm_weight_, final_norm_bias_, config_.layer_norm_eps);
  }
  Output out;
  out.sequence = x;
  torch::Tensor first_tokens = x.view({batch, seq, config_.hidden_size}).select(1, 0);  // [B, H], [CLS]
  out.pooled = at::tanh(FlatLinear(first_tokens, pooler_weight_, pooler_bias_));
  return out;
}

}  // namespace bert
