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

double MeasureGemmGflops(int64_t n, int repeats) {
  torch::NoGradGuard no_grad;
  torch::Tensor a = torch::randn({n, n});
  torch::Tensor b = torch::randn({n, n});
  torch::Tensor c = torch::mm(a, b);
  double best_seconds = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    at::mm_out(c, a, b);
    best_seconds = std::min(best_seconds, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / best_seconds / 1e9;
}

}  // namespace bert
