#include "worker/finetune/finetune_loss.h"

#include <glog/logging.h>

namespace bert {
namespace {

// [C] weights in the logits' dtype and device, or an undefined tensor.
torch::Tensor WeightTensor(const std::vector<double>& class_weights, const torch::Tensor& logits) {
  if (class_weights.empty()) return torch::Tensor();
  CHECK_EQ(static_cast<int64_t>(class_weights.size()), logits.size(1)) << "one class weight per class";
  return torch::tensor(class_weights, torch::kDouble).to(logits.options());
}

void CheckShapes(const torch::Tensor& logits, const torch::Tensor& labels) {
  CHECK_EQ(logits.dim(), 2);
  CHECK_EQ(labels.dim(), 1);
  CHECK_EQ(logits.size(0), labels.size(0));
}

}  // namespace

Result<ClassificationLossKind> ParseClassificationLossKind(const std::string& name) {
  if (name == "cross_entropy") return ClassificationLossKind::kCrossEntropy;
  if (name == "focal") return ClassificationLossKind::kFocal;
  return Status::InvalidArgument("loss.type: must be cross_entropy or focal, got \"" + name + "\"");
}

torch::Tensor CrossEntropyLoss(const torch::Tensor& logits, const torch::Tensor& labels, double label_smoothing,
                               const std::vector<double>& class_weights, double normalizer) {
  CheckShapes(logits, labels);
  CHECK_GT(normalizer, 0);
  const torch::Tensor log_probs = torch::log_softmax(logits, 1);
  const torch::Tensor weights = WeightTensor(class_weights, logits);
  torch::Tensor target_nll = -log_probs.gather(1, labels.unsqueeze(1)).squeeze(1);  // [B]
  if (weights.defined()) target_nll = target_nll * weights.index_select(0, labels);
  torch::Tensor total = target_nll.sum();
  if (label_smoothing > 0) {
    const torch::Tensor per_class = weights.defined() ? -log_probs * weights.unsqueeze(0) : -log_probs;
    const double classes = static_cast<double>(logits.size(1));
    total = (1.0 - label_smoothing) * total + (label_smoothing / classes) * per_class.sum();
  }
  return total / normalizer;
}

torch::Tensor FocalLoss(const torch::Tensor& logits, const torch::Tensor& labels, double gamma,
                        const std::vector<double>& class_weights, double normalizer) {
  CheckShapes(logits, labels);
  CHECK_GT(normalizer, 0);
  const torch::Tensor log_pt = torch::log_softmax(logits, 1).gather(1, labels.unsqueeze(1)).squeeze(1);  // [B]
  // (1 - p_t)^gamma; gamma == 0 stays exactly 1 (pow(0, 0) = 1 and its gradient is 0).
  torch::Tensor loss = -log_pt;
  if (gamma != 0) loss = loss * torch::pow(1.0 - log_pt.exp(), gamma);
  const torch::Tensor weights = WeightTensor(class_weights, logits);
  if (weights.defined()) loss = loss * weights.index_select(0, labels);
  return loss.sum() / normalizer;
}

torch::Tensor RDropLoss(const torch::Tensor& logits1, const torch::Tensor& logits2, double alpha, double normalizer) {
  CHECK(logits1.sizes() == logits2.sizes());
  CHECK_GT(normalizer, 0);
  const torch::Tensor log_p1 = torch::log_softmax(logits1, 1);
  const torch::Tensor log_p2 = torch::log_softmax(logits2, 1);
  // KL(P1||P2) + KL(P2||P1) = sum_c (p1 - p2) (log p1 - log p2).
  const torch::Tensor symmetric = ((log_p1.exp() - log_p2.exp()) * (log_p1 - log_p2)).sum();
  return symmetric * (alpha / 2.0 / normalizer);
}

torch::Tensor ClassificationLoss(const torch::Tensor& logits, const torch::Tensor& labels,
                                 const ClassificationLossOptions& options, double normalizer) {
  if (options.kind == ClassificationLossKind::kFocal) {
    return FocalLoss(logits, labels, options.focal_gamma, options.class_weights, normalizer);
  }
  return CrossEntropyLoss(logits, labels, options.label_smoothing, options.class_weights, normalizer);
}

double LossNormalizer(const std::vector<int32_t>& labels, const ClassificationLossOptions& options) {
  if (options.kind != ClassificationLossKind::kCrossEntropy || options.class_weights.empty()) {
    return static_cast<double>(labels.size());
  }
  double sum = 0;
  for (int32_t label : labels) sum += options.class_weights.at(static_cast<size_t>(label));
  return sum;
}

}  // namespace bert
