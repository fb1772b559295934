#include "worker/finetune/finetune_optim.h"

#include <glog/logging.h>

#include <cmath>

namespace bert {
namespace {

// The encoder layer of "bert.encoder.layer.<l>.…", or -1.
int64_t EncoderLayerOf(const std::string& name) {
  static const std::string kPrefix = "bert.encoder.layer.";
  if (name.compare(0, kPrefix.size(), kPrefix) != 0) return -1;
  const size_t end = name.find('.', kPrefix.size());
  if (end == std::string::npos) return -1;
  return std::stoll(name.substr(kPrefix.size(), end - kPrefix.size()));
}

}  // namespace

double LayerwiseLrScale(const std::string& name, const LayerwiseLrOptions& options) {
  const int64_t layers = options.num_layers;
  if (name.rfind("bert.embeddings.", 0) == 0) {
    return options.freeze_embeddings ? 0.0 : std::pow(options.layer_lr_decay, static_cast<double>(layers + 1));
  }
  const int64_t layer = EncoderLayerOf(name);
  if (layer >= 0) {
    if (layer < options.freeze_layers) return 0.0;
    return std::pow(options.layer_lr_decay, static_cast<double>(layers - layer));
  }
  return 1.0;  // pooler and classifier
}

std::vector<ParamRange> LayerwiseRanges(const FlatParameters& params, const LayerwiseLrOptions& options) {
  std::vector<ParamRange> ranges = ShardRanges(params);
  for (ParamRange& range : ranges) {
    range.lr_scale = LayerwiseLrScale(params.slot(range.param_index).spec.name, options);
  }
  return ranges;
}

Fgm::Fgm(FlatParameters* params, double epsilon, const std::string& embedding_name)
    : params_(params), epsilon_(epsilon) {
  const int64_t index = params->IndexOf(embedding_name);
  CHECK_GE(index, 0) << "no parameter " << embedding_name;
  slot_ = static_cast<size_t>(index);
}

bool Fgm::Attack() {
  CHECK(!saved_.defined()) << "Attack() twice without Restore()";
  torch::NoGradGuard no_grad;
  const torch::Tensor& embedding = params_->param(slot_);
  const torch::Tensor grad = params_->grad(slot_);
  const double norm = grad.norm().item<double>();
  if (!(norm > 0) || !std::isfinite(norm)) return false;
  saved_ = embedding.detach().clone();
  embedding.detach().add_(grad, epsilon_ / norm);
  return true;
}

void Fgm::Restore() {
  if (!saved_.defined()) return;
  torch::NoGradGuard no_grad;
  params_->param(slot_).detach().copy_(saved_);
  saved_ = torch::Tensor();
}

}  // namespace bert
