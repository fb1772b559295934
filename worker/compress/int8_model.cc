#include "worker/compress/int8_model.h"

#include <glog/logging.h>

#include "worker/model/bert_model.h"
#include "worker/model/flat_ops.h"

namespace bert {
namespace {

std::string LayerPrefix(int64_t i) { return "bert.encoder.layer." + std::to_string(i) + "."; }

const torch::Tensor& Get(const std::map<std::string, torch::Tensor>& tensors, const std::string& name) {
  auto it = tensors.find(name);
  CHECK(it != tensors.end()) << "tensor " << name << " missing";
  return it->second;
}

bool SameQuant(const ActivationQuant& a, const ActivationQuant& b) {
  return a.scale == b.scale && a.zero_point == b.zero_point;
}

}  // namespace

std::vector<std::string> ClassifierLinearNames(const BertConfig& config) {
  std::vector<std::string> names;
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    const std::string layer = LayerPrefix(i);
    for (const char* part : {"query", "key", "value"}) names.push_back(layer + "attention.self." + part);
    names.push_back(layer + "attention.output.dense");
    names.push_back(layer + "intermediate.dense");
    names.push_back(layer + "output.dense");
  }
  names.push_back("bert.pooler.dense");
  names.push_back("classifier");
  return names;
}

torch::Tensor Int8BertClassifier::Linear::operator()(const torch::Tensor& x) const {
  if (observer != nullptr) observer->Observe(x);
  if (int8) return int8->Forward(x);
  return FlatLinear(x, weight, bias);
}

void Int8BertClassifier::SetNonLinear(const std::map<std::string, torch::Tensor>& tensors) {
  word_embeddings_ = Get(tensors, "bert.embeddings.word_embeddings.weight");
  position_embeddings_ = Get(tensors, "bert.embeddings.position_embeddings.weight");
  token_type_embeddings_ = Get(tensors, "bert.embeddings.token_type_embeddings.weight");
  embedding_norm_weight_ = Get(tensors, "bert.embeddings.LayerNorm.weight");
  embedding_norm_bias_ = Get(tensors, "bert.embeddings.LayerNorm.bias");
  layers_.resize(static_cast<size_t>(config_.num_hidden_layers));
  for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    const std::string prefix = LayerPrefix(i);
    Layer& layer = layers_[static_cast<size_t>(i)];
    layer.attention_norm_weight = Get(tensors, prefix + "attention.output.LayerNorm.weight");
    layer.attention_norm_bias = Get(tensors, prefix + "attention.output.LayerNorm.bias");
    layer.output_norm_weight = Get(tensors, prefix + "output.LayerNorm.weight");
    layer.output_norm_bias = Get(tensors, prefix + "output.LayerNorm.bias");
  }
  if (config_.pre_layer_norm) {
    final_norm_weight_ = Get(tensors, "bert.encoder.final_layer_norm.weight");
    final_norm_bias_ = Get(tensors, "bert.encoder.final_layer_norm.bias");
  }
}

std::unique_ptr<Int8BertClassifier> Int8BertClassifier::FromFloat(const BertConfig& config,
                                                                  const std::map<std::string, torch::Tensor>& tensors,
                                                                  std::map<std::string, RangeObserver>* observers) {
  std::unique_ptr<Int8BertClassifier> model(new Int8BertClassifier(config));
  model->SetNonLinear(tensors);
  auto linear = [&](const std::string& name, const std::string& observed_as) {
    Linear out;
    out.weight = Get(tensors, name + ".weight").to(torch::kFloat);
    out.bias = Get(tensors, name + ".bias").to(torch::kFloat);
    if (observers != nullptr) out.observer = &(*observers)[observed_as];
    return out;
  };
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    const std::string prefix = LayerPrefix(i);
    Layer& layer = model->layers_[static_cast<size_t>(i)];
    layer.num_heads = config.heads_in_layer(i);
    const std::string self = prefix + "attention.self.";
    Linear qkv;
    qkv.weight = torch::cat({Get(tensors, self + "query.weight"), Get(tensors, self + "key.weight"),
                             Get(tensors, self + "value.weight")})
                     .to(torch::kFloat);
    qkv.bias = torch::cat({Get(tensors, self + "query.bias"), Get(tensors, self + "key.bias"),
                           Get(tensors, self + "value.bias")})
                   .to(torch::kFloat);
    // query, key and value read the same input: one observer, reported under each name by the caller.
    if (observers != nullptr) qkv.observer = &(*observers)[self + "query"];
    layer.qkv = {qkv};
    layer.attention_output = linear(prefix + "attention.output.dense", prefix + "attention.output.dense");
    layer.intermediate = linear(prefix + "intermediate.dense", prefix + "intermediate.dense");
    layer.output = linear(prefix + "output.dense", prefix + "output.dense");
  }
  model->pooler_ = linear("bert.pooler.dense", "bert.pooler.dense");
  model->classifier_ = linear("classifier", "classifier");
  return model;
}

