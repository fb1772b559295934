// FlatLinearGelu (flat_ops.h): y = gelu(x W^T + b) with the bias, the GELU
// and their backward fused into one pass each around the two GEMMs.
//
// LibTorch's addmm + gelu and their backward read or write the [N, I]
// intermediate activation six times (bias broadcast copy, GEMM accumulate,
// gelu, gelu_backward's two inputs and output, the bias-gradient sum); here
// the GEMM writes it, one pass adds the bias in place and writes the GELU,
// and the backward's one pass writes the pre-activation gradient while
// summing it per column for the bias.
//
// GELU is HF's "gelu", the exact erf form: x/2 (1 + erf(x/sqrt 2))
// (Hendrycks & Gimpel 2016). For float, erf is Abramowitz & Stegun 7.1.26
// (|error| < 1.5e-7, the approximation LibTorch's vectorised CPU erf uses),
// with a vectorisable exp; double uses std::erf (gradient checks).
#include <glog/logging.h>

#include <cmath>
#include <cstring>

#include "worker/model/flat_ops.h"
#include "worker/model/cpu_kernels.h"

namespace bert {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kColumnBlock = 512;  // backward: columns per task (bias sums stay in L1)

// Phi(x) = (1 + erf(x / sqrt 2)) / 2 and phi(x) = e^(-x^2/2) / sqrt(2 pi).
BERT_ALWAYS_INLINE void NormalCdfPdf(float x, float* cdf, float* pdf) {
  const float z = x * 0.70710678118654752f;  // x / sqrt 2
  const float az = z < 0 ? -z : z;
  const float t = 1.0f / (1.0f + 0.3275911f * az);
  const float poly =
      t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  const float e = ExpNonPositive(-z * z);
  const float erf_abs = 1.0f - poly * e;
  const float erf = z < 0 ? -erf_abs : erf_abs;
  *cdf = 0.5f * (1.0f + erf);
  *pdf = e * 0.39894228040143268f;
}
BERT_ALWAYS_INLINE void NormalCdfPdf(double x, double* cdf, double* pdf) {
  *cdf = 0.5 * (1.0 + std::erf(x * 0.70710678118654752));
  *pdf = std::exp(-0.5 * x * x) * 0.39894228040143268;
}

// Rows [first, last): pre += bias (in place), out = gelu(pre).
template <typename T>
BERT_ALWAYS_INLINE void ForwardRows(T* pre, const T* bias, T* out, int64_t first, int64_t last, int64_t width) {
  for (int64_t r = first; r < last; ++r) {
    T* row = pre + r * width;
    T* y = out + r * width;
    for (int64_t j = 0; j < width; ++j) {
      const T value = row[j] + bias[j];
      T cdf, pdf;
      NormalCdfPdf(value, &cdf, &pdf);
      row[j] = value;
      y[j] = value * cdf;
    }
  }
}

// Columns [begin, end) of every row: dpre = dy * gelu'(pre), gelu' = Phi + x phi;
// their column sums are added to bias_grad (when not null).
template <typename T>
BERT_ALWAYS_INLINE void BackwardColumns(const T* pre, const T* dy, T* dpre, int64_t rows, int64_t width,
                                        int64_t begin, int64_t end, T* bias_grad) {
  T sums[kColumnBlock] = {};
  const int64_t span = end - begin;
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = pre + r * width + begin;
    const T* g = dy + r * width + begin;
    T* d = dpre + r * width + begin;
    for (int64_t j = 0; j < span; ++j) {
      T cdf, pdf;
      NormalCdfPdf(x[j], &cdf, &pdf);
      d[j] = g[j] * (cdf + x[j] * pdf);
      sums[j] += d[j];
    }
  }
  if (bias_grad != nullptr) {
    for (int64_t j = 0; j < span; ++j) bias_grad[begin + j] += sums[j];
  }
}

