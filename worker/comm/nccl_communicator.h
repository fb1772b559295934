// The NCCL backend of Communicator (communicator.h): device buffers,
// collectives enqueued on one CUDA stream. Built only where CUDA and NCCL are
// (library bert_nccl, compile definition BERT_WITH_NCCL); this header needs
// neither CUDA's nor NCCL's headers.
//
//   MpiEnvironment mpi(&argc, &argv);
//   Result<std::unique_ptr<Communicator>> bootstrap = MpiCommunicator::Create();
//   Result<std::unique_ptr<NcclCommunicator>> nccl = NcclCommunicator::Create(
//       bootstrap->get(), local_rank, at::cuda::getCurrentCUDAStream().stream());
//
// Rank and world size are the bootstrap's: rank 0 creates NCCL's unique id
// and broadcasts it over the bootstrap, and every rank joins with
// ncclCommInitRank on its CUDA device. The bootstrap is used only inside
// Create() and is not kept.
//
// Ordering: AllReduce, AllReduceBuckets and Broadcast return once the work is
// enqueued on the stream (stream order, as NCCL defines it): later kernels on
// that stream see the result; the host sees it after Synchronize() or
// Barrier(). Errors of a collective that failed on the device (a peer died, a
// network error) come back from the next call, which checks
// ncclCommGetAsyncError.
//
// Threads: collectives from one thread; Abort() from any thread.
// Abort(exit_code) = ncclCommAbort: pending and blocked collectives fail
// (every later call returns an error) and the process goes on; UNLIKE the
// MPI backend, it does NOT exit, and exit_code is unused: the caller decides
// whether to exit.
//
// The communicator is non-blocking (ncclConfig_t::blocking = 0) so that no
// call sits inside NCCL where Abort() could not reach it: every call polls
// the communicator's state, and whether Abort() was called, instead.
#pragma once

#include <functional>
#include <memory>
#include <mutex>

#include "worker/comm/communicator.h"

struct ncclComm;  // NCCL's handle (ncclComm_t is ncclComm*), from nccl.h

namespace bert {

class NcclCommunicator : public Communicator {
 public:
  // Collective over `bootstrap` (every rank calls it). cuda_device: this
  // rank's CUDA device (one device per rank; NCCL rejects two ranks on one
  // device). cuda_stream: the cudaStream_t collectives run on (nullptr: the
  // legacy default stream); it must outlive this object. Fails with
  // Status::Internal on every rank when any rank cannot set up its device.
  static Result<std::unique_ptr<NcclCommunicator>> Create(Communicator* bootstrap, int cuda_device,
                                                          void* cuda_stream);
  // Finalizes (flushes this rank's pending work) and destroys the
  // communicator; aborts it instead if it failed, was aborted, or finalizing
  // takes longer than kFinalizeTimeoutMs (a dead peer must not hang exit).
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string backend() const override { return "nccl"; }
  int cuda_device() const { return cuda_device_; }
  void* cuda_stream() const { return cuda_stream_; }

  // data: device memory on cuda_device().
  Status AllReduce(void* data, size_t count, CommDataType type, CommReduceOp op) override;
  // Buckets go in groups (ncclGroupStart/End) of at most kMaxOpsPerGroup:
  // NCCL fuses a group into few kernel launches. NCCL picks its algorithm per
  // size, so the result may differ in the last bits from one AllReduce of the
  // whole buffer; for a fixed world size and bucket size it is the same
  // every run.
  Status AllReduceBuckets(void* data, size_t count, CommDataType type, size_t bucket_bytes) override;
  // One ncclReduce per part (root: the part's rank) and one ncclBroadcast
  // per part, in groups of at most kMaxOpsPerGroup: ncclReduceScatter and
  // ncclAllGather need equal parts, ShardRanges' may differ by one.
  Status ReduceScatter(void* data, const std::vector<size_t>& counts, CommDataType type) override;
  Status AllGather(void* data, const std::vector<size_t>& counts, CommDataType type) override;
  Status Broadcast(void* data, size_t bytes, int root) override;
  // An all-reduce of one element, then Synchronize(): on return every
  // collective this rank enqueued before it has finished.
  Status Barrier() override;
  // Waits for the stream, failing early if the communicator reports an
  // asynchronous error or Abort() is called.
  Status Synchronize();
  // ncclCommAbort; does not exit the process (see above). Idempotent.
  void Abort(int exit_code) noexcept override;

  static constexpr size_t kMaxOpsPerGroup = 64;
  static constexpr int kFinalizeTimeoutMs = 30000;

 private:
  NcclCommunicator() = default;
  // Runs `enqueue` (an NCCL call, or a group of them) on comm_ under the
  // lock, then WaitUntilIssued. Fails without calling it after Abort() or
  // once the communicator reports an asynchronous error.
  Status Issue(const char* call, const std::function<int(ncclComm*)>& enqueue);
  // ncclInProgress from a non-blocking call: polls ncclCommGetAsyncError
  // until the call completes, fails, or Abort() is called.
  Status WaitUntilIssued(int rc, const char* call);
  Status CheckCuda(int rc, const char* call) const;
  Status AbortedError(const char* call) const;

  // Guards comm_ against Abort() from another thread: held for single NCCL
  // calls, never while waiting (except for ncclCommFinalize in the destructor).
  mutable std::mutex mutex_;
  ncclComm* comm_ = nullptr;          // null after Abort(): every call then fails
  void* cuda_stream_ = nullptr;       // cudaStream_t, not owned
  void* barrier_word_ = nullptr;      // one float of device memory for Barrier(), owned
  int cuda_device_ = 0;
  int rank_ = 0, world_size_ = 1;
};

}  // namespace bert
