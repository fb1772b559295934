#include "worker/comm/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

// Non-blocking communicators (ncclConfig_t::blocking) and ncclGetLastError
// came with NCCL 2.14.
#if !defined(NCCL_VERSION_CODE) || NCCL_VERSION_CODE < NCCL_VERSION(2, 14, 0)
#error "nccl_communicator.cc needs NCCL 2.14 or newer"
#endif

namespace bert {
namespace {

ncclDataType_t ToNccl(CommDataType type) {
  switch (type) {
    case CommDataType::kFloat32: return ncclFloat32;
    case CommDataType::kFloat64: return ncclFloat64;
    case CommDataType::kInt64: return ncclInt64;
    case CommDataType::kUint64: return ncclUint64;
  }
  return ncclUint8;
}

ncclRedOp_t ToNccl(CommReduceOp op) {
  switch (op) {
    case CommReduceOp::kSum: return ncclSum;
    case CommReduceOp::kMin: return ncclMin;
    case CommReduceOp::kMax: return ncclMax;
  }
  return ncclSum;
}

// The same as CommDataTypeSize, which lives in the MPI backend's file
// (bert_worker): repeated so that bert_nccl needs nothing from bert_worker
// at link time.
size_t ElementBytes(CommDataType type) { return type == CommDataType::kFloat32 ? 4 : 8; }

cudaStream_t AsStream(void* stream) { return static_cast<cudaStream_t>(stream); }

std::string RankSuffix(int rank) { return " failed on rank " + std::to_string(rank) + ": "; }

// "nccl: <call> failed on rank <r>: <NCCL's text> (<NCCL's last error>)".
// comm may be null; when not, the caller holds the lock that guards it.
Status NcclError(ncclResult_t rc, const char* call, int rank, ncclComm_t comm) {
  std::string message = std::string("nccl: ") + call + RankSuffix(rank) + ncclGetErrorString(rc);
  const char* detail = ncclGetLastError(comm);
  if (detail != nullptr && detail[0] != '\0') message += std::string(" (") + detail + ")";
  return Status::Internal(message);
}

// Polls a non-blocking communicator until its state leaves ncclInProgress;
// ncclInProgress if that takes longer than timeout_ms.
ncclResult_t WaitForState(ncclComm_t comm, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    ncclResult_t state = ncclSuccess;
    if (ncclCommGetAsyncError(comm, &state) != ncclSuccess) return ncclInternalError;
    if (state != ncclInProgress || std::chrono::steady_clock::now() > deadline) return state;
    std::this_thread::yield();
  }
}

}  // namespace

Result<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(Communicator* bootstrap, int cuda_device,
                                                                    void* cuda_stream) {
  if (bootstrap == nullptr) return Status::InvalidArgument("nccl: Create needs a bootstrap communicator");
  std::unique_ptr<NcclCommunicator> comm(new NcclCommunicator());
  comm->rank_ = bootstrap->rank();
  comm->world_size_ = bootstrap->world_size();
  comm->cuda_device_ = cuda_device;
  comm->cuda_stream_ = cuda_stream;

  // Local setup first; then every rank learns whether all succeeded, so that
  // a rank without its device fails the job at once instead of leaving the
  // others waiting in ncclCommInitRank.
  const std::string set_device = "cudaSetDevice(" + std::to_string(cuda_device) + ")";
  Status local = comm->CheckCuda(cudaSetDevice(cuda_device), set_device.c_str());
  if (local.ok()) local = comm->CheckCuda(cudaMalloc(&comm->barrier_word_, sizeof(float)), "cudaMalloc");
  if (local.ok()) local = comm->CheckCuda(cudaMemset(comm->barrier_word_, 0, sizeof(float)), "cudaMemset");
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (local.ok() && comm->rank_ == 0) {
    const ncclResult_t rc = ncclGetUniqueId(&id);
    if (rc != ncclSuccess) local = NcclError(rc, "ncclGetUniqueId", comm->rank_, nullptr);
  }
  int64_t all_ok = local.ok() ? 1 : 0;
  BERT_RETURN_IF_ERROR(bootstrap->AllReduce(&all_ok, 1, CommDataType::kInt64, CommReduceOp::kMin));
  if (!local.ok()) return local;
  if (all_ok == 0) {
    return Status::Internal("nccl: setup failed on another rank (see its log); rank " +
                            std::to_string(comm->rank_) + " itself was ready");
  }
  BERT_RETURN_IF_ERROR(bootstrap->Broadcast(&id, sizeof(id), /*root=*/0));

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // see the header: keeps every call within Abort()'s reach
  ncclComm_t handle = nullptr;
  const ncclResult_t rc = ncclCommInitRankConfig(&handle, comm->world_size_, id, comm->rank_, &config);
  {
    std::lock_guard<std::mutex> lock(comm->mutex_);
    comm->comm_ = handle;  // even when failed: the destructor then aborts it
  }
  if (handle == nullptr) return NcclError(rc, "ncclCommInitRankConfig", comm->rank_, nullptr);
  BERT_RETURN_IF_ERROR(comm->WaitUntilIssued(rc, "ncclCommInitRankConfig"));
  return comm;
}

