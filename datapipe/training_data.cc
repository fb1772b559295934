#include "datapipe/training_data.h"

namespace bert {

Result<std::unique_ptr<TrainingData>> TrainingData::Open(const TrainingDataOptions& options) {
  if (options.global_batch_size == 0) return Status::InvalidArgument("train.global_batch_size: must be >= 1");
  BERT_RETURN_IF_ERROR(options.sample.Validate());
  std::unique_ptr<TrainingData> data(new TrainingData());
  data->options_ = options;
  Result<std::unique_ptr<Corpus>> corpus = Corpus::Open(options.dbs);
  if (!corpus.ok()) return corpus.status();
  data->corpus_ = std::move(corpus).value();
  Result<std::shared_ptr<const Vocab>> vocab = data->corpus_->LoadVocab();
  if (!options.vocab_path.empty()) {
    vocab = Vocab::Load(options.vocab_path);
    if (!vocab.ok()) return vocab.status();
    BERT_RETURN_IF_ERROR(data->corpus_->CheckVocabulary((*vocab)->checksum(), (*vocab)->size(),
                                                        data->corpus_->parts().front()->meta().lower_case));
  }
  if (!vocab.ok()) return vocab.status();
  Result<MaskingVocab> masking = MaskingVocab::FromVocab(**vocab);
  if (!masking.ok()) return masking.status();
  data->vocab_ = std::make_shared<const MaskingVocab>(std::move(masking).value());
  Result<std::unique_ptr<CorpusIndex>> index = CorpusIndex::Load(*data->corpus_, CorpusIndexOptions());
  if (!index.ok()) return index.status();
  data->index_ = std::move(index).value();
  Result<const EpochPlan*> first = data->Plan(0);
  if (!first.ok()) return first.status();
  if ((*first)->num_samples() < options.global_batch_size) {
    return Status::InvalidArgument("train.global_batch_size: " + std::to_string(options.global_batch_size) +
                                   " is larger than an epoch of this corpus (" +
                                   std::to_string((*first)->num_samples()) + " samples)");
  }
  return data;
}

Result<const EpochPlan*> TrainingData::Plan(uint64_t epoch) {
  if (plan_ == nullptr || plan_->epoch() != epoch) {
    Result<std::unique_ptr<EpochPlan>> plan =
        EpochPlan::Build(index_, corpus_.get(), vocab_, options_.sample, epoch, options_.num_threads);
    if (!plan.ok()) return plan.status();
    plan_ = std::move(plan).value();
    epoch_samples_[epoch] = plan_->num_samples();
  }
  return plan_.get();
}

uint64_t TrainingData::steps_in_epoch(uint64_t epoch) {
  auto it = epoch_samples_.find(epoch);
  if (it == epoch_samples_.end()) {
    Result<const EpochPlan*> plan = Plan(epoch);
    if (!plan.ok()) return 0;
    it = epoch_samples_.find(epoch);
  }
  return it->second / options_.global_batch_size;
}

Result<StepLocation> TrainingData::Locate(uint64_t step) {
  uint64_t epoch = 0, first_step = 0;
  for (;;) {
    uint64_t steps = steps_in_epoch(epoch);
    if (steps == 0) return Status::FailedPrecondition("epoch " + std::to_string(epoch) + " holds no full batch");
    if (step < first_step + steps) break;
    first_step += steps;
    ++epoch;
  }
  return StepLocation{epoch, (step - first_step) * options_.global_batch_size};
}

Status TrainingData::RankSamples(uint64_t step, uint32_t rank, uint32_t world, std::vector<TrainingSample>* samples) {
  if (world == 0 || rank >= world) return Status::InvalidArgument("rank " + std::to_string(rank) + " of world " +
                                                                  std::to_string(world));
  Result<StepLocation> where = Locate(step);
  if (!where.ok()) return where.status();
  Result<const EpochPlan*> plan = Plan(where->epoch);
  if (!plan.ok()) return plan.status();
  // RankSlice numbers samples from batch 0; shift it to this batch's start.
  SampleRange slice = RankSlice(0, options_.global_batch_size, rank, world);
  samples->resize(slice.size());
  SampleGenerator generator(**plan);
  return generator.GenerateRange(where->first_sample + slice.begin, slice.size(), samples->data());
}

}  // namespace bert
