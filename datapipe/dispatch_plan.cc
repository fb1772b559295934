#include "datapipe/dispatch_plan.h"

#include <algorithm>

#include <glog/logging.h>

namespace bert {

Result<DispatchGeometry> DispatchGeometry::Make(uint64_t global_batch_size, uint32_t world_size,
                                                uint64_t micro_batch_size) {
  if (global_batch_size < 1) return Status::InvalidArgument("train.global_batch_size: must be >= 1");
  if (world_size < 1) return Status::InvalidArgument("--world-size: must be >= 1");
  if (global_batch_size % world_size != 0) {
    return Status::InvalidArgument("train.global_batch_size: " + std::to_string(global_batch_size) +
                                   " is not a multiple of the world size " + std::to_string(world_size) +
                                   " (every rank takes an equal slice)");
  }
  DispatchGeometry g;
  g.global_batch_size = global_batch_size;
  g.world_size = world_size;
  g.micro_batch_size = micro_batch_size == 0 ? g.samples_per_rank() : micro_batch_size;
  if (g.samples_per_rank() % g.micro_batch_size != 0) {
    return Status::InvalidArgument("train.micro_batch_size: " + std::to_string(g.micro_batch_size) +
                                   " does not divide the " + std::to_string(g.samples_per_rank()) +
                                   " samples per rank (global_batch_size / world size)");
  }
  const uint64_t micro_batches = g.samples_per_rank() / g.micro_batch_size;
  if (micro_batches > 65536) {
    return Status::InvalidArgument("train.micro_batch_size: " + std::to_string(micro_batches) +
                                   " micro-batches per step is more than 65536");
  }
  g.micro_batches = static_cast<uint32_t>(micro_batches);
  return g;
}

SampleRange MicroBatchRange(const DispatchGeometry& geometry, const StepLocation& location, uint32_t rank,
                            uint32_t micro) {
  CHECK_LT(rank, geometry.world_size);
  CHECK_LT(micro, geometry.micro_batches);
  const SampleRange slice = RankSlice(location.step_in_epoch, geometry.global_batch_size, rank, geometry.world_size);
  SampleRange range;
  range.begin = slice.begin + micro * geometry.micro_batch_size;
  range.end = std::min(slice.end, range.begin + geometry.micro_batch_size);
  return range;
}

StepMapper::StepMapper(uint64_t global_batch_size, EpochSizeFn epoch_size)
    : global_batch_size_(global_batch_size), epoch_size_(std::move(epoch_size)) {
  CHECK_GE(global_batch_size_, 1u);
}

Result<StepLocation> StepMapper::Locate(uint64_t step) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Learn epoch sizes until the known epochs cover `step`. Each epoch adds
  // at least one step, so this ends.
  while (first_step_.back() <= step) {
    const uint64_t epoch = epoch_sizes_.size();
    Result<uint64_t> size = epoch_size_(epoch);
    if (!size.ok()) return size.status();
    if (*size < global_batch_size_) {
      return Status::FailedPrecondition("epoch " + std::to_string(epoch) + " has " + std::to_string(*size) +
                                        " samples, fewer than train.global_batch_size " +
                                        std::to_string(global_batch_size_) +
                                        ": use a smaller global batch or a larger corpus");
    }
    epoch_sizes_.push_back(*size);
    first_step_.push_back(first_step_.back() + *size / global_batch_size_);
  }
  // The last epoch whose first step is <= step.
  const auto it = std::upper_bound(first_step_.begin(), first_step_.end(), step);
  StepLocation location;
  location.epoch = static_cast<uint64_t>(it - first_step_.begin()) - 1;
  location.step_in_epoch = step - first_step_[location.epoch];
  return location;
}

std::string BatchKey::ToString() const {
  return "step " + std::to_string(step) + " rank " + std::to_string(rank) + " micro " + std::to_string(micro);
}

bool StepTracker::Ack(uint64_t step) {
  CHECK_GE(step, cursor_);
  auto it = std::lower_bound(pending_.begin(), pending_.end(), std::make_pair(step, uint64_t{0}));
  if (it == pending_.end() || it->first != step) it = pending_.insert(it, {step, 0});
  ++it->second;
  CHECK_LE(it->second, acks_per_step_) << "step " << step << " acknowledged more often than it has batches";
  const uint64_t before = cursor_;
  while (!pending_.empty() && pending_.front().first == cursor_ && pending_.front().second == acks_per_step_) {
    pending_.erase(pending_.begin());
    ++cursor_;
  }
  return cursor_ != before;
}

std::vector<uint64_t> StepMapper::KnownEpochSizes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return epoch_sizes_;
}

}  // namespace bert
