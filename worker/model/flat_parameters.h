// FlatParameters: every parameter of a model as a view into one flat,
// contiguous buffer, and every gradient as a view into a second one
// (DESIGN.md, "Parameter layout").
//
// Contract:
// - Slots are laid out back to back in declaration order, without padding:
//   slot i covers [offset, offset + numel) of values() and of grads(). The
//   order, names, shapes and offsets (Layout()) are what checkpoints record;
//   optimizer state, gradient all-reduce buckets and ZeRO-1 shards are ranges
//   of the same index space.
// - param(i) is a leaf tensor that requires grad and aliases values(): writing
//   the flat buffer changes the parameter and vice versa. Its grad() is
//   preset to the matching view of grads(). Autograd accumulates into a
//   defined grad in place (AccumulateGrad: `grad += new_grad` when grad mode
//   is off, as it is during backward), so gradients always land in grads();
//   the model's own ops (flat_ops.h) write there directly. Never set a grad to
//   an undefined tensor: call ZeroGrad() instead.
// - Span() gives one view over several consecutive slots (the query, key and
//   value weights of a layer, laid out back to back, become one [3H, H]
//   matrix, so the projection is one GEMM).
// - One buffer holds one dtype: a model in fp32 (or fp64 for gradient checks)
//   has one FlatParameters. Mixed-dtype models would hold one per dtype.
// - Initialize() is deterministic: slot i is drawn from a generator seeded by
//   Hash(seed, i), independent of other slots and of the thread count.
//
// Not thread-safe for concurrent mutation; the tensors it hands out share
// storage with it and stay valid after it is destroyed (reference counted).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "interop/safetensors.h"
#include "worker/torch.h"

namespace bert {

enum class ParamInit {
  kNormal,  // N(0, std): weights and embeddings (Devlin et al. 2019; HF _init_weights)
  kZeros,   // biases
  kOnes,    // LayerNorm weights
};

struct ParameterSpec {
  std::string name;            // HuggingFace name, e.g. "bert.encoder.layer.0.attention.self.query.weight"
  std::vector<int64_t> shape;  // as in HF's state_dict
  ParamInit init = ParamInit::kNormal;
  bool weight_decay = true;    // false for biases and LayerNorm parameters (BERT's exclusion list)
};

struct ParameterSlot {
  ParameterSpec spec;
  int64_t offset = 0;  // first element in values()/grads()
  int64_t numel = 0;   // product of spec.shape
};

// BERT's weight-decay rule: no decay for biases and LayerNorm parameters.
bool DefaultWeightDecay(const std::string& name);

class FlatParameters {
 public:
  // Allocates both buffers (values and grads zeroed) and the views.
  FlatParameters(std::vector<ParameterSpec> specs, torch::Dtype dtype = torch::kFloat32,
                 torch::Device device = torch::kCPU);
  FlatParameters(const FlatParameters&) = delete;
  FlatParameters& operator=(const FlatParameters&) = delete;

  // Draws every slot from its init rule: kNormal with N(0, normal_std).
  void Initialize(uint64_t seed, double normal_std);

  int64_t numel() const { return numel_; }
  size_t size() const { return slots_.size(); }
  const std::vector<ParameterSlot>& slots() const { return slots_; }
  const ParameterSlot& slot(size_t i) const { return slots_.at(i); }
  // Index of the named slot, or -1.
  int64_t IndexOf(const std::string& name) const;

  const torch::Tensor& values() const { return values_; }
  const torch::Tensor& grads() const { return grads_; }
  const torch::Tensor& param(size_t i) const { return params_.at(i); }
  // CHECK-fails on an unknown name (a programming error, not user input).
  const torch::Tensor& param(const std::string& name) const;
  torch::Tensor grad(size_t i) const { return params_.at(i).grad(); }

  // A leaf view over slots [first, first + count), reshaped to `shape`, whose
  // grad is the matching view of grads(). The slots must be consecutive.
  torch::Tensor Span(size_t first, size_t count, const std::vector<int64_t>& shape) const;

  void ZeroGrad() { grads_.zero_(); }

  // Copies each of `tensors` for which `wanted(name)` holds into the slot of
  // that name (to the buffer's device and dtype); a name without a slot is
  // skipped with a warning (`tag` prefixes it). Fails naming `source` and
  // the first tensor whose shape is not the slot's. Returns, per slot,
  // whether it was written.
  Result<std::vector<bool>> CopyNamed(const std::vector<NamedTensor>& tensors, const std::string& source,
                                      const std::function<bool(const std::string&)>& wanted,
                                      const std::string& tag);

  // [{name, shape, offset, numel, weight_decay}], plus dtype and numel: the
  // layout record for checkpoint manifests.
  nlohmann::json Layout() const;

 private:
  std::vector<ParameterSlot> slots_;
  int64_t numel_ = 0;
  torch::Tensor values_;
  torch::Tensor grads_;
  std::vector<torch::Tensor> params_;
};

}  // namespace bert
