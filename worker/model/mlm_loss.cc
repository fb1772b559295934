#include "worker/model/mlm_loss.h"

#include <glog/logging.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "worker/model/flat_ops.h"
#include "worker/model/cpu_kernels.h"

namespace bert {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int kLanes = 16;              // interleaved partial results per row (vectorisable)
constexpr int64_t kColumnBlock = 2048;  // backward: columns per parallel task

// Row statistics of z = logits + bias: the maximum and the sum of e^(z - max).
template <typename T>
BERT_ALWAYS_INLINE void RowStats(const T* logits, const T* bias, int64_t n, T* max_out, T* sum_out) {
  T lane_max[kLanes];
  for (int k = 0; k < kLanes; ++k) lane_max[k] = -std::numeric_limits<T>::infinity();
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const T z = logits[j + k] + bias[j + k];
      lane_max[k] = z > lane_max[k] ? z : lane_max[k];
    }
  }
  T row_max = -std::numeric_limits<T>::infinity();
  for (int k = 0; k < kLanes; ++k) row_max = lane_max[k] > row_max ? lane_max[k] : row_max;
  for (int64_t t = j; t < n; ++t) row_max = logits[t] + bias[t] > row_max ? logits[t] + bias[t] : row_max;
  T lane_sum[kLanes] = {};
  for (j = 0; j + kLanes <= n; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) lane_sum[k] += ExpNonPositive(logits[j + k] + bias[j + k] - row_max);
  }
  T sum = 0;
  for (int64_t t = j; t < n; ++t) sum += ExpNonPositive(logits[t] + bias[t] - row_max);
  for (int k = 0; k < kLanes; ++k) sum += lane_sum[k];
  *max_out = row_max;
  *sum_out = sum;
}

template <typename T>
BERT_ALWAYS_INLINE void ForwardRows(const T* logits, const T* bias, const int64_t* labels, int64_t first, int64_t last,
                        int64_t vocab, T* lse, double* row_loss, uint8_t* row_correct) {
  for (int64_t r = first; r < last; ++r) {
    const T* row = logits + r * vocab;
    T row_max, sum;
    RowStats(row, bias, vocab, &row_max, &sum);
    lse[r] = row_max + std::log(sum);
    const T label_logit = row[labels[r]] + bias[labels[r]];
    row_loss[r] = static_cast<double>(lse[r]) - static_cast<double>(label_logit);
    row_correct[r] = label_logit >= row_max ? 1 : 0;
  }
}

// Columns [begin, end) of every row become (softmax - onehot) * scale, in
// place; their sums over rows are added to bias_grad (when not null).
template <typename T>
BERT_ALWAYS_INLINE void BackwardColumns(T* logits, const T* bias, const T* lse, const int64_t* labels, int64_t rows,
                            int64_t vocab, int64_t begin, int64_t end, T scale, T* bias_grad) {
  T column_sums[kColumnBlock] = {};
  const int64_t width = end - begin;
  for (int64_t r = 0; r < rows; ++r) {
    T* row = logits + r * vocab + begin;
    const T* b = bias + begin;
    const T row_lse = lse[r];
    for (int64_t j = 0; j < width; ++j) row[j] = ExpNonPositive(row[j] + b[j] - row_lse) * scale;
    const int64_t label = labels[r];
    if (label >= begin && label < end) row[label - begin] -= scale;
    for (int64_t j = 0; j < width; ++j) column_sums[j] += row[j];
  }
  if (bias_grad != nullptr) {
    for (int64_t j = 0; j < width; ++j) bias_grad[begin + j] += column_sums[j];
  }
}

BERT_KERNEL_CLONES void ForwardRowsKernel(const float* logits, const float* bias, const int64_t* labels,
                                          int64_t first, int64_t last, int64_t vocab, float* lse, double* row_loss,
                                          uint8_t* row_correct) {
  ForwardRows(logits, bias, labels, first, last, vocab, lse, row_loss, row_correct);
}
BERT_KERNEL_CLONES void ForwardRowsKernel(const double* logits, const double* bias, const int64_t* labels,
                                          int64_t first, int64_t last, int64_t vocab, double* lse, double* row_loss,
                                          uint8_t* row_correct) {
  ForwardRows(logits, bias, labels, first, last, vocab, lse, row_loss, row_correct);
}
BERT_KERNEL_CLONES void BackwardColumnsKernel(float* logits, const float* bias, const float* lse,
                                              const int64_t* labels, int64_t rows, int64_t vocab, int64_t begin,
                                              int64_t end, float scale, float* bias_grad) {
  BackwardColumns(logits, bias, lse, labels, rows, vocab, begin, end, scale, bias_grad);
}
BERT_KERNEL_CLONES void BackwardColumnsKernel(double* logits, const double* bias, const double* lse,
                                              const int64_t* labels, int64_t rows, int64_t vocab, int64_t begin,
                                              int64_t end, double scale, double* bias_grad) {
  BackwardColumns(logits, bias, lse, labels, rows, vocab, begin, end, scale, bias_grad);
}

Tensor GradOf(const Tensor& param) { return param.requires_grad() ? param.grad() : Tensor(); }

