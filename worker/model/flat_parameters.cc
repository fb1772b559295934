#include "worker/model/flat_parameters.h"

#include <ATen/CPUGeneratorImpl.h>
#include <glog/logging.h>

#include "datapipe/random.h"

namespace bert {
namespace {

// Our own stream of datapipe/random.h's Hash (values above the data streams).
constexpr uint64_t kStreamParamInit = 101;

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

bool DefaultWeightDecay(const std::string& name) {
  // Google BERT's optimization.py excludes ["LayerNorm", "layer_norm", "bias"].
  return !(EndsWith(name, "bias") || name.find("LayerNorm") != std::string::npos ||
           name.find("layer_norm") != std::string::npos);
}

FlatParameters::FlatParameters(std::vector<ParameterSpec> specs, torch::Dtype dtype, torch::Device device) {
  slots_.reserve(specs.size());
  for (auto& spec : specs) {
    CHECK(IndexOf(spec.name) < 0) << "duplicate parameter " << spec.name;
    ParameterSlot slot;
    slot.numel = 1;
    for (int64_t d : spec.shape) {
      CHECK_GT(d, 0) << spec.name;
      slot.numel *= d;
    }
    slot.offset = numel_;
    numel_ += slot.numel;
    slot.spec = std::move(spec);
    slots_.push_back(std::move(slot));
  }
  auto options = torch::TensorOptions().dtype(dtype).device(device);
  values_ = torch::zeros({numel_}, options);
  grads_ = torch::zeros({numel_}, options);
  params_.reserve(slots_.size());
  for (const auto& slot : slots_) {
    torch::Tensor param = values_.narrow(0, slot.offset, slot.numel).view(slot.spec.shape);
    param.requires_grad_(true);
    param.mutable_grad() = grads_.narrow(0, slot.offset, slot.numel).view(slot.spec.shape);
    params_.push_back(std::move(param));
  }
}

void FlatParameters::Initialize(uint64_t seed, double normal_std) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const ParameterSlot& slot = slots_[i];
    torch::Tensor view = values_.narrow(0, slot.offset, slot.numel);
    switch (slot.spec.init) {
      case ParamInit::kZeros:
        view.zero_();
        break;
      case ParamInit::kOnes:
        view.fill_(1.0);
        break;
      case ParamInit::kNormal: {
        // Drawn on the CPU in the buffer's dtype, so a CUDA model starts from
        // the same weights as a CPU one.
        auto generator = at::make_generator<at::CPUGeneratorImpl>(rnd::Hash(seed, kStreamParamInit, i));
        torch::Tensor draw = torch::empty({slot.numel}, torch::TensorOptions().dtype(values_.dtype()));
        draw.normal_(0.0, normal_std, generator);
        view.copy_(draw);
        break;
      }
    }
  }
}

namespace {

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

}  // namespace

Result<std::vector<bool>> FlatParameters::CopyNamed(const std::vector<NamedTensor>& tensors,
                                                    const std::string& source,
                                                    const std::function<bool(const std::string&)>& wanted,
                                                    const std::string& tag) {
  std::vector<bool> copied(slots_.size(), false);
  torch::NoGradGuard no_grad;
  for (const NamedTensor& tensor : tensors) {
    if (!wanted(tensor.name)) continue;
    const int64_t index = IndexOf(tensor.name);
    if (index < 0) {
      LOG(WARNING) << tag << " " << source << ": tensor " << tensor.name << " is not part of the model; ignored";
      continue;
    }
    const ParameterSlot& slot = slots_[index];
    if (tensor.shape != slot.spec.shape) {
      return Status::InvalidArgument(source + ": tensor " + tensor.name + " has shape " + ShapeText(tensor.shape) +
                                     ", the model needs " + ShapeText(slot.spec.shape));
    }
    CHECK_EQ(tensor.values.size(), static_cast<size_t>(slot.numel));
    const torch::Tensor values =
        torch::from_blob(const_cast<float*>(tensor.values.data()), {slot.numel}, torch::kFloat);
    params_[index].detach().view({-1}).copy_(values);
    copied[index] = true;
  }
  return copied;
}

int64_t FlatParameters::IndexOf(const std::string& name) const {
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].spec.name == name) return static_cast<int64_t>(i);
  }
  return -1;
}

const torch::Tensor& FlatParameters::param(const std::string& name) const {
  int64_t index = IndexOf(name);
  CHECK_GE(index, 0) << "no parameter named " << name;
  return params_[static_cast<size_t>(index)];
}

torch::Tensor FlatParameters::Span(size_t first, size_t count, const std::vector<int64_t>& shape) const {
  CHECK_GE(count, 1u);
  CHECK_LE(first + count, slots_.size());
  const int64_t offset = slots_[first].offset;
  const int64_t end = slots_[first + count - 1].offset + slots_[first + count - 1].numel;
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  CHECK_EQ(numel, end - offset) << "span of " << slots_[first].spec.name << " has the wrong shape";
  torch::Tensor span = values_.narrow(0, offset, numel).view(shape);
  span.requires_grad_(true);
  span.mutable_grad() = grads_.narrow(0, offset, numel).view(shape);
  return span;
}

nlohmann::json FlatParameters::Layout() const {
  nlohmann::json entries = nlohmann::json::array();
  for (const auto& slot : slots_) {
    entries.push_back({{"name", slot.spec.name},
                       {"shape", slot.spec.shape},
                       {"offset", slot.offset},
                       {"numel", slot.numel},
                       {"weight_decay", slot.spec.weight_decay}});
  }
  return {{"dtype", std::string(c10::toString(values_.scalar_type()))},
          {"numel", numel_},
          {"parameters", std::move(entries)}};
}

}  // namespace bert
