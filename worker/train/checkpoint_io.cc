#include "worker/train/checkpoint_io.h"

#include <c10/core/Event.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <cstring>
#include <memory>

#include <glog/logging.h>

#include "common/file_util.h"
#include "common/run_config.h"
#include "datapipe/random.h"
#include "worker/model/bert_config.h"

namespace bert {
namespace {

const std::vector<std::string> kSections = {"params", "exp_avg", "exp_avg_sq"};

// This rank's checkpoint ranges go through host memory whatever the device:
// the same code copies from CPU or CUDA tensors. On a GPU the staging buffer
// is pinned and the copies are asynchronous (stream-ordered before any later
// update of the tensors); the writer thread waits for them.
void CheckStateTensor(const torch::Tensor& t, const char* what) {
  CHECK(t.scalar_type() == torch::kFloat32 && t.is_contiguous() && t.dim() == 1)
      << "checkpoints hold contiguous flat fp32 buffers (" << what << ")";
}

// `count` floats of `section` from element `begin`, read into host memory
// and copied into `dest` (any device).
Status ReadRangeInto(const LoadedCheckpoint& checkpoint, const std::string& section, uint64_t begin, uint64_t end,
                     const torch::Tensor& dest) {
  CheckStateTensor(dest, section.c_str());
  CHECK_EQ(static_cast<uint64_t>(dest.numel()), end - begin);
  torch::Tensor host = torch::empty({dest.numel()}, torch::TensorOptions().dtype(torch::kFloat32));
  BERT_RETURN_IF_ERROR(ReadRange(checkpoint, section, begin, end, host.data_ptr<float>()));
  torch::NoGradGuard no_grad;
  dest.copy_(host);
  return Status::Ok();
}

// rank0-state.json plus "model_config": the HF config.json of the run's model
// (RUN_DIR/config.yaml, key `model`), which the coordinator copies into the
// manifest so that an export does not depend on that file still existing.
// Without it (a run dir without config.yaml) the manifest simply lacks it.
nlohmann::json WithModelConfig(const nlohmann::json& state, const std::string& run_dir) {
  if (!state.is_object() || state.contains("model_config")) return state;
  nlohmann::json out = state;
  Result<RunConfig> run = LoadRunConfig(run_dir + "/config.yaml");
  Result<BertConfig> model = run.ok() ? LoadBertConfig(run->model) : Result<BertConfig>(run.status());
  if (model.ok()) {
    out["model_config"] = model->ToJson();
  } else {
    LOG(WARNING) << "[ckpt] manifest without model_config: " << model.status().message();
  }
  return out;
}

}  // namespace

nlohmann::json ModelStateJson(const FlatParameters& params, const FlatOptimizer& optimizer,
                              const LrSchedule& schedule, uint64_t init_seed) {
  nlohmann::json layout = nlohmann::json::array();
  for (const ParameterSlot& slot : params.slots()) {
    layout.push_back({{"name", slot.spec.name}, {"dtype", "float32"}, {"shape", slot.spec.shape},
                      {"offset", slot.offset}});
  }
  const OptimizerOptions& o = optimizer.options();
  return {{"total_elements", params.numel()},
          {"sections", kSections},
          {"layout", layout},
          {"optimizer",
           {{"kind", OptimizerKindName(o.kind)}, {"step", optimizer.step()}, {"beta1", o.beta1}, {"beta2", o.beta2},
            {"epsilon", o.epsilon}, {"weight_decay", o.weight_decay}, {"bias_correction", o.bias_correction}}},
          {"scheduler",
           {{"decay", LrDecayName(schedule.decay)}, {"peak_lr", schedule.peak_lr},
            {"warmup_steps", schedule.warmup_steps}, {"total_steps", schedule.total_steps},
            {"power", schedule.power}, {"end_lr", schedule.end_lr}}},
          {"rng", {{"init_seed", init_seed}}}};
}

CheckpointSaver::CheckpointSaver(std::string run_dir, uint32_t rank, uint32_t world_size, DurableFn durable)
    : run_dir_(std::move(run_dir)), rank_(rank), world_size_(world_size), durable_(std::move(durable)) {}

CheckpointSaver::~CheckpointSaver() { Wait(); }

Status CheckpointSaver::Wait() {
  if (thread_.joinable()) thread_.join();
  Status result = result_;
  result_ = Status::Ok();
  return result;
}

Status CheckpointSaver::Save(uint64_t step, const FlatParameters& params, const FlatOptimizer& optimizer,
                             const DropoutRng& rng, const nlohmann::json& rank0_state) {
  BERT_RETURN_IF_ERROR(Wait());
  const ShardRange range = ShardRanges(static_cast<uint64_t>(params.numel()), world_size_)[rank_];
  // The optimizer holds state for its own range (ZeRO-1: this one; else all).
  const int64_t state_begin = optimizer.shard_begin();
  CHECK(state_begin <= static_cast<int64_t>(range.begin) && static_cast<int64_t>(range.end) <= optimizer.shard_end())
      << "rank " << rank_ << "'s optimizer state [" << state_begin << ", " << optimizer.shard_end()
      << ") does not cover its checkpoint range [" << range.begin << ", " << range.end << ")";
  const int64_t n = static_cast<int64_t>(range.size());
  // The copy is what the training thread pays (on a GPU: enqueues); the
  // write overlaps training.
  const torch::Device device = params.values().device();
  if (!host_.defined() || host_.numel() != 3 * n) {
    host_ = torch::empty({3 * n}, torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(device.is_cuda()));
  }
  const int64_t state_offset = static_cast<int64_t>(range.begin) - state_begin;
  const torch::Tensor sources[3] = {params.values().narrow(0, static_cast<int64_t>(range.begin), n),
                                    optimizer.exp_avg().narrow(0, state_offset, n),
                                    optimizer.exp_avg_sq().narrow(0, state_offset, n)};
  {
    torch::NoGradGuard no_grad;
    for (int s = 0; s < 3; ++s) {
      CheckStateTensor(sources[s].is_contiguous() ? sources[s] : sources[s].contiguous(), kSections[s].c_str());
      host_.narrow(0, s * n, n).copy_(sources[s], /*non_blocking=*/!device.is_cpu());
    }
  }
  std::shared_ptr<c10::Event> copied;
  if (!device.is_cpu()) {
    copied = std::make_shared<c10::Event>(device.type());
    copied->record(c10::impl::getDeviceGuardImpl(device.type())->getStream(device));
  }
  const nlohmann::json rank_state = {{"dropout_seed", rng.seed()}, {"dropout_counter", rng.counter()}};
  const std::string rank0_text = rank_ == 0 ? WithModelConfig(rank0_state, run_dir_).dump(1) : std::string();
  thread_ = std::thread([this, step, range, n, rank_state, rank0_text, copied] {
    if (copied) copied->synchronize();
    CheckpointStore store(run_dir_);
    Result<std::string> staging = store.Staging(step);
    if (!staging.ok()) {
      result_ = staging.status();
      return;
    }
    if (rank_ == 0) {
      Status written = WriteFileAtomic(*staging + "/rank0-state.json", rank0_text);
      if (!written.ok()) {
        result_ = written;
        return;
      }
    }
    ShardWriteRequest request;
    request.path = *staging + "/" + ShardFileName(rank_, world_size_);
    request.rank = rank_;
    request.world_size = world_size_;
    request.begin = range.begin;
    request.end = range.end;
    request.section_names = kSections;
    for (int s = 0; s < 3; ++s) request.section_data.push_back(host_.data_ptr<float>() + s * n);
    ShardInfo info;
    Status written = WriteShard(request, &info);
    if (!written.ok()) {
      result_ = written;
      return;
    }
    info.rank_state = rank_state;
    durable_(step, info);
  });
  return Status::Ok();
}

Status RestoreFromCheckpoint(const LoadedCheckpoint& checkpoint, FlatParameters* params, FlatOptimizer* optimizer,
                             DropoutRng* rng, uint32_t rank, uint32_t world_size) {
  const Manifest& m = checkpoint.manifest;
  const std::string where = checkpoint.dir + "/manifest.json";
  if (m.total_elements != static_cast<uint64_t>(params->numel())) {
    return Status::InvalidArgument(where + ": total_elements " + std::to_string(m.total_elements) +
                                   " but the model has " + std::to_string(params->numel()) +
                                   " parameters (another model config?)");
  }
  if (m.layout.size() != params->size()) {
    return Status::InvalidArgument(where + ": layout has " + std::to_string(m.layout.size()) +
                                   " tensors, the model " + std::to_string(params->size()));
  }
  for (size_t i = 0; i < m.layout.size(); ++i) {
    const ParameterSlot& slot = params->slot(i);
    const TensorLayout& t = m.layout[i];
    if (t.name != slot.spec.name || t.shape != slot.spec.shape || t.offset != static_cast<uint64_t>(slot.offset)) {
      return Status::InvalidArgument(where + ": layout[" + std::to_string(i) + "] is " + t.name +
                                     " but the model's tensor there is " + slot.spec.name);
    }
  }
  const std::string kind = m.optimizer.value("kind", "");
  if (kind != OptimizerKindName(optimizer->options().kind)) {
    return Status::InvalidArgument(where + ": optimizer.kind " + kind + " but the run uses " +
                                   OptimizerKindName(optimizer->options().kind));
  }
  // All the parameters; the optimizer state of the optimizer's own range
  // (ZeRO-1: this rank's part), from whichever shards hold it.
  BERT_RETURN_IF_ERROR(ReadRangeInto(checkpoint, kSections[0], 0, m.total_elements, params->values()));
  const uint64_t state_begin = static_cast<uint64_t>(optimizer->shard_begin());
  const uint64_t state_end = static_cast<uint64_t>(optimizer->shard_end());
  BERT_RETURN_IF_ERROR(ReadRangeInto(checkpoint, kSections[1], state_begin, state_end, optimizer->exp_avg()));
  BERT_RETURN_IF_ERROR(ReadRangeInto(checkpoint, kSections[2], state_begin, state_end, optimizer->exp_avg_sq()));
  optimizer->set_step(m.optimizer.value("step", int64_t{0}));
  if (m.world_size == world_size && rank < m.shards.size() && m.shards[rank].rank_state.contains("dropout_counter")) {
    const nlohmann::json& state = m.shards[rank].rank_state;
    rng->Restore(state.value("dropout_seed", uint64_t{0}), state.value("dropout_counter", uint64_t{0}));
  } else {
    // Another world size: the streams cannot continue; start fresh ones.
    rng->Restore(rnd::Hash(rng->seed(), /*stream=*/0x726573756d65 /* "resume" */, rank, m.step), 0);
  }
  return Status::Ok();
}

}  // namespace bert
