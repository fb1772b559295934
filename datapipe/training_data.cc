#include "datapipe/training_data.h"

namespace bert {

Result<std::unique_ptr<TrainingData>> TrainingData::Open(const RunConfig& config, int num_threads) {
  std::unique_ptr<TrainingData> data(new TrainingData());
  data->global_batch_size_ = static_cast<uint64_t>(config.train.global_batch_size);
  data->num_threads_ = num_threads;
  Result<DataSource> source = OpenDataSource(config, CorpusIndexOptions().max_resident_bytes);
  if (!source.ok()) return source.status();
  data->source_ = std::move(source).value();
  TrainingData* self = data.get();
  data->mapper_ = std::make_unique<StepMapper>(data->global_batch_size_, [self](uint64_t epoch) -> Result<uint64_t> {
    Result<const EpochPlan*> plan = self->Plan(epoch);
    if (!plan.ok()) return plan.status();
    return (*plan)->num_samples();
  });
  Result<StepLocation> first = data->mapper_->Locate(0);
  if (!first.ok()) return Status::InvalidArgument("train.global_batch_size: " + first.status().message());
  return data;
}

Result<const EpochPlan*> TrainingData::Plan(uint64_t epoch) {
  if (plan_ == nullptr || plan_->epoch() != epoch) {
    Result<std::unique_ptr<EpochPlan>> plan = EpochPlan::Build(source_.index, source_.corpus.get(), source_.vocab,
                                                               source_.options, epoch, num_threads_);
    if (!plan.ok()) return plan.status();
    plan_ = std::move(plan).value();
  }
  return plan_.get();
}

Status TrainingData::RankSamples(uint64_t step, uint32_t rank, uint32_t world, std::vector<TrainingSample>* samples) {
  if (world == 0 || rank >= world) {
    return Status::InvalidArgument("rank " + std::to_string(rank) + " is not below world size " + std::to_string(world));
  }
  Result<StepLocation> location = mapper_->Locate(step);
  if (!location.ok()) return location.status();
  Result<const EpochPlan*> plan = Plan(location->epoch);
  if (!plan.ok()) return plan.status();
  SampleRange slice = RankSlice(location->step_in_epoch, global_batch_size_, rank, world);
  samples->resize(slice.size());
  SampleGenerator generator(**plan);
  return generator.GenerateRange(slice.begin, slice.size(), samples->data());
}

}  // namespace bert
