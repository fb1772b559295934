#include "coordinator/batch_builder.h"

#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <glog/logging.h>
#include <xxhash.h>

#include "datapipe/batch_codec.h"

namespace bert {
namespace {

constexpr size_t kPlansKept = 2;  // the current epoch and the next

uint64_t ThreadCpuMicros() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

}  // namespace

BatchBuilder::BatchBuilder(const DataSource& data, const DispatchGeometry& geometry, Ledger* ledger,
                           const BuilderOptions& options)
    : data_(data),
      geometry_(geometry),
      ledger_(ledger),
      options_(options),
      mapper_(geometry.global_batch_size, [this](uint64_t epoch) { return EpochSize(epoch); }) {}

BatchBuilder::~BatchBuilder() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  work_.notify_all();
  for (std::thread& thread : threads_) thread.join();
  if (ready_fd_ >= 0) ::close(ready_fd_);
}

Status BatchBuilder::Start() {
  ready_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (ready_fd_ < 0) return Status::IoError(std::string("batch builder: eventfd: ") + std::strerror(errno));
  for (int i = 0; i < std::max(1, options_.num_threads); ++i) threads_.emplace_back([this] { ThreadMain(); });
  return Status::Ok();
}

void BatchBuilder::Request(const BatchKey& key) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(key);
  }
  work_.notify_one();
}

std::optional<BuiltBatch> BatchBuilder::Take(const BatchKey& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = done_.find(key);
  if (it == done_.end()) return std::nullopt;
  BuiltBatch batch = std::move(it->second);
  done_.erase(it);
  return batch;
}

void BatchBuilder::PutBack(BuiltBatch batch) {
  std::lock_guard<std::mutex> lock(mutex_);
  const BatchKey key = batch.key;
  done_.emplace(key, std::move(batch));
}

void BatchBuilder::DrainReady() {
  uint64_t count;
  while (::read(ready_fd_, &count, sizeof(count)) == sizeof(count)) {
  }
}

size_t BatchBuilder::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

void BatchBuilder::NotifyReady() {
  const uint64_t one = 1;
  // Only fails when the counter would overflow, and then it is readable anyway.
  [[maybe_unused]] ssize_t n = ::write(ready_fd_, &one, sizeof(one));
}

void BatchBuilder::ThreadMain() {
  // Per thread: the generator of the epoch last used (SampleGenerator is
  // not thread-safe), with the plan it reads kept alive.
  std::shared_ptr<const EpochPlan> plan;
  std::unique_ptr<SampleGenerator> generator;
  while (true) {
    BatchKey key;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      key = queue_.front();
      queue_.pop_front();
    }
    const uint64_t start_us = ThreadCpuMicros();
    BuiltBatch batch = Build(key, &plan, &generator);
    build_us_ += ThreadCpuMicros() - start_us;
    samples_built_ += batch.range.size();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.emplace(key, std::move(batch));
    }
    NotifyReady();
  }
}

BuiltBatch BatchBuilder::Build(const BatchKey& key, std::shared_ptr<const EpochPlan>* plan,
                               std::unique_ptr<SampleGenerator>* generator) {
  BuiltBatch built;
  built.key = key;
  Result<StepLocation> location = mapper_.Locate(key.step);
  if (!location.ok()) {
    built.status = location.status();
    return built;
  }
  built.epoch = location->epoch;
  built.range = MicroBatchRange(geometry_, *location, key.rank, key.micro);
  if (*plan == nullptr || (*plan)->epoch() != location->epoch) {
    Result<std::shared_ptr<const EpochPlan>> next = Plan(location->epoch);
    if (!next.ok()) {
      built.status = next.status();
      return built;
    }
    *plan = *next;
    *generator = std::make_unique<SampleGenerator>(**plan);
  }
  Batch batch;
  batch.epoch = location->epoch;
  batch.first_index = built.range.begin;
  batch.vocab_size = data_.vocab->vocab_size;
  batch.pad_id = data_.vocab->pad_id;
  batch.cls_id = data_.vocab->cls_id;
  batch.sep_id = data_.vocab->sep_id;
  batch.samples.resize(built.range.size());
  built.status = (*generator)->GenerateRange(built.range.begin, built.range.size(), batch.samples.data());
  if (!built.status.ok()) return built;
  for (const TrainingSample& sample : batch.samples) built.num_tokens += sample.input_ids.size();
  BatchEncodeOptions encode;
  encode.pad_to_multiple = options_.pad_to_multiple;
  built.status = EncodeBatch(batch, encode, &built.payload);
  if (!built.status.ok()) return built;
  built.checksum = XXH3_64bits(built.payload.data(), built.payload.size());
  return built;
}

Result<std::shared_ptr<const EpochPlan>> BatchBuilder::Plan(uint64_t epoch) {
  std::lock_guard<std::mutex> lock(plans_mutex_);
  for (const auto& plan : plans_) {
    if (plan->epoch() == epoch) return plan;
  }
  const auto start = std::chrono::steady_clock::now();
  Result<std::unique_ptr<EpochPlan>> built =
      EpochPlan::Build(data_.index, data_.corpus.get(), data_.vocab, data_.options, epoch, options_.num_threads);
  if (!built.ok()) return built.status();
  std::shared_ptr<const EpochPlan> plan = std::move(built).value();
  LOG(INFO) << "[coord] epoch " << epoch << ": " << plan->num_samples() << " samples, layout built in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << " s";
  plans_.push_back(plan);
  if (plans_.size() > kPlansKept) plans_.erase(plans_.begin());
  return plan;
}

Result<uint64_t> BatchBuilder::EpochSize(uint64_t epoch) {
  if (ledger_ != nullptr) {
    Result<std::optional<uint64_t>> known = ledger_->EpochSize(epoch);
    if (!known.ok()) return known.status();
    if (known->has_value()) return **known;
  }
  Result<std::shared_ptr<const EpochPlan>> plan = Plan(epoch);
  if (!plan.ok()) return plan.status();
  const uint64_t size = (*plan)->num_samples();
  if (ledger_ != nullptr) BERT_RETURN_IF_ERROR(ledger_->PutEpochSize(epoch, size));
  return size;
}

}  // namespace bert