std::unique_ptr<Int8BertClassifier> Int8BertClassifier::FromInt8(const BertConfig& config,
                                                                 const std::map<std::string, torch::Tensor>& tensors,
                                                                 const std::map<std::string, Int8Weight>& weights,
                                                                 const InputQuantMap& inputs) {
  std::unique_ptr<Int8BertClassifier> model(new Int8BertClassifier(config));
  model->SetNonLinear(tensors);
  model->is_static_ = !inputs.empty();
  auto weight_of = [&](const std::string& name) -> const Int8Weight& {
    auto it = weights.find(name);
    CHECK(it != weights.end()) << "int8 weight " << name << " missing";
    return it->second;
  };
  auto input_of = [&](const std::string& name) -> const ActivationQuant& {
    auto it = inputs.find(name);
    CHECK(it != inputs.end()) << "input quantization of " << name << " missing";
    return it->second;
  };
  auto make = [&](const Int8Weight& weight, const torch::Tensor& bias, const std::string& name) {
    Linear out;
    out.int8 = model->is_static_ ? QuantizedLinear::Static(weight, bias, input_of(name))
                                 : QuantizedLinear::Dynamic(weight, bias);
    return out;
  };
  auto linear = [&](const std::string& name) {
    return make(weight_of(name), Get(tensors, name + ".bias"), name);
  };
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    const std::string prefix = LayerPrefix(i);
    Layer& layer = model->layers_[static_cast<size_t>(i)];
    layer.num_heads = config.heads_in_layer(i);
    const std::string self = prefix + "attention.self.";
    const bool fuse = !model->is_static_ || (SameQuant(input_of(self + "query"), input_of(self + "key")) &&
                                             SameQuant(input_of(self + "query"), input_of(self + "value")));
    if (fuse) {
      Int8Weight fused;
      fused.values = torch::cat({weight_of(self + "query").values, weight_of(self + "key").values,
                                 weight_of(self + "value").values});
      fused.scale = torch::cat({weight_of(self + "query").scale, weight_of(self + "key").scale,
                                weight_of(self + "value").scale});
      const torch::Tensor bias = torch::cat(
          {Get(tensors, self + "query.bias"), Get(tensors, self + "key.bias"), Get(tensors, self + "value.bias")});
      layer.qkv = {make(fused, bias, self + "query")};
    } else {
      layer.qkv = {linear(self + "query"), linear(self + "key"), linear(self + "value")};
    }
    layer.attention_output = linear(prefix + "attention.output.dense");
    layer.intermediate = linear(prefix + "intermediate.dense");
    layer.output = linear(prefix + "output.dense");
  }
  model->pooler_ = linear("bert.pooler.dense");
  model->classifier_ = linear("classifier");
  return model;
}

// BertModel::LayerForward in evaluation mode, with these Linears.
torch::Tensor Int8BertClassifier::LayerForward(const Layer& layer, const torch::Tensor& x,
                                               const AttentionMask& mask) const {
  const int64_t h = config_.hidden_size;
  const double eps = config_.layer_norm_eps;
  auto qkv = [&](const torch::Tensor& input) {
    if (layer.qkv.size() == 1) return layer.qkv[0](input);
    return torch::cat({layer.qkv[0](input), layer.qkv[1](input), layer.qkv[2](input)}, 1);
  };
  if (config_.pre_layer_norm) {
    torch::Tensor normed = at::layer_norm(x, {h}, layer.attention_norm_weight, layer.attention_norm_bias, eps);
    torch::Tensor context = SelfAttention(qkv(normed), mask, layer.num_heads, 0.0, nullptr);
    torch::Tensor h1 = x + layer.attention_output(context);
    torch::Tensor normed1 = at::layer_norm(h1, {h}, layer.output_norm_weight, layer.output_norm_bias, eps);
    return h1 + layer.output(Activation(config_.hidden_act, layer.intermediate(normed1)));
  }
  torch::Tensor context = SelfAttention(qkv(x), mask, layer.num_heads, 0.0, nullptr);
  torch::Tensor h1 =
      at::layer_norm(layer.attention_output(context) + x, {h}, layer.attention_norm_weight, layer.attention_norm_bias, eps);
  torch::Tensor inner = Activation(config_.hidden_act, layer.intermediate(h1));
  return at::layer_norm(layer.output(inner) + h1, {h}, layer.output_norm_weight, layer.output_norm_bias, eps);
}

torch::Tensor Int8BertClassifier::Forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                                          const torch::Tensor& lengths) const {
  CHECK_EQ(input_ids.dim(), 2);
  CHECK(token_type_ids.sizes() == input_ids.sizes());
  torch::NoGradGuard no_grad;
  const int64_t batch = input_ids.size(0), seq = input_ids.size(1), h = config_.hidden_size;
  CHECK_LE(seq, config_.max_position_embeddings);
  const AttentionMask mask = MakeAttentionMask(lengths, seq, torch::kFloat, torch::kCPU);
  // BertModel::Embed without dropout.
  torch::Tensor words = FlatEmbedding(input_ids, word_embeddings_);
  torch::Tensor types = FlatEmbedding(token_type_ids, token_type_embeddings_);
  torch::Tensor positions = position_embeddings_.narrow(0, 0, seq);
  torch::Tensor x = at::layer_norm(((words + types).view({batch, seq, h}) + positions).view({batch * seq, h}), {h},
                                   embedding_norm_weight_, embedding_norm_bias_, config_.layer_norm_eps);
  for (const Layer& layer : layers_) x = LayerForward(layer, x, mask);
  if (config_.pre_layer_norm) {
    x = at::layer_norm(x, {h}, final_norm_weight_, final_norm_bias_, config_.layer_norm_eps);
  }
  torch::Tensor first_tokens = x.view({batch, seq, h}).select(1, 0).contiguous();  // [B, H], [CLS]
  return classifier_(at::tanh(pooler_(first_tokens)));
}

}  // namespace bert
