// Model FLOPs of BERT training and the measured fp32 GEMM peak, for
// throughput and MFU (model FLOPs utilisation, Chowdhery et al. 2022, PaLM
// appendix B) in benchmarks and metrics.jsonl.
//
// Training FLOPs (forward + backward = 3x forward, 2 FLOPs per multiply-add):
//   per computed token:   6 N + 12 L H T   (N: encoder parameters; T: padded length)
//   per masked token:     6 (H H + H) + 6 H V   (MLM transform, tied decoder)
//   per sequence:         6 (H H + H) + 6 (2 H + 2)  (pooler, NSP)
// Embedding lookups, LayerNorm, softmax and other element-wise work are not
// counted (the usual MFU convention). Pure functions, except the peak
// measurement, which runs GEMMs on the calling thread's intra-op setting.
#pragma once

#include <cstdint>

#include "worker/torch.h"

#include "worker/model/bert_config.h"

namespace bert {

// Parameters of the L encoder layers (what every token passes through).
int64_t EncoderParameterCount(const BertConfig& config);

// FLOPs of one forward + backward over `batch_size` rows of `seq_len`
// (padded) tokens with `num_masked` MLM positions in all.
double PreTrainingFlops(const BertConfig& config, int64_t batch_size, int64_t seq_len, int64_t num_masked);

// Best GFLOP/s of `repeats` timed torch::mm calls of n x n x n (after one
// untimed warm-up), in `dtype` on `device`: the peak MFU is measured
// against. On CUDA each timing waits for the device (torch::cuda::synchronize)
// and covers `inner` back-to-back calls, so launch latency does not count.
double MeasureGemmGflops(int64_t n, int repeats, torch::Device device = torch::kCPU,
                         torch::Dtype dtype = torch::kFloat32, int inner = 1);
// The peak a run's MFU is against: fp32 n = 2048 on the CPU; on CUDA
// n = 8192 in bf16 (train.precision bf16) or fp32 (TF32 as configured).
double MeasureTrainingPeakGflops(torch::Device device, bool bf16);

}  // namespace bert
