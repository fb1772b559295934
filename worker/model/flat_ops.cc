#include "worker/model/flat_ops.h"

#include <glog/logging.h>

#include <limits>

#include "datapipe/random.h"
#include "worker/model/cpu_kernels.h"

namespace bert {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr uint64_t kStreamDropout = 102;  // datapipe/random.h Hash stream for dropout masks

Tensor GradOf(const Tensor& param) {
  return param.defined() && param.requires_grad() ? param.grad() : Tensor();
}

// grad += a @ b, in grad's dtype (fp32 master gradients under autocast).
void AddMatmulInto(const Tensor& grad, const Tensor& a, const Tensor& b) {
  if (a.scalar_type() == grad.scalar_type() && b.scalar_type() == grad.scalar_type()) {
    grad.addmm_(a, b);
  } else {
    grad.add_(at::mm(a, b.to(a.scalar_type())));
  }
}

class FlatLinearFunction : public torch::autograd::Function<FlatLinearFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& weight, const Tensor& bias) {
    CHECK_EQ(x.dim(), 2) << "FlatLinear takes [rows, features]";
    Tensor w = weight.scalar_type() == x.scalar_type() ? weight : weight.to(x.scalar_type());
    Tensor out;
    if (bias.numel() > 0) {
      out = at::addmm(bias.scalar_type() == x.scalar_type() ? bias : bias.to(x.scalar_type()), x, w.t());
    } else {
      out = at::mm(x, w.t());
    }
    ctx->save_for_backward({x, w});
    ctx->saved_data["weight_grad"] = GradOf(weight);
    ctx->saved_data["bias_grad"] = GradOf(bias);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    variable_list saved = ctx->get_saved_variables();
    const Tensor& x = saved[0];
    const Tensor& w = saved[1];
    const Tensor& dy = grad_outputs[0];
    Tensor dx;
    if (ctx->needs_input_grad(0)) dx = at::mm(dy, w.scalar_type() == dy.scalar_type() ? w : w.to(dy.scalar_type()));
    Tensor weight_grad = ctx->saved_data["weight_grad"].toTensor();
    Tensor bias_grad = ctx->saved_data["bias_grad"].toTensor();
    if (weight_grad.defined()) AddMatmulInto(weight_grad, dy.t(), x);
    if (bias_grad.defined()) bias_grad.add_(dy.sum(0));
    return {dx, Tensor(), Tensor()};
  }
};

template <typename T>
void IndexAddRows(const Tensor& grad, const Tensor& ids, const Tensor& rows) {
  const int64_t width = grad.size(1);
  const int64_t* id = ids.data_ptr<int64_t>();
  const T* src = rows.data_ptr<T>();
  T* dst = grad.data_ptr<T>();
  // Serial in input order: repeated ids add in a fixed order. The rows are
  // few (one per token) and each is a short vector add.
  for (int64_t r = 0; r < ids.numel(); ++r) {
    T* out = dst + id[r] * width;
    const T* in = src + r * width;
    for (int64_t c = 0; c < width; ++c) out[c] += in[c];
  }
}

class FlatEmbeddingFunction : public torch::autograd::Function<FlatEmbeddingFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& ids, const Tensor& weight) {
    ctx->saved_data["ids"] = ids;
    ctx->saved_data["weight_grad"] = GradOf(weight);
    return at::index_select(weight, 0, ids);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    Tensor ids = ctx->saved_data["ids"].toTensor();
    Tensor grad = ctx->saved_data["weight_grad"].toTensor();
    if (grad.defined()) {
      Tensor rows = grad_outputs[0].to(grad.scalar_type()).contiguous();
      if (grad.is_cpu() && grad.is_contiguous() && ids.is_contiguous()) {
        AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "FlatEmbedding", [&] { IndexAddRows<scalar_t>(grad, ids, rows); });
      } else {
        grad.index_add_(0, ids, rows);
      }
    }
    return {Tensor(), Tensor()};
  }
};

// Element k of the dropout stream keeps its value when its 32-bit draw is at
// or above `threshold`; one SplitMix64 output serves elements 2j and 2j+1.
// Pairs [begin, end) of one call, as a cloned kernel (cpu_kernels.h).
template <typename T>
BERT_ALWAYS_INLINE void DropoutPairs(const T* in, T* out, uint8_t* mask, int64_t n, int64_t begin, int64_t end,
                                     uint64_t key, uint64_t first_pair, uint32_t threshold, T scale) {
  for (int64_t pair = begin; pair < end; ++pair) {
    const uint64_t bits = rnd::Mix64(key + (first_pair + static_cast<uint64_t>(pair)) * rnd::kGolden);
    for (int64_t half = 0; half < 2; ++half) {
      const int64_t i = 2 * pair + half;
      if (i >= n) break;
      const uint32_t draw = static_cast<uint32_t>(bits >> (32 * half));
      const uint8_t keep = draw >= threshold ? 1 : 0;
      mask[i] = keep;
      out[i] = keep ? in[i] * scale : T(0);
    }
  }
}
BERT_KERNEL_CLONES void DropoutForwardBlock(const float* in, float* out, uint8_t* mask, int64_t n, int64_t begin,
                                            int64_t end, uint64_t key, uint64_t first_pair, uint32_t threshold,
                                            float scale) {
  DropoutPairs(in, out, mask, n, begin, end, key, first_pair, threshold, scale);
}
BERT_KERNEL_CLONES void DropoutForwardBlock(const double* in, double* out, uint8_t* mask, int64_t n, int64_t begin,
                                            int64_t end, uint64_t key, uint64_t first_pair, uint32_t threshold,
                                            double scale) {
  DropoutPairs(in, out, mask, n, begin, end, key, first_pair, threshold, scale);
}