class TiedDecoderCrossEntropyFunction : public torch::autograd::Function<TiedDecoderCrossEntropyFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& hidden, const Tensor& weight, const Tensor& bias,
                               const Tensor& labels) {
    const int64_t rows = hidden.size(0);
    const int64_t vocab = weight.size(0);
    Tensor logits = at::mm(hidden, weight.t());  // [M, V], without the bias
    Tensor lse = at::empty({rows}, hidden.options());
    std::vector<double> row_loss(static_cast<size_t>(rows));
    std::vector<uint8_t> row_correct(static_cast<size_t>(rows));
    Tensor bias_c = bias.contiguous();
    AT_DISPATCH_FLOATING_TYPES(hidden.scalar_type(), "TiedDecoderCrossEntropy", [&] {
      const scalar_t* z = logits.data_ptr<scalar_t>();
      const scalar_t* b = bias_c.data_ptr<scalar_t>();
      const int64_t* y = labels.data_ptr<int64_t>();
      scalar_t* l = lse.data_ptr<scalar_t>();
      at::parallel_for(0, rows, 8, [&](int64_t first, int64_t last) {
        ForwardRowsKernel(z, b, y, first, last, vocab, l, row_loss.data(), row_correct.data());
      });
    });
    double total = 0;
    int64_t correct = 0;
    for (int64_t r = 0; r < rows; ++r) {  // in order: deterministic
      total += row_loss[static_cast<size_t>(r)];
      correct += row_correct[static_cast<size_t>(r)];
    }
    ctx->save_for_backward({hidden, weight});
    ctx->saved_data["logits"] = logits;
    ctx->saved_data["lse"] = lse;
    ctx->saved_data["bias"] = bias_c;
    ctx->saved_data["labels"] = labels;
    ctx->saved_data["weight_grad"] = GradOf(weight);
    ctx->saved_data["bias_grad"] = GradOf(bias);
    Tensor loss = at::scalar_tensor(total / static_cast<double>(rows), hidden.options());
    Tensor correct_count = at::scalar_tensor(correct, hidden.options().dtype(at::kLong));
    ctx->mark_non_differentiable({correct_count});
    return {loss, correct_count};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    Tensor logits = ctx->saved_data["logits"].toTensor();
    CHECK(logits.defined()) << "TiedDecoderCrossEntropy: the graph was backpropagated twice";
    ctx->saved_data["logits"] = Tensor();  // reused in place below
    variable_list saved = ctx->get_saved_variables();
    const Tensor& hidden = saved[0];
    const Tensor& weight = saved[1];
    Tensor lse = ctx->saved_data["lse"].toTensor();
    Tensor bias = ctx->saved_data["bias"].toTensor();
    Tensor labels = ctx->saved_data["labels"].toTensor();
    Tensor weight_grad = ctx->saved_data["weight_grad"].toTensor();
    Tensor bias_grad = ctx->saved_data["bias_grad"].toTensor();
    const int64_t rows = logits.size(0), vocab = logits.size(1);
    const double scale = grad_outputs[0].item<double>() / static_cast<double>(rows);
    AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "TiedDecoderCrossEntropyBackward", [&] {
      scalar_t* z = logits.data_ptr<scalar_t>();
      scalar_t* bg = bias_grad.defined() ? bias_grad.data_ptr<scalar_t>() : nullptr;
      const int64_t blocks = (vocab + kColumnBlock - 1) / kColumnBlock;
      at::parallel_for(0, blocks, 1, [&](int64_t first, int64_t last) {
        for (int64_t block = first; block < last; ++block) {
          const int64_t begin = block * kColumnBlock;
          BackwardColumnsKernel(z, bias.data_ptr<scalar_t>(), lse.data_ptr<scalar_t>(), labels.data_ptr<int64_t>(),
                                rows, vocab, begin, std::min(vocab, begin + kColumnBlock),
                                static_cast<scalar_t>(scale), bg);
        }
      });
    });
    Tensor grad_hidden;
    if (ctx->needs_input_grad(0)) grad_hidden = at::mm(logits, weight);
    if (weight_grad.defined()) weight_grad.addmm_(logits.t(), hidden);
    return {grad_hidden, Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

MlmLossOutput TiedDecoderCrossEntropy(const Tensor& hidden, const Tensor& weight, const Tensor& bias,
                                      const Tensor& labels) {
  CHECK_EQ(hidden.dim(), 2);
  CHECK_EQ(weight.dim(), 2);
  CHECK_EQ(hidden.size(1), weight.size(1));
  CHECK_EQ(bias.numel(), weight.size(0));
  CHECK_EQ(labels.numel(), hidden.size(0));
  MlmLossOutput out;
  const bool fused = hidden.is_cpu() && hidden.scalar_type() == weight.scalar_type() &&
                     bias.scalar_type() == weight.scalar_type() &&
                     (hidden.scalar_type() == at::kFloat || hidden.scalar_type() == at::kDouble);
  if (hidden.size(0) == 0 || !fused) {
    // Other devices and dtypes (CUDA, bf16 autocast): the same math in LibTorch ops.
    Tensor logits = FlatLinear(hidden, weight, bias);
    out.loss = CrossEntropyMean(logits, labels);
    torch::NoGradGuard no_grad;
    if (hidden.size(0) > 0) {
      out.correct =
          logits.gather(1, labels.unsqueeze(1)).ge(logits.amax(1, /*keepdim=*/true)).sum().item<int64_t>();
    }
    return out;
  }
  variable_list result = TiedDecoderCrossEntropyFunction::apply(hidden, weight, bias, labels.contiguous());
  out.loss = result[0];
  out.correct = result[1].item<int64_t>();
  return out;
}

}  // namespace bert
