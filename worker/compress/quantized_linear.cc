#include "worker/compress/quantized_linear.h"

#include <ATen/cpu/Utils.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

namespace bert {
namespace {

const char* EngineName(at::QEngine engine) {
  switch (engine) {
    case at::QEngine::X86: return "x86";
    case at::QEngine::FBGEMM: return "fbgemm";
    case at::QEngine::QNNPACK: return "qnnpack";
    default: return "other";
  }
}

// quantized::linear_prepack(Tensor W, Tensor? B) through the dispatcher
// (boxed: its result is a TorchScript custom class).
c10::intrusive_ptr<LinearPackedParamsBase> Prepack(const Int8Weight& weight, const torch::Tensor& bias) {
  CHECK_EQ(weight.values.dim(), 2);
  CHECK(weight.values.scalar_type() == torch::kChar);
  CHECK_EQ(weight.scale.numel(), weight.values.size(0));
  CHECK_EQ(bias.numel(), weight.values.size(0));
  const torch::Tensor quantized = at::_make_per_channel_quantized_tensor(
      weight.values.contiguous(), weight.scale.to(torch::kDouble).contiguous(),
      torch::zeros({weight.values.size(0)}, torch::kLong), /*axis=*/0);
  static const c10::OperatorHandle op =
      c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_prepack", "");
  std::vector<c10::IValue> stack = {quantized, std::optional<at::Tensor>(bias.to(torch::kFloat).contiguous())};
  op.callBoxed(&stack);
  CHECK_EQ(stack.size(), 1u);
  return stack[0].toCustomClass<LinearPackedParamsBase>();
}

}  // namespace

std::string SelectQuantizedEngine() {
  static std::once_flag once;
  static std::string chosen;
  std::call_once(once, [] {
    const std::vector<at::QEngine>& supported = at::globalContext().supportedQEngines();
    for (at::QEngine wanted : {at::QEngine::X86, at::QEngine::FBGEMM, at::QEngine::QNNPACK}) {
      if (std::find(supported.begin(), supported.end(), wanted) == supported.end()) continue;
      at::globalContext().setQEngine(wanted);
      chosen = EngineName(wanted);
      break;
    }
    if (chosen.empty()) {
      LOG(WARNING) << "[int8] this LibTorch has no quantized engine (x86, fbgemm or qnnpack)";
      return;
    }
    LOG(INFO) << "[int8] quantized engine " << chosen << ", activations "
              << (QuantizedReduceRange() ? "7-bit (no AVX-512 VNNI: fbgemm's int16 sums would saturate)"
                                         : "8-bit");
  });
  return chosen;
}

bool QuantizedReduceRange() {
  const at::QEngine engine = at::globalContext().qEngine();
  return (engine == at::QEngine::X86 || engine == at::QEngine::FBGEMM) && !at::cpu::is_avx512_vnni_supported();
}

Int8Weight QuantizeWeightPerChannel(const torch::Tensor& weight) {
  CHECK_EQ(weight.dim(), 2);
  const torch::Tensor w = weight.detach().to(torch::kCPU, torch::kFloat);
  torch::Tensor max_abs = std::get<0>(w.abs().max(1));  // [out]
  torch::Tensor scale = torch::where(max_abs > 0, max_abs / 127.0, torch::ones_like(max_abs));
  Int8Weight out;
  out.values = torch::round(w / scale.unsqueeze(1)).clamp(-127, 127).to(torch::kChar);
  out.scale = scale.contiguous();
  return out;
}

ActivationQuant ActivationQuantFromRange(float lo, float hi) {
  const float low = std::min(lo, 0.0f), high = std::max(hi, 0.0f);
  ActivationQuant quant;
  const float scale = (high - low) / 255.0f;
  if (!(scale > 0) || !std::isfinite(scale)) return quant;  // never observed, or all zeros
  quant.scale = scale;
  quant.zero_point = static_cast<int32_t>(std::clamp(std::nearbyint(-low / scale), 0.0f, 255.0f));
  return quant;
}

void RangeObserver::Observe(const torch::Tensor& x) {
  if (x.numel() == 0) return;
  const auto [low, high] = torch::aminmax(x.detach());
  lo = std::min(lo, low.item<float>());
  hi = std::max(hi, high.item<float>());
  rows += x.dim() > 1 ? x.size(0) : 1;
}

QuantizedLinear QuantizedLinear::Dynamic(const Int8Weight& weight, const torch::Tensor& bias) {
  CHECK(!SelectQuantizedEngine().empty()) << "no quantized engine";
  QuantizedLinear linear;
  linear.packed_ = Prepack(weight, bias);
  linear.reduce_range_ = QuantizedReduceRange();
  return linear;
}

QuantizedLinear QuantizedLinear::Static(const Int8Weight& weight, const torch::Tensor& bias, ActivationQuant input) {
  CHECK(!SelectQuantizedEngine().empty()) << "no quantized engine";
  CHECK(input.scale > 0 && std::isfinite(input.scale));
  CHECK(input.zero_point >= 0 && input.zero_point <= 255);
  QuantizedLinear linear;
  linear.packed_ = Prepack(weight, bias);
  linear.is_static_ = true;
  linear.reduce_range_ = QuantizedReduceRange();
  if (linear.reduce_range_) {  // the same real range on [0, 127]
    input.scale = input.scale * 255.0f / 127.0f;
    input.zero_point = static_cast<int32_t>(std::nearbyint(input.zero_point * 127.0 / 255.0));
  }
  linear.input_ = input;
  try {
    linear.packed_->apply_with_input_q_dq_qweight_dq_output_fp32(torch::zeros({1, weight.values.size(1)}),
                                                                 input.scale, input.zero_point);
  } catch (const c10::Error&) {
    // qnnpack has no fp32-out static kernel: the input is still rounded to
    // the static grid, then the GEMM runs as the dynamic one.
    linear.fused_static_ = false;
    static std::once_flag once;
    std::call_once(once, [] {
      LOG(WARNING) << "[int8] this engine has no static fp32-output kernel; static inputs are rounded to "
                      "their calibrated grid and multiplied by the dynamic kernel";
    });
  }
  return linear;
}

torch::Tensor QuantizedLinear::Forward(const torch::Tensor& x) const {
  const torch::Tensor input = x.to(torch::kFloat).contiguous();
  if (!is_static_) return packed_->apply_dynamic(input, reduce_range_);
  if (fused_static_) {
    return packed_->apply_with_input_q_dq_qweight_dq_output_fp32(input, input_.scale, input_.zero_point);
  }
  const torch::Tensor rounded =
      at::dequantize(at::quantize_per_tensor(input, input_.scale, input_.zero_point, torch::kQUInt8));
  return packed_->apply_dynamic(rounded, reduce_range_);
}

}  // namespace bert
