#include "worker/train/init_from.h"

#include <glog/logging.h>

#include <sstream>
#include <vector>

namespace bert {
namespace {

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

bool StartsWith(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

}  // namespace

Status CopyPretrainedWeights(const PretrainedModel& pretrained, BertForPreTraining* model,
                             std::vector<std::string>* kept) {
  const std::string& source = pretrained.path;
  FlatParameters& params = model->parameters();
  std::vector<bool> copied(params.size(), false);
  torch::NoGradGuard no_grad;
  for (const NamedTensor& tensor : pretrained.tensors) {
    if (StartsWith(tensor.name, "classifier.")) continue;  // a fine-tuned model's head
    const int64_t index = params.IndexOf(tensor.name);
    if (index < 0) {
      LOG(WARNING) << "[worker] " << source << ": tensor " << tensor.name << " is not part of the model; ignored";
      continue;
    }
    const std::vector<int64_t>& shape = params.slot(index).spec.shape;
    if (tensor.shape != shape) {
      return Status::InvalidArgument(source + ": tensor " + tensor.name + " has shape " + ShapeText(tensor.shape) +
                                     ", the model needs " + ShapeText(shape));
    }
    CHECK_EQ(tensor.values.size(), static_cast<size_t>(params.slot(index).numel));
    const torch::Tensor values =
        torch::from_blob(const_cast<float*>(tensor.values.data()), {params.slot(index).numel}, torch::kFloat);
    params.param(index).detach().view({-1}).copy_(values);  // to the parameters' device and dtype
    copied[index] = true;
  }
  kept->clear();
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string& name = params.slot(i).spec.name;
    if (copied[i]) continue;
    if (StartsWith(name, "bert.") && !StartsWith(name, "bert.pooler.")) {
      return Status::InvalidArgument(source + ": tensor " + name + " is missing");
    }
    kept->push_back(name);
  }
  return Status::Ok();
}

Status InitializeFromPretrained(const std::string& path, BertForPreTraining* model) {
  Result<PretrainedModel> pretrained = LoadPretrained(path, /*with_weights=*/true);
  if (!pretrained.ok()) return Status::InvalidArgument("train.init_from: " + pretrained.status().message());
  std::vector<std::string> kept;
  Status copied = CopyPretrainedWeights(*pretrained, model, &kept);
  if (!copied.ok()) {
    return Status::InvalidArgument("train.init_from: " + copied.message() +
                                   " (set `model:` to the config it was trained with)");
  }
  if (!kept.empty()) {
    std::string names;
    for (const std::string& name : kept) names += (names.empty() ? "" : ", ") + name;
    LOG(WARNING) << "[worker] train.init_from: " << pretrained->path << " has no " << names
                 << "; those start from train.init_seed's weights";
  }
  LOG(INFO) << "[worker] initialised " << model->parameters().size() - kept.size() << " of "
            << model->parameters().size() << " tensors from " << pretrained->path;
  return Status::Ok();
}

}  // namespace bert
