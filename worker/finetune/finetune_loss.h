// Classification losses for fine-tuning, on logits [B, C] and int64 labels
// [B] (0 <= label < C). Each returns a differentiable scalar: the SUM over
// this process's examples divided by a caller-given `normalizer`, so that a
// data-parallel step whose gradients are summed over ranks is exactly the
// step of one process holding the whole global batch (pass the global
// normalizer, LossNormalizer() of the global batch's labels, on every rank).
//
// - Cross-entropy with label smoothing eps and optional class weights w, as
//   torch.nn.functional.cross_entropy(weight=w, label_smoothing=eps):
//     l_i = (1 - eps) * w_{y_i} * (-log p_{i,y_i}) + eps/C * sum_c w_c * (-log p_{i,c})
//   and torch's "mean" divides the sum by sum_i w_{y_i} (= B without weights):
//   LossNormalizer returns exactly that denominator.
// - Focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection",
//   eq. 5): l_i = -alpha_{y_i} (1 - p_t)^gamma log p_t, p_t = p_{i,y_i},
//   alpha = class weights (1 without), normalised by the example count.
//   gamma = 0 and no weights is plain cross-entropy.
// - R-Drop (Liang et al. 2021, "R-Drop: Regularized Dropout for Neural
//   Networks", eq. 2-3): alpha/2 * (KL(P1||P2) + KL(P2||P1)) per example
//   between the distributions of two dropout passes over the same batch,
//   summed and divided by the normalizer (the example count).
// Computed in the logits' dtype (log-softmax for stability). Pure functions,
// thread-safe.
#pragma once

#include "worker/torch.h"

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace bert {

enum class ClassificationLossKind { kCrossEntropy, kFocal };
Result<ClassificationLossKind> ParseClassificationLossKind(const std::string& name);  // "cross_entropy" | "focal"

struct ClassificationLossOptions {
  ClassificationLossKind kind = ClassificationLossKind::kCrossEntropy;
  double label_smoothing = 0.0;       // cross-entropy only, in [0, 1)
  double focal_gamma = 2.0;           // focal only, >= 0
  std::vector<double> class_weights;  // one per class (label-id order); empty = all 1
};

// Sum over rows of the per-example cross-entropy above, / normalizer.
torch::Tensor CrossEntropyLoss(const torch::Tensor& logits, const torch::Tensor& labels, double label_smoothing,
                               const std::vector<double>& class_weights, double normalizer);

// Sum over rows of the per-example focal loss above, / normalizer.
torch::Tensor FocalLoss(const torch::Tensor& logits, const torch::Tensor& labels, double gamma,
                        const std::vector<double>& class_weights, double normalizer);

// alpha/2 * sum over rows of KL(P1||P2) + KL(P2||P1), / normalizer.
torch::Tensor RDropLoss(const torch::Tensor& logits1, const torch::Tensor& logits2, double alpha, double normalizer);

// The loss `options` selects.
torch::Tensor ClassificationLoss(const torch::Tensor& logits, const torch::Tensor& labels,
                                 const ClassificationLossOptions& options, double normalizer);

// The denominator that makes ClassificationLoss the mean loss of a batch
// with these labels (all ranks' labels of one global step): sum_i w_{y_i}
// for weighted cross-entropy, else the example count.
double LossNormalizer(const std::vector<int32_t>& labels, const ClassificationLossOptions& options);

}  // namespace bert
