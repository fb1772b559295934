// The masked-LM decoder and its cross-entropy as one autograd op:
//   logits = h W^T + b   (W: the word embeddings, tied; b: cls.predictions.bias)
//   loss   = mean over rows of logsumexp(logits_r) - logits_r[label_r]
//
// Why one op: the [M, V] logits are the largest activation of a small BERT
// (M masked rows x 30522), and LibTorch's addmm + log_softmax + nll and their
// backward pass over it about eight times (a broadcast bias copy, the
// log-probabilities, exp, scaling, the bias-gradient sum, argmax). Here the
// GEMM writes the logits once; the forward reads them twice (row max, then
// the sum of exponentials, with the bias added on the fly) and keeps only
// logsumexp per row; the backward turns them in place into
// (softmax - onehot) * g / M, adding bias gradients as it goes, and runs the
// two GEMMs from that buffer. Gradients of W and b are added into their
// grad() views (flat_ops.h contract); the op returns none for them.
//
// Deterministic on the CPU for a fixed thread count (fixed reduction order).
// The float path uses a polynomial exp (cpu_kernels.h); double uses
// std::exp (gradient checks). Each graph may be backpropagated once.
#pragma once

#include <cstdint>

#include "worker/torch.h"

namespace bert {

struct MlmLossOutput {
  torch::Tensor loss;     // scalar, differentiable w.r.t. hidden (and W, b through their grads)
  int64_t correct = 0;    // rows whose label logit equals the row maximum (argmax up to ties)
};

// hidden [M, H], weight [V, H], bias [V], labels [M] int64 in [0, V).
MlmLossOutput TiedDecoderCrossEntropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                      const torch::Tensor& bias, const torch::Tensor& labels);

}  // namespace bert
