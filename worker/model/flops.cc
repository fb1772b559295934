#include "worker/model/flops.h"

#include "worker/torch.h"

#include <algorithm>
#include <chrono>

namespace bert {

int64_t EncoderParameterCount(const BertConfig& config) {
  const int64_t h = config.hidden_size;
  const int64_t inner = config.intermediate_size;
  const int64_t per_layer = 4 * (h * h + h)           // query, key, value, attention output
                            + (h * inner + inner)     // intermediate
                            + (inner * h + h)         // output
                            + 2 * 2 * h;              // two LayerNorms
  return config.num_hidden_layers * per_layer;
}

double PreTrainingFlops(const BertConfig& config, int64_t batch_size, int64_t seq_len, int64_t num_masked) {
  const double h = static_cast<double>(config.hidden_size);
  const double tokens = static_cast<double>(batch_size) * static_cast<double>(seq_len);
  const double per_token = 6.0 * static_cast<double>(EncoderParameterCount(config)) +
                           12.0 * static_cast<double>(config.num_hidden_layers) * h * static_cast<double>(seq_len);
  const double per_masked = 6.0 * (h * h + h) + 6.0 * h * static_cast<double>(config.vocab_size);
  const double per_sequence = 6.0 * (h * h + h) + 6.0 * (2.0 * h + 2.0);
  return tokens * per_token + static_cast<double>(num_masked) * per_masked +
         static_cast<double>(batch_size) * per_sequence;
}

double MeasureGemmGflops(int64_t n, int repeats, torch::Device device, torch::Dtype dtype, int inner) {
  torch::NoGradGuard no_grad;
  const auto options = torch::TensorOptions().dtype(dtype).device(device);
  // Drawn on the CPU in fp32, so every device multiplies the same values.
  torch::Tensor a = torch::randn({n, n}).to(options);
  torch::Tensor b = torch::randn({n, n}).to(options);
  torch::Tensor c = torch::mm(a, b);
  auto wait = [&] {
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
  };
  wait();
  double best_seconds = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    for (int k = 0; k < inner; ++k) at::mm_out(c, a, b);
    wait();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best_seconds = std::min(best_seconds, seconds / inner);
  }
  return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / best_seconds / 1e9;
}

double MeasureTrainingPeakGflops(torch::Device device, bool bf16) {
  if (!device.is_cuda()) return MeasureGemmGflops(2048, 3);
  return MeasureGemmGflops(8192, 5, device, bf16 ? torch::kBFloat16 : torch::kFloat32, /*inner=*/10);
}

}  // namespace bert
