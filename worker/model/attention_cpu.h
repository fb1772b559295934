// Internal to attention.cc: the CPU self-attention kernel as one autograd op.
//
// It reads queries, keys and values in place from the fused projection's
// output [B*T, 3H] and writes each head's context straight into [B*T, H]
// (and, backward, each head's gradients straight into [B*T, 3H]), with one
// small row-major GEMM per (sequence, head) called directly on BLAS with
// strides: no permute copies, no stack, and none of LibTorch 1.13's
// per-batch dispatch in bmm/baddbmm (a select, resolve_conj and addmm_ per
// matrix). The (sequence, head) pairs run in parallel over the intra-op
// threads with OpenBLAS held to one thread meanwhile: measured here, 96
// 128x128x64 GEMMs run ~20% faster as single-threaded calls than split over
// OpenBLAS's own two threads each.
//
// Same math as SelfAttention's reference path: softmax(Q K^T / sqrt(d) +
// key_bias) with dropout (flat_ops.h's DropoutRng stream) on the
// probabilities, times V. Deterministic for a fixed thread count.
#pragma once

#include <cstdint>

#include "worker/torch.h"

#include "worker/model/flat_ops.h"

namespace bert {

// True when the BLAS that LibTorch loaded exports sgemm_/dgemm_ (OpenBLAS,
// reference BLAS, MKL): then FusedSelfAttentionCpu may run.
bool FusedAttentionAvailable();

// qkv [B*T, 3H] (CPU, float or double); key_bias [B, T] in qkv's dtype (0 or
// the dtype's lowest value) or undefined when no row is padded.
torch::Tensor FusedSelfAttentionCpu(const torch::Tensor& qkv, const torch::Tensor& key_bias, int64_t batch_size,
                                    int64_t num_heads, double dropout_p, DropoutRng* rng);

}  // namespace bert
