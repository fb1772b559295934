// An int8 Linear on LibTorch's quantized engine (fbgemm/x86 or qnnpack):
// weights int8, symmetric per output channel (zero point 0, values in
// [-127, 127]: -128 is never used, so the grid is symmetric), bias fp32,
// and the input quantized to uint8 either per call from its own min/max
// ("dynamic") or with a scale and zero point fixed by calibration
// ("static"). Input and output are fp32 [N, in] -> [N, out], so the
// Linear drops into the fp32 graph where FlatLinear was.
//
// The GEMM is the engine's int8 kernel: the weight is packed once with
// quantized::linear_prepack (the dispatcher op), then each call runs the
// packed weight's apply_dynamic (what quantized::linear_dynamic calls) or
// apply_with_input_q_dq_qweight_dq_output_fp32 (quantize the input with the
// static parameters, int8 GEMM, fp32 out; fbgemm's, used by x86 too).
//
// reduce_range: fbgemm's AVX2 kernel (vpmaddubsw) sums pairs of u8*s8
// products into int16 and saturates with 8-bit activations, which is why
// PyTorch quantizes activations to 7 bits for fbgemm. With AVX-512 VNNI
// (vpdpbusd, 32-bit sums) there is no saturation, so the full 8 bits are
// used there; elsewhere activations use 7 bits (a static input's scale and
// zero point are rescaled to [0, 127] at load time).
//
// Thread-compatible: Forward is const and may run concurrently.
#pragma once

#include "worker/torch.h"

#include <ATen/native/quantized/PackedParams.h>

#include <cstdint>
#include <limits>
#include <string>

namespace bert {

// Chooses the quantized engine once per process: x86, else fbgemm, else
// qnnpack (the first that at::globalContext().supportedQEngines() lists),
// sets it and logs it. Returns its name ("x86", "fbgemm", "qnnpack"), or ""
// when LibTorch has none (then QuantizedLinear cannot be built).
std::string SelectQuantizedEngine();
// Whether activations are quantized to 7 bits on this engine and CPU (see above).
bool QuantizedReduceRange();

struct Int8Weight {
  torch::Tensor values;  // [out, in] int8 (torch::kChar), each in [-127, 127]
  torch::Tensor scale;   // [out] float32, each finite and > 0: weight[r] ~= values[r] * scale[r]
};

// Symmetric per output channel: scale[r] = max|weight[r]| / 127, values =
// round(weight / scale) (an all-zero row gets scale 1 and zeros).
Int8Weight QuantizeWeightPerChannel(const torch::Tensor& weight);

// uint8 asymmetric quantization of an activation: q = round(x / scale) + zero_point in [0, 255].
struct ActivationQuant {
  float scale = 1.0f;      // finite, > 0
  int32_t zero_point = 0;  // in [0, 255]
};
// The range [min(lo, 0), max(hi, 0)] on [0, 255] (PyTorch's MinMaxObserver
// rule: 0 is exact). A degenerate range gets scale 1.
ActivationQuant ActivationQuantFromRange(float lo, float hi);

// Running min/max of the inputs a Linear saw (calibration).
struct RangeObserver {
  float lo = std::numeric_limits<float>::infinity();
  float hi = -std::numeric_limits<float>::infinity();
  int64_t rows = 0;  // input rows observed
  void Observe(const torch::Tensor& x);
};

class QuantizedLinear {
 public:
  // CHECKs the shapes and dtypes (the loader validates files before this).
  static QuantizedLinear Dynamic(const Int8Weight& weight, const torch::Tensor& bias);
  static QuantizedLinear Static(const Int8Weight& weight, const torch::Tensor& bias, ActivationQuant input);

  // x [N, in] fp32 -> [N, out] fp32.
  torch::Tensor Forward(const torch::Tensor& x) const;
  bool is_static() const { return is_static_; }

 private:
  QuantizedLinear() = default;
  c10::intrusive_ptr<LinearPackedParamsBase> packed_;
  bool is_static_ = false;
  bool reduce_range_ = false;
  bool fused_static_ = true;  // the engine has the static fp32-in/fp32-out kernel
  ActivationQuant input_;     // static only, as used at run time (7 bits when reduce_range_)
};

}  // namespace bert
