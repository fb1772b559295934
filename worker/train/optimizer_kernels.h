// Internal to optimizer.cc: the fused per-block loops of AdamW and LAMB and
// the blocked sum of squares, for float and double.
//
// They are memory-bound (AdamW streams g, m, v, p in and m, v, p out), so
// each runs as one pass. On x86-64 with GCC/Clang each is compiled three
// times (AVX-512, AVX2, baseline) and the loader picks the best for the CPU
// (target_clones), since the project is built for the baseline ISA.
// Every function works on one block; the caller parallelises over blocks.
// With zero_grad, gradients are set to 0 after they are read (saves the
// separate zeroing pass of the next step).
#pragma once

#include <cstdint>

namespace bert::kernels {

// Scalars of one update, all in double; kernels round them once to T.
struct StepScalars {
  double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-6;
  double grad_scale = 1.0;            // clipping / averaging factor applied to g
  double inv_bias_correction1 = 1.0;  // 1 / (1 - beta1^t), or 1
  double inv_bias_correction2 = 1.0;  // 1 / (1 - beta2^t), or 1
};

// torch.optim.AdamW on n elements with rate lr and decoupled decay `decay`.
void AdamWBlock(float* p, float* g, float* m, float* v, int64_t n, const StepScalars& s, double lr, double decay,
                bool zero_grad);
void AdamWBlock(double* p, double* g, double* m, double* v, int64_t n, const StepScalars& s, double lr,
                double decay, bool zero_grad);

// LAMB pass 1: moments, and the sums of p^2 and u^2 of this block.
void LambMomentsBlock(const float* p, float* g, float* m, float* v, int64_t n, const StepScalars& s, double decay,
                      bool zero_grad, double* param_squares, double* update_squares);
void LambMomentsBlock(const double* p, double* g, double* m, double* v, int64_t n, const StepScalars& s,
                      double decay, bool zero_grad, double* param_squares, double* update_squares);

// LAMB pass 2: p -= step * u, with u recomputed exactly as in pass 1.
void LambApplyBlock(float* p, const float* m, const float* v, int64_t n, const StepScalars& s, double decay,
                    double step);
void LambApplyBlock(double* p, const double* m, const double* v, int64_t n, const StepScalars& s, double decay,
                    double step);

// Sum of x^2 in double, with eight interleaved partial sums added in a fixed
// order (vectorisable, and the same bits on every run).
double SumSquaresBlock(const float* x, int64_t n);
double SumSquaresBlock(const double* x, int64_t n);

}  // namespace bert::kernels