template <typename T>
BERT_ALWAYS_INLINE void DropoutGrad(const T* grad, const uint8_t* mask, T* out, int64_t begin, int64_t end, T scale) {
  for (int64_t i = begin; i < end; ++i) out[i] = mask[i] ? grad[i] * scale : T(0);
}
BERT_KERNEL_CLONES void DropoutBackwardBlock(const float* grad, const uint8_t* mask, float* out, int64_t begin,
                                             int64_t end, float scale) {
  DropoutGrad(grad, mask, out, begin, end, scale);
}
BERT_KERNEL_CLONES void DropoutBackwardBlock(const double* grad, const uint8_t* mask, double* out, int64_t begin,
                                             int64_t end, double scale) {
  DropoutGrad(grad, mask, out, begin, end, scale);
}

class DropoutFunction : public torch::autograd::Function<DropoutFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, double p, DropoutRng* rng) {
    Tensor mask;
    Tensor out = DropoutForwardKernel(x, p, rng, &mask);
    ctx->saved_data["mask"] = mask;
    ctx->saved_data["p"] = p;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    Tensor mask = ctx->saved_data["mask"].toTensor();
    return {DropoutApplyMask(grad_outputs[0], mask, ctx->saved_data["p"].toDouble()), Tensor(), Tensor()};
  }
};

class CrossEntropyFunction : public torch::autograd::Function<CrossEntropyFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& logits, const Tensor& labels) {
    CHECK_EQ(logits.dim(), 2);
    CHECK_EQ(labels.numel(), logits.size(0));
    Tensor wide = logits.scalar_type() == at::kFloat || logits.scalar_type() == at::kDouble
                      ? logits
                      : logits.to(at::kFloat);
    Tensor log_probs = at::_log_softmax(wide, 1, false);
    ctx->saved_data["log_probs"] = log_probs;
    ctx->saved_data["labels"] = labels;
    ctx->saved_data["logits_dtype"] = static_cast<int64_t>(logits.scalar_type());
    return log_probs.gather(1, labels.unsqueeze(1)).sum().neg().div(static_cast<double>(logits.size(0)));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    Tensor log_probs = ctx->saved_data["log_probs"].toTensor();
    CHECK(log_probs.defined()) << "CrossEntropyMean: the graph was backpropagated twice";
    ctx->saved_data["log_probs"] = Tensor();  // released: reused in place below
    Tensor labels = ctx->saved_data["labels"].toTensor();
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["logits_dtype"].toInt());
    // d(mean of -log softmax[label]) / d logits = (softmax - onehot) / M.
    Tensor grad = log_probs.exp_();
    grad.scatter_add_(1, labels.unsqueeze(1), at::full({labels.numel(), 1}, -1.0, grad.options()));
    grad.mul_(grad_outputs[0].div(static_cast<double>(grad.size(0))));
    return {grad.scalar_type() == dtype ? grad : grad.to(dtype), Tensor()};
  }
};

}  // namespace

Tensor DropoutForwardKernel(const Tensor& x, double p, DropoutRng* rng, Tensor* mask) {
  CHECK(x.is_cpu());
  Tensor input = x.contiguous();
  const int64_t n = input.numel();
  Tensor out = at::empty_like(input);
  *mask = at::empty(input.sizes(), input.options().dtype(at::kByte));
  const uint64_t key = rnd::Hash(rng->seed(), kStreamDropout, 0);
  const uint64_t first = rng->Take(static_cast<uint64_t>(n));
  const uint32_t threshold = static_cast<uint32_t>(std::min(p * 4294967296.0, 4294967295.0));
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "Dropout", [&] {
    const scalar_t* in = input.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    uint8_t* m = mask->data_ptr<uint8_t>();
    const scalar_t scale = static_cast<scalar_t>(1.0 / (1.0 - p));
    at::parallel_for(0, (n + 1) / 2, 8192, [&](int64_t begin, int64_t end) {
      DropoutForwardBlock(in, o, m, n, begin, end, key, first >> 1, threshold, scale);
    });
  });
  return out;
}

Tensor DropoutApplyMask(const Tensor& x, const Tensor& mask, double p) {
  Tensor input = x.contiguous();
  CHECK_EQ(input.numel(), mask.numel());
  Tensor out = at::empty_like(input);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "DropoutApplyMask", [&] {
    const scalar_t* g = input.data_ptr<scalar_t>();
    const uint8_t* m = mask.data_ptr<uint8_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, input.numel(), 16384, [&](int64_t begin, int64_t end) {
      DropoutBackwardBlock(g, m, o, begin, end, static_cast<scalar_t>(1.0 / (1.0 - p)));
    });
  });
  return out;
}

Tensor FlatLinear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  // Custom autograd functions take defined tensors only: "no bias" is empty.
  return FlatLinearFunction::apply(x, weight, bias.defined() ? bias : at::empty({0}, weight.options()));
}

Tensor FlatEmbedding(const Tensor& ids, const Tensor& weight) {
  CHECK_EQ(ids.scalar_type(), at::kLong);
  return FlatEmbeddingFunction::apply(ids.reshape({-1}), weight);
}

Tensor Dropout(const Tensor& x, double p, DropoutRng* rng) {
  if (p <= 0.0) return x;
  if (!x.is_cpu()) return at::dropout(x, p, /*train=*/true);
  CHECK(rng != nullptr);
  return DropoutFunction::apply(x, p, rng);
}

Tensor CrossEntropyMean(const Tensor& logits, const Tensor& labels) {
  if (logits.size(0) == 0) return at::zeros({}, logits.options()) + logits.sum() * 0;
  return CrossEntropyFunction::apply(logits, labels);
}

}  // namespace bert
