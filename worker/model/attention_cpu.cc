#include "worker/model/attention_cpu.h"

#include <dlfcn.h>
#include <glog/logging.h>

#include <cmath>
#include <limits>

#include "worker/model/cpu_kernels.h"

namespace bert {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Fortran BLAS entry points (column-major, arguments by pointer), looked up
// at run time in the BLAS that LibTorch itself loaded: linking them here
// would need the BLAS on the link line, which only LibTorch depends on.
using SgemmFn = void (*)(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
                         const int*, const float*, const int*, const float*, float*, const int*);
using DgemmFn = void (*)(const char*, const char*, const int*, const int*, const int*, const double*,
                         const double*, const int*, const double*, const int*, const double*, double*, const int*);

struct Blas {
  SgemmFn sgemm = nullptr;
  DgemmFn dgemm = nullptr;
  void (*set_threads)(int) = nullptr;  // OpenBLAS only
  int (*get_threads)() = nullptr;
};

const Blas& GetBlas() {
  static const Blas blas = [] {
    Blas b;
    b.sgemm = reinterpret_cast<SgemmFn>(dlsym(RTLD_DEFAULT, "sgemm_"));
    b.dgemm = reinterpret_cast<DgemmFn>(dlsym(RTLD_DEFAULT, "dgemm_"));
    b.set_threads = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    b.get_threads = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    return b;
  }();
  return blas;
}

// Row-major C = alpha op(A) op(B) + beta C; as column-major, C^T = op(B)^T op(A)^T.
void Gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
          int ldb, float beta, float* c, int ldc) {
  GetBlas().sgemm(trans_b ? "T" : "N", trans_a ? "T" : "N", &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
}
void Gemm(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
          int ldb, double beta, double* c, int ldc) {
  GetBlas().dgemm(trans_b ? "T" : "N", trans_a ? "T" : "N", &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
}

// Holds OpenBLAS to one thread per call while our own threads split the
// (sequence, head) pairs; restores the previous count. Only the training
// thread calls BLAS, so the global setting is ours for the duration.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() {
    const Blas& blas = GetBlas();
    if (blas.set_threads != nullptr && blas.get_threads != nullptr) {
      saved_ = blas.get_threads();
      if (saved_ > 1) blas.set_threads(1);
    }
  }
  ~SingleThreadedBlas() {
    if (saved_ > 1) GetBlas().set_threads(saved_);
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int saved_ = 0;
};

constexpr int kLanes = 16;

// Each row of s [rows, cols] becomes softmax(s + key_bias) in place.
template <typename T>
BERT_ALWAYS_INLINE void SoftmaxRows(T* s, const T* key_bias, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    T* row = s + r * cols;
    if (key_bias != nullptr) {
      for (int64_t j = 0; j < cols; ++j) row[j] += key_bias[j];
    }
    T lane_max[kLanes];
    for (int k = 0; k < kLanes; ++k) lane_max[k] = -std::numeric_limits<T>::infinity();
    int64_t j = 0;
    for (; j + kLanes <= cols; j += kLanes) {
      for (int k = 0; k < kLanes; ++k) lane_max[k] = row[j + k] > lane_max[k] ? row[j + k] : lane_max[k];
    }
    T row_max = -std::numeric_limits<T>::infinity();
    for (int k = 0; k < kLanes; ++k) row_max = lane_max[k] > row_max ? lane_max[k] : row_max;
    for (int64_t t = j; t < cols; ++t) row_max = row[t] > row_max ? row[t] : row_max;
    T sum = 0;
    for (int64_t t = 0; t < cols; ++t) {
      row[t] = ExpNonPositive(row[t] - row_max);
      sum += row[t];
    }
    const T inverse = T(1) / sum;
    for (int64_t t = 0; t < cols; ++t) row[t] *= inverse;
  }
}

// dp [rows, cols] (the gradient of softmax output p) becomes the gradient
// of its input, times `scale`: p (dp - <dp, p>) scale, in place.
template <typename T>
BERT_ALWAYS_INLINE void SoftmaxBackwardRows(const T* p, T* dp, int64_t rows, int64_t cols, T scale) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* pr = p + r * cols;
    T* dr = dp + r * cols;
    T dot = 0;
    for (int64_t t = 0; t < cols; ++t) dot += pr[t] * dr[t];
    for (int64_t t = 0; t < cols; ++t) dr[t] = pr[t] * (dr[t] - dot) * scale;
  }
}