NcclCommunicator::~NcclCommunicator() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (comm_ != nullptr) {
      ncclResult_t state = ncclSuccess;
      if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) state = ncclInternalError;
      if (state == ncclSuccess) {
        const ncclResult_t rc = ncclCommFinalize(comm_);
        state = rc == ncclSuccess || rc == ncclInProgress ? WaitForState(comm_, kFinalizeTimeoutMs) : rc;
      }
      if (state == ncclSuccess) {
        ncclCommDestroy(comm_);
      } else {
        ncclCommAbort(comm_);
      }
      comm_ = nullptr;
    }
  }
  if (barrier_word_ != nullptr) {
    int saved_device = 0;
    const bool have_saved = cudaGetDevice(&saved_device) == cudaSuccess;
    cudaSetDevice(cuda_device_);
    cudaFree(barrier_word_);
    if (have_saved) cudaSetDevice(saved_device);
  }
}

Status NcclCommunicator::AllReduce(void* data, size_t count, CommDataType type, CommReduceOp op) {
  if (count == 0) return Issue("ncclAllReduce", [](ncclComm*) { return int{ncclSuccess}; });
  return Issue("ncclAllReduce", [&](ncclComm* comm) {
    return int{ncclAllReduce(data, data, count, ToNccl(type), ToNccl(op), comm, AsStream(cuda_stream_))};
  });
}

Status NcclCommunicator::AllReduceBuckets(void* data, size_t count, CommDataType type, size_t bucket_bytes) {
  const size_t element = ElementBytes(type);
  // At most the whole buffer, so that a group's span cannot overflow.
  const size_t bucket = std::clamp<size_t>(bucket_bytes / element, 1, std::max<size_t>(count, 1));
  char* bytes = static_cast<char*>(data);
  for (size_t group_first = 0; group_first < count; group_first += bucket * kMaxOpsPerGroup) {
    const size_t group_end = std::min(count, group_first + bucket * kMaxOpsPerGroup);
    BERT_RETURN_IF_ERROR(Issue("ncclGroupEnd(ncclAllReduce buckets)", [&](ncclComm* comm) {
      ncclResult_t rc = ncclGroupStart();
      if (rc != ncclSuccess) return int{rc};
      for (size_t first = group_first; first < group_end && rc == ncclSuccess; first += bucket) {
        const size_t n = std::min(bucket, group_end - first);
        rc = ncclAllReduce(bytes + first * element, bytes + first * element, n, ToNccl(type), ncclSum, comm,
                           AsStream(cuda_stream_));
      }
      // Always close the group, even after a failed call: an open group would
      // swallow the next collective.
      const ncclResult_t end = ncclGroupEnd();
      return int{rc != ncclSuccess ? rc : end};
    }));
  }
  return Status::Ok();
}

namespace {

// Issues op(part r, offset, count) for every part r, in groups of at most
// max_ops; each group is one Issue().
// Fails naming `name` and the rank unless there is one part per rank.
template <typename IssueFn, typename OpFn>
Status ForEachPartGrouped(const std::vector<size_t>& counts, int world_size, int rank, const char* name,
                          size_t max_ops, const char* call, IssueFn issue, OpFn op) {
  if (counts.size() != static_cast<size_t>(world_size)) {
    return Status::InvalidArgument(std::string("nccl: ") + name + " on rank " + std::to_string(rank) + ": " +
                                   std::to_string(counts.size()) + " parts for " + std::to_string(world_size) +
                                   " ranks");
  }
  std::vector<size_t> offsets(counts.size());
  for (size_t r = 1; r < counts.size(); ++r) offsets[r] = offsets[r - 1] + counts[r - 1];
  for (size_t first = 0; first < counts.size(); first += max_ops) {
    const size_t last = std::min(counts.size(), first + max_ops);
    BERT_RETURN_IF_ERROR(issue(call, [&](ncclComm* comm) {
      ncclResult_t rc = ncclGroupStart();
      if (rc != ncclSuccess) return int{rc};
      for (size_t r = first; r < last && rc == ncclSuccess; ++r) rc = op(comm, static_cast<int>(r), offsets[r], counts[r]);
      const ncclResult_t end = ncclGroupEnd();  // always closed, as in AllReduceBuckets
      return int{rc != ncclSuccess ? rc : end};
    }));
  }
  return Status::Ok();
}

}  // namespace

Status NcclCommunicator::ReduceScatter(void* data, const std::vector<size_t>& counts, CommDataType type) {
  const size_t element = ElementBytes(type);
  char* bytes = static_cast<char*>(data);
  return ForEachPartGrouped(
      counts, world_size_, rank_, "ReduceScatter", kMaxOpsPerGroup, "ncclGroupEnd(ncclReduce parts)",
      [this](const char* call, const std::function<int(ncclComm*)>& enqueue) { return Issue(call, enqueue); },
      [&](ncclComm* comm, int root, size_t offset, size_t count) {
        return ncclReduce(bytes + offset * element, bytes + offset * element, count, ToNccl(type), ncclSum, root,
                          comm, AsStream(cuda_stream_));
      });
}