BERT_KERNEL_CLONES void GeluForward(float* pre, const float* bias, float* out, int64_t first, int64_t last,
                                    int64_t width) {
  ForwardRows(pre, bias, out, first, last, width);
}
BERT_KERNEL_CLONES void GeluForward(double* pre, const double* bias, double* out, int64_t first, int64_t last,
                                    int64_t width) {
  ForwardRows(pre, bias, out, first, last, width);
}
BERT_KERNEL_CLONES void GeluBackward(const float* pre, const float* dy, float* dpre, int64_t rows, int64_t width,
                                     int64_t begin, int64_t end, float* bias_grad) {
  BackwardColumns(pre, dy, dpre, rows, width, begin, end, bias_grad);
}
BERT_KERNEL_CLONES void GeluBackward(const double* pre, const double* dy, double* dpre, int64_t rows, int64_t width,
                                     int64_t begin, int64_t end, double* bias_grad) {
  BackwardColumns(pre, dy, dpre, rows, width, begin, end, bias_grad);
}

Tensor GradOf(const Tensor& param) { return param.requires_grad() ? param.grad() : Tensor(); }

class FlatLinearGeluFunction : public torch::autograd::Function<FlatLinearGeluFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& weight, const Tensor& bias) {
    Tensor pre = at::mm(x, weight.t());  // [N, I]; the bias is added below
    Tensor out = at::empty_like(pre);
    const int64_t rows = pre.size(0), width = pre.size(1);
    Tensor bias_c = bias.contiguous();
    AT_DISPATCH_FLOATING_TYPES(pre.scalar_type(), "FlatLinearGelu", [&] {
      scalar_t* p = pre.data_ptr<scalar_t>();
      scalar_t* o = out.data_ptr<scalar_t>();
      const scalar_t* b = bias_c.data_ptr<scalar_t>();
      at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / width), [&](int64_t first, int64_t last) {
        GeluForward(p, b, o, first, last, width);
      });
    });
    ctx->save_for_backward({x, weight});
    ctx->saved_data["pre"] = pre;
    ctx->saved_data["weight_grad"] = GradOf(weight);
    ctx->saved_data["bias_grad"] = GradOf(bias);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    variable_list saved = ctx->get_saved_variables();
    const Tensor& x = saved[0];
    const Tensor& weight = saved[1];
    Tensor pre = ctx->saved_data["pre"].toTensor();
    Tensor weight_grad = ctx->saved_data["weight_grad"].toTensor();
    Tensor bias_grad = ctx->saved_data["bias_grad"].toTensor();
    Tensor dy = grad_outputs[0].contiguous();
    Tensor dpre = at::empty_like(pre);
    const int64_t rows = pre.size(0), width = pre.size(1);
    AT_DISPATCH_FLOATING_TYPES(pre.scalar_type(), "FlatLinearGeluBackward", [&] {
      const scalar_t* p = pre.data_ptr<scalar_t>();
      const scalar_t* g = dy.data_ptr<scalar_t>();
      scalar_t* d = dpre.data_ptr<scalar_t>();
      scalar_t* bg = bias_grad.defined() ? bias_grad.data_ptr<scalar_t>() : nullptr;
      const int64_t blocks = (width + kColumnBlock - 1) / kColumnBlock;
      at::parallel_for(0, blocks, 1, [&](int64_t first, int64_t last) {
        for (int64_t block = first; block < last; ++block) {
          const int64_t begin = block * kColumnBlock;
          GeluBackward(p, g, d, rows, width, begin, std::min(width, begin + kColumnBlock), bg);
        }
      });
    });
    Tensor dx;
    if (ctx->needs_input_grad(0)) dx = at::mm(dpre, weight);
    if (weight_grad.defined()) weight_grad.addmm_(dpre.t(), x);
    return {dx, Tensor(), Tensor()};
  }
};

}  // namespace

Tensor FlatLinearGelu(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  CHECK_EQ(x.dim(), 2);
  const bool fused = x.is_cpu() && x.scalar_type() == weight.scalar_type() && bias.defined() &&
                     bias.scalar_type() == weight.scalar_type() &&
                     (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble);
  if (!fused) return at::gelu(FlatLinear(x, weight, bias), "none");
  return FlatLinearGeluFunction::apply(x, weight, bias);
}

}  // namespace bert
