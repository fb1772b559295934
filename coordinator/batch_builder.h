// BatchBuilder: a pool of threads that builds encoded batches ahead of
// demand, so that dispatch only sends bytes.
//
// The server Request()s keys (step, rank, micro) a little ahead of what each
// worker's credits allow; a builder thread maps the step to its epoch
// (StepMapper), generates the micro-batch's samples (SampleGenerator),
// encodes them (batch codec) and checksums the bytes. The server Take()s a
// finished batch when the worker may receive it. Requests are served FIFO;
// results are kept until taken.
//
// Wake-up: ready_fd() is an eventfd that becomes readable whenever a batch
// finishes, so the server's zmq::poll can wait on the socket and the builders
// at once; DrainReady() resets it.
//
// Epoch layouts are built lazily by the first thread that needs one (the
// others needing it wait) and the two most recent are kept. Epoch sizes are
// taken from the ledger when known and recorded there when learned.
//
// Thread safety: Request/Take/PutBack/DrainReady are called from one thread
// (the server's); the pool threads are internal.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "datapipe/data_source.h"
#include "datapipe/dispatch_plan.h"
#include "coordinator/ledger.h"

namespace bert {

struct BuiltBatch {
  BatchKey key;
  uint64_t epoch = 0;
  SampleRange range;       // epoch-local samples
  std::string payload;     // EncodeBatch() bytes
  uint64_t checksum = 0;   // XXH3-64 of payload
  uint64_t num_tokens = 0; // unpadded tokens (for rates)
  Status status;           // non-OK: the batch could not be built (corpus error); fatal for the run
};

struct BuilderOptions {
  int num_threads = 2;           // batch-building threads
  uint32_t pad_to_multiple = 8;  // length bucketing of the batch codec
};

class BatchBuilder {
 public:
  // `data` and `ledger` (may be null: epoch sizes are then not persisted)
  // must outlive the builder.
  BatchBuilder(const DataSource& data, const DispatchGeometry& geometry, Ledger* ledger,
               const BuilderOptions& options);
  ~BatchBuilder();  // stops the pool; unfinished requests are dropped
  BatchBuilder(const BatchBuilder&) = delete;
  BatchBuilder& operator=(const BatchBuilder&) = delete;

  // Fails when the eventfd cannot be created.
  Status Start();
  void Request(const BatchKey& key);
  // The finished batch for `key`, if it is ready.
  std::optional<BuiltBatch> Take(const BatchKey& key);
  // Returns a batch that could not be sent yet.
  void PutBack(BuiltBatch batch);

  int ready_fd() const { return ready_fd_; }
  void DrainReady();
  size_t queued() const;
  // CPU-seconds spent building, summed over threads, and samples built.
  double build_seconds() const { return build_us_.load() * 1e-6; }
  uint64_t samples_built() const { return samples_built_.load(); }
  StepMapper& step_mapper() { return mapper_; }

 private:
  void ThreadMain();
  BuiltBatch Build(const BatchKey& key, std::shared_ptr<const EpochPlan>* plan,
                   std::unique_ptr<SampleGenerator>* generator);
  Result<std::shared_ptr<const EpochPlan>> Plan(uint64_t epoch);
  Result<uint64_t> EpochSize(uint64_t epoch);
  void NotifyReady();

  const DataSource& data_;
  const DispatchGeometry geometry_;
  Ledger* ledger_;
  const BuilderOptions options_;
  StepMapper mapper_;

  mutable std::mutex mutex_;  // guards queue_, done_, stop_
  std::condition_variable work_;
  std::deque<BatchKey> queue_;
  std::map<BatchKey, BuiltBatch> done_;
  bool stop_ = false;
  std::vector<std::thread> threads_;

  std::mutex plans_mutex_;  // guards plans_; held while a layout is built
  std::vector<std::shared_ptr<const EpochPlan>> plans_;  // most recent last

  int ready_fd_ = -1;
  std::atomic<uint64_t> build_us_{0};
  std::atomic<uint64_t> samples_built_{0};
};

}  // namespace bert