Status NcclCommunicator::AllGather(void* data, const std::vector<size_t>& counts, CommDataType type) {
  const size_t element = ElementBytes(type);
  char* bytes = static_cast<char*>(data);
  return ForEachPartGrouped(
      counts, world_size_, rank_, "AllGather", kMaxOpsPerGroup, "ncclGroupEnd(ncclBroadcast parts)",
      [this](const char* call, const std::function<int(ncclComm*)>& enqueue) { return Issue(call, enqueue); },
      [&](ncclComm* comm, int root, size_t offset, size_t count) {
        return ncclBroadcast(bytes + offset * element, bytes + offset * element, count * element, ncclUint8, root,
                             comm, AsStream(cuda_stream_));
      });
}

Status NcclCommunicator::Broadcast(void* data, size_t bytes, int root) {
  if (root < 0 || root >= world_size_) {
    return Status::InvalidArgument("nccl: ncclBroadcast root " + std::to_string(root) + " on rank " +
                                   std::to_string(rank_) + " is not in [0, " + std::to_string(world_size_) + ")");
  }
  return Issue("ncclBroadcast", [&](ncclComm* comm) {
    return int{ncclBroadcast(data, data, bytes, ncclUint8, root, comm, AsStream(cuda_stream_))};
  });
}

Status NcclCommunicator::Barrier() {
  BERT_RETURN_IF_ERROR(AllReduce(barrier_word_, 1, CommDataType::kFloat32, CommReduceOp::kSum));
  return Synchronize();
}

Status NcclCommunicator::Synchronize() {
  for (;;) {
    const cudaError_t query = cudaStreamQuery(AsStream(cuda_stream_));
    // The communicator's state first: a collective whose peer died never
    // completes, and only NCCL's async error says so.
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (comm_ == nullptr) return AbortedError("cudaStreamQuery");
      ncclResult_t state = ncclSuccess;
      const ncclResult_t rc = ncclCommGetAsyncError(comm_, &state);
      if (rc != ncclSuccess) return NcclError(rc, "ncclCommGetAsyncError", rank_, comm_);
      if (state != ncclSuccess && state != ncclInProgress) return NcclError(state, "a collective", rank_, comm_);
    }
    if (query == cudaSuccess) return Status::Ok();
    if (query != cudaErrorNotReady) return CheckCuda(query, "cudaStreamQuery");
    std::this_thread::yield();
  }
}

void NcclCommunicator::Abort(int /*exit_code: unused, see the header*/) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  if (comm_ != nullptr) ncclCommAbort(comm_);
  comm_ = nullptr;
}

Status NcclCommunicator::Issue(const char* call, const std::function<int(ncclComm*)>& enqueue) {
  int rc = ncclSuccess;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (comm_ == nullptr) return AbortedError(call);
    // A failed communicator must not take more work: report why it failed.
    ncclResult_t state = ncclSuccess;
    const ncclResult_t query = ncclCommGetAsyncError(comm_, &state);
    if (query != ncclSuccess) return NcclError(query, "ncclCommGetAsyncError", rank_, comm_);
    if (state != ncclSuccess && state != ncclInProgress) return NcclError(state, call, rank_, comm_);
    if (state == ncclInProgress) rc = ncclInProgress;  // an earlier call still issuing: wait for it first
  }
  if (rc == ncclInProgress) BERT_RETURN_IF_ERROR(WaitUntilIssued(rc, call));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (comm_ == nullptr) return AbortedError(call);
    rc = enqueue(comm_);
  }
  return WaitUntilIssued(rc, call);
}

Status NcclCommunicator::WaitUntilIssued(int rc, const char* call) {
  if (rc == ncclSuccess) return Status::Ok();
  if (rc != ncclInProgress) {
    std::lock_guard<std::mutex> lock(mutex_);
    return NcclError(static_cast<ncclResult_t>(rc), call, rank_, comm_);
  }
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (comm_ == nullptr) return AbortedError(call);
      ncclResult_t state = ncclSuccess;
      const ncclResult_t query = ncclCommGetAsyncError(comm_, &state);
      if (query != ncclSuccess) return NcclError(query, "ncclCommGetAsyncError", rank_, comm_);
      if (state == ncclSuccess) return Status::Ok();
      if (state != ncclInProgress) return NcclError(state, call, rank_, comm_);
    }
    std::this_thread::yield();
  }
}

Status NcclCommunicator::CheckCuda(int rc, const char* call) const {
  if (rc == cudaSuccess) return Status::Ok();
  const cudaError_t error = static_cast<cudaError_t>(rc);
  return Status::Internal(std::string("nccl: ") + call + RankSuffix(rank_) + cudaGetErrorName(error) + ": " +
                          cudaGetErrorString(error));
}

Status NcclCommunicator::AbortedError(const char* call) const {
  return Status::Internal(std::string("nccl: ") + call + RankSuffix(rank_) + "the communicator was aborted");
}

}  // namespace bert
