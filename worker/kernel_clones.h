// BERT_KERNEL_CLONES: compile a hot loop once per instruction set (AVX-512,
// AVX2, baseline) and let the loader pick the best for the CPU (GCC/Clang
// target_clones, an ifunc). The project is built for the baseline x86-64
// ISA, so without this the compiler could only use SSE2 in our own loops.
// Internal to worker/; results are bit-identical across the clones because
// ISO C++ mode disables FMA contraction (-ffp-contract=off).
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
