// Helpers for the worker's hand-written CPU loops (internal to worker/).
//
// BERT_KERNEL_CLONES: compile a hot loop once per instruction set (AVX-512,
// AVX2, baseline) and let the loader pick the best for the CPU (GCC/Clang
// target_clones, an ifunc). The project is built for the baseline x86-64
// ISA, so without this the compiler could only use SSE2 in our own loops.
// Internal to worker/. The AVX clones may contract a*b+c into FMAs, so the
// last bit can differ between CPUs of different ISA; a given machine always
// runs the same clone, so runs there are reproducible (DESIGN.md's
// determinism is per machine and thread count).
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(BERT_NO_TARGET_CLONES)
#define BERT_KERNEL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define BERT_KERNEL_CLONES
#endif

// For the helpers a cloned kernel calls: a helper the compiler declines to
// inline is compiled once, for the baseline ISA, and the clones gain nothing.
#if defined(__GNUC__) || defined(__clang__)
#define BERT_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define BERT_ALWAYS_INLINE inline
#endif

#include <cstdint>
#include <cmath>
#include <cstring>

namespace bert {

// e^x for x <= 0 in float, for softmax-style sums: x = n ln2 + r
// (Cody-Waite), e^r by its Taylor series to r^7 (|r| <= ln2/2: truncation
// 5e-9 relative; within 2 ulp of expf overall), times 2^n built in the
// exponent bits. Pure arithmetic, so loops over it vectorise. Returns 0
// below -87.3 (where expf turns denormal), e.g. for masked keys.
BERT_ALWAYS_INLINE float ExpNonPositive(float x) {
  const bool underflow = x < -87.3f;
  x = underflow ? -87.3f : x;
  const float shifted = x * 1.44269504088896341f + 12582912.0f;  // 1.5 * 2^23: rounds to nearest
  const float n = shifted - 12582912.0f;
  const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  float p = 1.98412698e-4f;
  p = p * r + 1.38888889e-3f;
  p = p * r + 8.33333333e-3f;
  p = p * r + 4.16666667e-2f;
  p = p * r + 1.66666667e-1f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t exponent = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &exponent, sizeof(scale));
  return underflow ? 0.0f : p * scale;
}
// Double precision (gradient checks): the library exp.
BERT_ALWAYS_INLINE double ExpNonPositive(double x) { return std::exp(x); }

}  // namespace bert