BERT_KERNEL_CLONES void SoftmaxKernel(float* s, const float* key_bias, int64_t rows, int64_t cols) {
  SoftmaxRows(s, key_bias, rows, cols);
}
BERT_KERNEL_CLONES void SoftmaxKernel(double* s, const double* key_bias, int64_t rows, int64_t cols) {
  SoftmaxRows(s, key_bias, rows, cols);
}
BERT_KERNEL_CLONES void SoftmaxBackwardKernel(const float* p, float* dp, int64_t rows, int64_t cols, float scale) {
  SoftmaxBackwardRows(p, dp, rows, cols, scale);
}
BERT_KERNEL_CLONES void SoftmaxBackwardKernel(const double* p, double* dp, int64_t rows, int64_t cols,
                                              double scale) {
  SoftmaxBackwardRows(p, dp, rows, cols, scale);
}

// Shapes of one call: B sequences of T tokens, A heads of width d.
struct Dims {
  int batch, seq, heads, head_size, hidden;
  int qkv_stride() const { return 3 * hidden; }
};

class FusedAttentionFunction : public torch::autograd::Function<FusedAttentionFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& qkv_in, const Tensor& key_bias, int64_t batch,
                        int64_t heads, double dropout_p, DropoutRng* rng) {
    Tensor qkv = qkv_in.contiguous();
    const Dims dims = MakeDims(qkv, batch, heads);
    Tensor probs = at::empty({batch, heads, dims.seq, dims.seq}, qkv.options());
    Tensor context = at::empty({qkv.size(0), dims.hidden}, qkv.options());
    Tensor mask;
    AT_DISPATCH_FLOATING_TYPES(qkv.scalar_type(), "FusedAttention", [&] {
      const scalar_t* x = qkv.data_ptr<scalar_t>();
      const scalar_t* bias = key_bias.numel() > 0 ? key_bias.data_ptr<scalar_t>() : nullptr;
      scalar_t* p = probs.data_ptr<scalar_t>();
      const int t = dims.seq, d = dims.head_size, h = dims.hidden, ld = dims.qkv_stride();
      const scalar_t scale = static_cast<scalar_t>(1.0 / std::sqrt(static_cast<double>(d)));
      {
        SingleThreadedBlas one_thread;
        at::parallel_for(0, batch * heads, 1, [&](int64_t first, int64_t last) {
          for (int64_t pair = first; pair < last; ++pair) {
            const int64_t b = pair / heads, head = pair % heads;
            const scalar_t* q = x + b * t * ld + head * d;
            scalar_t* s = p + pair * t * t;
            Gemm(false, true, t, t, d, scale, q, ld, q + h, ld, 0, s, t);  // S = Q K^T / sqrt(d)
            SoftmaxKernel(s, bias != nullptr ? bias + b * t : nullptr, t, t);
          }
        });
      }
      Tensor dropped = dropout_p > 0 ? DropoutForwardKernel(probs, dropout_p, rng, &mask) : probs;
      const scalar_t* pd = dropped.data_ptr<scalar_t>();
      scalar_t* c = context.data_ptr<scalar_t>();
      SingleThreadedBlas one_thread;
      at::parallel_for(0, batch * heads, 1, [&](int64_t first, int64_t last) {
        for (int64_t pair = first; pair < last; ++pair) {
          const int64_t b = pair / heads, head = pair % heads;
          const scalar_t* v = x + b * t * ld + 2 * h + head * d;
          Gemm(false, false, t, d, t, 1, pd + pair * t * t, t, v, ld, 0, c + b * t * h + head * d, h);  // C = P V
        }
      });
    });
    ctx->save_for_backward({qkv});
    ctx->saved_data["probs"] = probs;
    ctx->saved_data["mask"] = mask;
    ctx->saved_data["dropout_p"] = dropout_p;
    ctx->saved_data["batch"] = batch;
    ctx->saved_data["heads"] = heads;
    return context;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const Tensor qkv = ctx->get_saved_variables()[0];
    const Tensor probs = ctx->saved_data["probs"].toTensor();
    const Tensor mask = ctx->saved_data["mask"].toTensor();
    const double dropout_p = ctx->saved_data["dropout_p"].toDouble();
    const int64_t batch = ctx->saved_data["batch"].toInt(), heads = ctx->saved_data["heads"].toInt();
    const Dims dims = MakeDims(qkv, batch, heads);
    Tensor grad_context = grad_outputs[0].contiguous();
    Tensor grad_qkv = at::empty_like(qkv);  // every element is written once below
    Tensor grad_probs = at::empty_like(probs);
    Tensor dropped = dropout_p > 0 ? DropoutApplyMask(probs, mask, dropout_p) : probs;
    AT_DISPATCH_FLOATING_TYPES(qkv.scalar_type(), "FusedAttentionBackward", [&] {
      const scalar_t* x = qkv.data_ptr<scalar_t>();
      const scalar_t* dc = grad_context.data_ptr<scalar_t>();
      const scalar_t* pd = dropped.data_ptr<scalar_t>();
      scalar_t* dx = grad_qkv.data_ptr<scalar_t>();
      scalar_t* dp = grad_probs.data_ptr<scalar_t>();
      const int t = dims.seq, d = dims.head_size, h = dims.hidden, ld = dims.qkv_stride();
      {
        SingleThreadedBlas one_thread;
        at::parallel_for(0, batch * heads, 1, [&](int64_t first, int64_t last) {
          for (int64_t pair = first; pair < last; ++pair) {
            const int64_t b = pair / heads, head = pair % heads;
            const scalar_t* dcp = dc + b * t * h + head * d;
            const scalar_t* v = x + b * t * ld + 2 * h + head * d;
            Gemm(false, true, t, t, d, 1, dcp, h, v, ld, 0, dp + pair * t * t, t);  // dP = dC V^T
            Gemm(true, false, t, d, t, 1, pd + pair * t * t, t, dcp, h, 0, dx + b * t * ld + 2 * h + head * d,
                 ld);  // dV = P^T dC
          }
        });
      }
      if (dropout_p > 0) {
        grad_probs = DropoutApplyMask(grad_probs, mask, dropout_p);
        dp = grad_probs.data_ptr<scalar_t>();
      }
      const scalar_t* p = probs.data_ptr<scalar_t>();
      const scalar_t scale = static_cast<scalar_t>(1.0 / std::sqrt(static_cast<double>(d)));
      SingleThreadedBlas one_thread;
      at::parallel_for(0, batch * heads, 1, [&](int64_t first, int64_t last) {
        for (int64_t pair = first; pair < last; ++pair) {
          const int64_t b = pair / heads, head = pair % heads;
          scalar_t* ds = dp + pair * t * t;
          SoftmaxBackwardKernel(p + pair * t * t, ds, t, t, scale);  // dS, including 1/sqrt(d)
          const scalar_t* q = x + b * t * ld + head * d;
          scalar_t* dq = dx + b * t * ld + head * d;
          Gemm(false, false, t, d, t, 1, ds, t, q + h, ld, 0, dq, ld);      // dQ = dS K
          Gemm(true, false, t, d, t, 1, ds, t, q, ld, 0, dq + h, ld);       // dK = dS^T Q
        }
      });
    });
    return {grad_qkv, Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }

 private:
  static Dims MakeDims(const Tensor& qkv, int64_t batch, int64_t heads) {
    Dims dims;
    dims.batch = static_cast<int>(batch);
    dims.seq = static_cast<int>(qkv.size(0) / batch);
    dims.heads = static_cast<int>(heads);
    dims.hidden = static_cast<int>(qkv.size(1) / 3);
    dims.head_size = dims.hidden / dims.heads;
    CHECK_EQ(dims.seq * batch, qkv.size(0));
    CHECK_EQ(dims.head_size * heads * 3, qkv.size(1));
    return dims;
  }
};

}  // namespace

bool FusedAttentionAvailable() { return GetBlas().sgemm != nullptr && GetBlas().dgemm != nullptr; }

Tensor FusedSelfAttentionCpu(const Tensor& qkv, const Tensor& key_bias, int64_t batch_size, int64_t num_heads,
                             double dropout_p, DropoutRng* rng) {
  CHECK(FusedAttentionAvailable());
  CHECK(qkv.is_cpu());
  CHECK(dropout_p == 0 || rng != nullptr);
  CHECK(!key_bias.defined() || (key_bias.is_contiguous() && key_bias.scalar_type() == qkv.scalar_type()));
  // Custom autograd functions take defined tensors only: "no mask" is empty.
  const Tensor bias = key_bias.defined() ? key_bias : at::empty({0}, qkv.options());
  return FusedAttentionFunction::apply(qkv, bias, batch_size, num_heads, dropout_p, rng);
}

}  // namespace bert
