#include "worker/train/init_from.h"

#include <glog/logging.h>

#include <vector>

namespace bert {
namespace {

bool StartsWith(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

}  // namespace

Status CopyPretrainedWeights(const PretrainedModel& pretrained, BertForPreTraining* model,
                             std::vector<std::string>* kept) {
  const std::string& source = pretrained.path;
  FlatParameters& params = model->parameters();
  Result<std::vector<bool>> copied = params.CopyNamed(
      pretrained.tensors, source, [](const std::string& name) { return !StartsWith(name, "classifier."); },
      "[worker]");  // classifier.*: a fine-tuned model's head
  if (!copied.ok()) return copied.status();
  kept->clear();
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string& name = params.slot(i).spec.name;
    if ((*copied)[i]) continue;
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
