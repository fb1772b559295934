#include "worker/train/optimizer.h"

#include <glog/logging.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "worker/train/optimizer_kernels.h"

namespace bert {
namespace {

// Fixed reduction blocks: partial sums depend on the data only, never on how
// blocks are spread over threads.
constexpr int64_t kBlock = 65536;

}  // namespace

std::vector<FlatOptimizer::Block> FlatOptimizer::MakeBlocks(const std::vector<ParamRange>& ranges) {
  std::vector<FlatOptimizer::Block> blocks;
  for (size_t r = 0; r < ranges.size(); ++r) {
    for (int64_t offset = 0; offset < ranges[r].numel; offset += kBlock) {
      blocks.push_back(Block{static_cast<int64_t>(r), ranges[r].begin + offset,
                             std::min(kBlock, ranges[r].numel - offset)});
    }
  }
  return blocks;
}

namespace {

kernels::StepScalars MakeScalars(const OptimizerOptions& options, int64_t step, double grad_scale) {
  kernels::StepScalars s;
  s.beta1 = options.beta1;
  s.beta2 = options.beta2;
  s.epsilon = options.epsilon;
  s.grad_scale = grad_scale;
  s.inv_bias_correction1 = options.bias_correction ? 1.0 / (1.0 - std::pow(options.beta1, step)) : 1.0;
  s.inv_bias_correction2 = options.bias_correction ? 1.0 / (1.0 - std::pow(options.beta2, step)) : 1.0;
  return s;
}

double TrustRatio(double param_norm, double update_norm) {
  return param_norm > 0 && update_norm > 0 ? param_norm / update_norm : 1.0;
}

}  // namespace

Result<OptimizerKind> ParseOptimizerKind(const std::string& name) {
  if (name == "adamw") return OptimizerKind::kAdamW;
  if (name == "lamb") return OptimizerKind::kLamb;
  return Status::InvalidArgument("optimizer: must be adamw or lamb, got \"" + name + "\"");
}

const char* OptimizerKindName(OptimizerKind kind) { return kind == OptimizerKind::kAdamW ? "adamw" : "lamb"; }

Status OptimizerOptions::Validate() const {
  auto fail = [](const char* field, const char* rule, double value) {
    std::ostringstream out;
    out << "optimizer." << field << ": must be " << rule << ", got " << value;
    return Status::InvalidArgument(out.str());
  };
  if (!(beta1 >= 0 && beta1 < 1)) return fail("beta1", "in [0, 1)", beta1);
  if (!(beta2 >= 0 && beta2 < 1)) return fail("beta2", "in [0, 1)", beta2);
  if (!(epsilon > 0)) return fail("epsilon", "positive", epsilon);
  if (!(weight_decay >= 0 && weight_decay < 1)) return fail("weight_decay", "in [0, 1)", weight_decay);
  return Status::Ok();
}

std::vector<ParamRange> ShardRanges(const FlatParameters& params, int64_t shard_begin, int64_t shard_end) {
  if (shard_end < 0) shard_end = params.numel();
  std::vector<ParamRange> ranges;
  for (size_t i = 0; i < params.size(); ++i) {
    const ParameterSlot& slot = params.slot(i);
    const int64_t begin = std::max(slot.offset, shard_begin);
    const int64_t end = std::min(slot.offset + slot.numel, shard_end);
    if (begin >= end) continue;
    ranges.push_back(ParamRange{begin, end - begin, static_cast<int64_t>(i), slot.spec.weight_decay});
  }
  return ranges;
}

FlatOptimizer::FlatOptimizer(const OptimizerOptions& options, std::vector<ParamRange> ranges, int64_t num_params,
                             int64_t shard_begin, int64_t shard_end, torch::TensorOptions state_options)
    : options_(options),
      ranges_(std::move(ranges)),
      num_params_(num_params),
      shard_begin_(shard_begin),
      shard_end_(shard_end) {
  CHECK(options.Validate().ok()) << options.Validate().ToString();
  CHECK_LE(shard_begin, shard_end);
  for (const ParamRange& range : ranges_) {
    CHECK(range.begin >= shard_begin && range.begin + range.numel <= shard_end) << "range outside the shard";
    CHECK(range.param_index >= 0 && range.param_index < num_params);
  }
  exp_avg_ = torch::zeros({shard_end - shard_begin}, state_options);
  exp_avg_sq_ = torch::zeros({shard_end - shard_begin}, state_options);
  blocks_ = MakeBlocks(ranges_);
}

FlatOptimizer::FlatOptimizer(const OptimizerOptions& options, const FlatParameters& params)
    : FlatOptimizer(options, ShardRanges(params), static_cast<int64_t>(params.size()), 0, params.numel(),
                    params.values().options()) {}

bool FlatOptimizer::UseFused(const torch::Tensor& params) const {
  return options_.fused && params.is_cpu() &&
         (params.scalar_type() == torch::kFloat || params.scalar_type() == torch::kDouble);
}

void FlatOptimizer::Step(const torch::Tensor& params, const torch::Tensor& grads, double lr, double grad_scale,
                         bool zero_grads) {
  CHECK_EQ(params.dim(), 1);
  CHECK(params.sizes() == grads.sizes());
  CHECK(params.is_contiguous() && grads.is_contiguous());
  CHECK_EQ(params.scalar_type(), grads.scalar_type());
  CHECK_GE(params.numel(), shard_end_);
  torch::NoGradGuard no_grad;
  ++step_;
  if (options_.kind == OptimizerKind::kAdamW) {
    StepAdamW(params, grads, lr, grad_scale, zero_grads);
  } else {
    StepLamb(params, grads, lr, grad_scale, zero_grads);
  }
}

void FlatOptimizer::StepAdamW(const torch::Tensor& params, const torch::Tensor& grads, double lr, double grad_scale,
                              bool zero_grads) {
  const kernels::StepScalars s = MakeScalars(options_, step_, grad_scale);
  if (UseFused(params)) {
    AT_DISPATCH_FLOATING_TYPES(params.scalar_type(), "AdamW", [&] {
      scalar_t* p = params.data_ptr<scalar_t>();
      scalar_t* g = grads.data_ptr<scalar_t>();
      scalar_t* m = exp_avg_.data_ptr<scalar_t>();
      scalar_t* v = exp_avg_sq_.data_ptr<scalar_t>();
      at::parallel_for(0, static_cast<int64_t>(blocks_.size()), 1, [&](int64_t first, int64_t last) {
        for (int64_t b = first; b < last; ++b) {
          const Block& block = blocks_[b];
          const int64_t i = block.begin, j = block.begin - shard_begin_;
          const ParamRange& range = ranges_[block.range];
          if (range.lr_scale == 0.0) {  // frozen: untouched
            if (zero_grads) std::fill(g + i, g + i + block.numel, scalar_t(0));
            continue;
          }
          kernels::AdamWBlock(p + i, g + i, m + j, v + j, block.numel, s, lr * range.lr_scale, DecayOf(range),
                              zero_grads);
        }
      });
    });
    return;
  }
  for (const ParamRange& range : ranges_) {
    torch::Tensor p = params.narrow(0, range.begin, range.numel);
    torch::Tensor g = grads.narrow(0, range.begin, range.numel);
    torch::Tensor m = exp_avg_.narrow(0, range.begin - shard_begin_, range.numel);
    torch::Tensor v = exp_avg_sq_.narrow(0, range.begin - shard_begin_, range.numel);
    if (range.lr_scale == 0.0) {  // frozen: untouched
      if (zero_grads) g.zero_();
      continue;
    }
    const double range_lr = lr * range.lr_scale;
    torch::Tensor scaled = grad_scale != 1.0 ? g * grad_scale : g;
    if (range.weight_decay) p.mul_(1.0 - range_lr * options_.weight_decay);
    m.mul_(s.beta1).add_(scaled, 1.0 - s.beta1);
    v.mul_(s.beta2).addcmul_(scaled, scaled, 1.0 - s.beta2);
    torch::Tensor denom = (v.sqrt() * std::sqrt(s.inv_bias_correction2)).add_(s.epsilon);
    p.addcdiv_(m, denom, -range_lr * s.inv_bias_correction1);
    if (zero_grads) g.zero_();
  }
}

void FlatOptimizer::StepLamb(const torch::Tensor& params, const torch::Tensor& grads, double lr, double grad_scale,
                             bool zero_grads) {
  const kernels::StepScalars s = MakeScalars(options_, step_, grad_scale);
  // Per-parameter partial squares [num_params, 2] = (||p||^2, ||u||^2) over
  // this shard; the NormReducer (if any) sums them over all shards.
  torch::Tensor squares = torch::zeros({num_params_, 2}, torch::kDouble);
  double* sq = squares.data_ptr<double>();
  const bool fused = UseFused(params);
  std::vector<torch::Tensor> updates;  // ATen path: u per range
  if (fused) {
    std::vector<double> block_squares(2 * blocks_.size());
    AT_DISPATCH_FLOATING_TYPES(params.scalar_type(), "LambMoments", [&] {
      const scalar_t* p = params.data_ptr<scalar_t>();
      scalar_t* g = grads.data_ptr<scalar_t>();
      scalar_t* m = exp_avg_.data_ptr<scalar_t>();
      scalar_t* v = exp_avg_sq_.data_ptr<scalar_t>();
      at::parallel_for(0, static_cast<int64_t>(blocks_.size()), 1, [&](int64_t first, int64_t last) {
        for (int64_t b = first; b < last; ++b) {
          const Block& block = blocks_[b];
          const int64_t i = block.begin, j = block.begin - shard_begin_;
          kernels::LambMomentsBlock(p + i, g + i, m + j, v + j, block.numel, s, DecayOf(ranges_[block.range]),
                                    zero_grads, &block_squares[2 * b], &block_squares[2 * b + 1]);
        }
      });
    });
    for (size_t b = 0; b < blocks_.size(); ++b) {  // in order: deterministic
      const int64_t param = ranges_[blocks_[b].range].param_index;
      sq[2 * param] += block_squares[2 * b];
      sq[2 * param + 1] += block_squares[2 * b + 1];
    }
  } else {
    for (const ParamRange& range : ranges_) {
      torch::Tensor p = params.narrow(0, range.begin, range.numel);
      torch::Tensor g = grads.narrow(0, range.begin, range.numel);
      torch::Tensor m = exp_avg_.narrow(0, range.begin - shard_begin_, range.numel);
      torch::Tensor v = exp_avg_sq_.narrow(0, range.begin - shard_begin_, range.numel);
      torch::Tensor scaled = grad_scale != 1.0 ? g * grad_scale : g;
      m.mul_(s.beta1).add_(scaled, 1.0 - s.beta1);
      v.mul_(s.beta2).addcmul_(scaled, scaled, 1.0 - s.beta2);
      torch::Tensor u = (m * s.inv_bias_correction1) / ((v * s.inv_bias_correction2).sqrt_().add_(s.epsilon));
      if (range.weight_decay) u.add_(p, options_.weight_decay);
      sq[2 * range.param_index] += p.to(torch::kDouble).square().sum().item<double>();
      sq[2 * range.param_index + 1] += u.to(torch::kDouble).square().sum().item<double>();
      updates.push_back(u);
      if (zero_grads) g.zero_();
    }
  }
  if (norm_reducer_) norm_reducer_(squares);
  // Trust ratio ||p|| / ||u|| per tensor; NVIDIA's default applies it only
  // to tensors with weight decay (use_nvlamb = trust_ratio_for_all).
  std::vector<double> step_sizes(ranges_.size());
  for (size_t r = 0; r < ranges_.size(); ++r) {
    const ParamRange& range = ranges_[r];
    const bool adaptive = options_.trust_ratio_for_all || DecayOf(range) != 0.0;
    const int64_t param = range.param_index;
    step_sizes[r] = lr * range.lr_scale *
                    (adaptive ? TrustRatio(std::sqrt(sq[2 * param]), std::sqrt(sq[2 * param + 1])) : 1.0);
  }
  if (fused) {
    AT_DISPATCH_FLOATING_TYPES(params.scalar_type(), "LambApply", [&] {
      scalar_t* p = params.data_ptr<scalar_t>();
      const scalar_t* m = exp_avg_.data_ptr<scalar_t>();
      const scalar_t* v = exp_avg_sq_.data_ptr<scalar_t>();
      at::parallel_for(0, static_cast<int64_t>(blocks_.size()), 1, [&](int64_t first, int64_t last) {
        for (int64_t b = first; b < last; ++b) {
          const Block& block = blocks_[b];
          const int64_t i = block.begin, j = block.begin - shard_begin_;
          kernels::LambApplyBlock(p + i, m + j, v + j, block.numel, s, DecayOf(ranges_[block.range]),
                                  step_sizes[block.range]);
        }
      });
    });
  } else {
    for (size_t r = 0; r < ranges_.size(); ++r) {
      params.narrow(0, ranges_[r].begin, ranges_[r].numel).add_(updates[r], -step_sizes[r]);
    }
  }
}

double SumOfSquares(const torch::Tensor& flat, int64_t begin, int64_t numel) {
  CHECK_EQ(flat.dim(), 1);
  CHECK(begin >= 0 && begin + numel <= flat.numel());
  if (!flat.is_cpu() || !flat.is_contiguous() ||
      (flat.scalar_type() != torch::kFloat && flat.scalar_type() != torch::kDouble)) {
    const double norm = flat.narrow(0, begin, numel).norm().item<double>();  // no double copy of the buffer
    return norm * norm;
  }
  const int64_t num_blocks = (numel + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(num_blocks));
  AT_DISPATCH_FLOATING_TYPES(flat.scalar_type(), "SumOfSquares", [&] {
    const scalar_t* x = flat.data_ptr<scalar_t>() + begin;
    at::parallel_for(0, num_blocks, 1, [&](int64_t first, int64_t last) {
      for (int64_t b = first; b < last; ++b) {
        partial[b] = kernels::SumSquaresBlock(x + b * kBlock, std::min(kBlock, numel - b * kBlock));
      }
    });
  });
  double sum = 0;
  for (double value : partial) sum += value;  // in block order: the same bits for any thread count
  return sum;
}

double GlobalNorm(const torch::Tensor& flat) { return std::sqrt(SumOfSquares(flat, 0, flat.numel())); }

}  // namespace bert
