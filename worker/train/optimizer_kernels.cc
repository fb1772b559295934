#include "worker/train/optimizer_kernels.h"

#include <cmath>

#include "worker/model/cpu_kernels.h"

namespace bert::kernels {
namespace {

// 1 - beta is rounded once from double: in float, 1 - 0.999f is 1e-5 off.
template <typename T>
struct Rounded {
  explicit Rounded(const StepScalars& s)
      : beta1(static_cast<T>(s.beta1)),
        rest1(static_cast<T>(1.0 - s.beta1)),
        beta2(static_cast<T>(s.beta2)),
        rest2(static_cast<T>(1.0 - s.beta2)),
        epsilon(static_cast<T>(s.epsilon)),
        grad_scale(static_cast<T>(s.grad_scale)),
        inv_bc1(static_cast<T>(s.inv_bias_correction1)),
        inv_bc2(static_cast<T>(s.inv_bias_correction2)),
        inv_sqrt_bc2(static_cast<T>(std::sqrt(s.inv_bias_correction2))) {}
  T beta1, rest1, beta2, rest2, epsilon, grad_scale, inv_bc1, inv_bc2, inv_sqrt_bc2;
};

template <typename T>
BERT_ALWAYS_INLINE void AdamW(T* __restrict p, T* __restrict g, T* __restrict m, T* __restrict v, int64_t n,
                  const StepScalars& s, double lr, double decay, bool zero_grad) {
  const Rounded<T> r(s);
  const T step_size = static_cast<T>(lr * s.inv_bias_correction1);
  const T keep = static_cast<T>(1.0 - lr * decay);
  for (int64_t i = 0; i < n; ++i) {
    const T grad = g[i] * r.grad_scale;
    const T mi = r.beta1 * m[i] + r.rest1 * grad;
    const T vi = r.beta2 * v[i] + r.rest2 * grad * grad;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * keep - step_size * mi / (std::sqrt(vi) * r.inv_sqrt_bc2 + r.epsilon);
  }
  if (zero_grad) {
    for (int64_t i = 0; i < n; ++i) g[i] = T(0);
  }
}

// LAMB's direction (You et al. 2019, Algorithm 2, with NVIDIA's bias
// correction and epsilon placement): m^ / (sqrt(v^) + eps) + decay * p.
template <typename T>
BERT_ALWAYS_INLINE T LambDirection(T p, T m, T v, const Rounded<T>& r, T decay) {
  return (m * r.inv_bc1) / (std::sqrt(v * r.inv_bc2) + r.epsilon) + decay * p;
}

template <typename T>
BERT_ALWAYS_INLINE void LambMoments(const T* __restrict p, T* __restrict g, T* __restrict m, T* __restrict v, int64_t n,
                        const StepScalars& s, double decay, bool zero_grad, double* param_squares,
                        double* update_squares) {
  const Rounded<T> r(s);
  const T wd = static_cast<T>(decay);
  // Eight interleaved partial sums (as SumSquares): no serial dependency.
  double ps[8] = {0, 0, 0, 0, 0, 0, 0, 0}, us[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = 0; i < n; ++i) {
    const T grad = g[i] * r.grad_scale;
    const T mi = r.beta1 * m[i] + r.rest1 * grad;
    const T vi = r.beta2 * v[i] + r.rest2 * grad * grad;
    m[i] = mi;
    v[i] = vi;
    const T u = LambDirection(p[i], mi, vi, r, wd);
    ps[i & 7] += static_cast<double>(p[i]) * static_cast<double>(p[i]);
    us[i & 7] += static_cast<double>(u) * static_cast<double>(u);
  }
  if (zero_grad) {
    for (int64_t i = 0; i < n; ++i) g[i] = T(0);
  }
  *param_squares = 0;
  *update_squares = 0;
  for (int j = 0; j < 8; ++j) {
    *param_squares += ps[j];
    *update_squares += us[j];
  }
}

template <typename T>
BERT_ALWAYS_INLINE void LambApply(T* __restrict p, const T* __restrict m, const T* __restrict v, int64_t n, const StepScalars& s,
                      double decay, double step) {
  const Rounded<T> r(s);
  const T wd = static_cast<T>(decay), step_size = static_cast<T>(step);
  for (int64_t i = 0; i < n; ++i) p[i] -= step_size * LambDirection(p[i], m[i], v[i], r, wd);
}

template <typename T>
BERT_ALWAYS_INLINE double SumSquares(const T* __restrict x, int64_t n) {
  double partial[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) partial[j] += static_cast<double>(x[i + j]) * static_cast<double>(x[i + j]);
  }
  double sum = 0;
  for (; i < n; ++i) sum += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  for (int j = 0; j < 8; ++j) sum += partial[j];
  return sum;
}

}  // namespace

BERT_KERNEL_CLONES void AdamWBlock(float* p, float* g, float* m, float* v, int64_t n, const StepScalars& s, double lr,
                                   double decay, bool zero_grad) {
  AdamW(p, g, m, v, n, s, lr, decay, zero_grad);
}
BERT_KERNEL_CLONES void AdamWBlock(double* p, double* g, double* m, double* v, int64_t n, const StepScalars& s,
                                   double lr, double decay, bool zero_grad) {
  AdamW(p, g, m, v, n, s, lr, decay, zero_grad);
}

BERT_KERNEL_CLONES void LambMomentsBlock(const float* p, float* g, float* m, float* v, int64_t n,
                                         const StepScalars& s, double decay, bool zero_grad, double* param_squares,
                                         double* update_squares) {
  LambMoments(p, g, m, v, n, s, decay, zero_grad, param_squares, update_squares);
}
BERT_KERNEL_CLONES void LambMomentsBlock(const double* p, double* g, double* m, double* v, int64_t n,
                                         const StepScalars& s, double decay, bool zero_grad, double* param_squares,
                                         double* update_squares) {
  LambMoments(p, g, m, v, n, s, decay, zero_grad, param_squares, update_squares);
}

BERT_KERNEL_CLONES void LambApplyBlock(float* p, const float* m, const float* v, int64_t n, const StepScalars& s,
                                       double decay, double step) {
  LambApply(p, m, v, n, s, decay, step);
}
BERT_KERNEL_CLONES void LambApplyBlock(double* p, const double* m, const double* v, int64_t n, const StepScalars& s,
                                       double decay, double step) {
  LambApply(p, m, v, n, s, decay, step);
}

BERT_KERNEL_CLONES double SumSquaresBlock(const float* x, int64_t n) { return SumSquares(x, n); }
BERT_KERNEL_CLONES double SumSquaresBlock(const double* x, int64_t n) { return SumSquares(x, n); }

}  // namespace bert::kernels
