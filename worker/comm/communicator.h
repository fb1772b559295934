// Communicator: the collectives data-parallel training needs, behind one
// interface with two backends (DESIGN.md):
//   - MPI (mpi_communicator.h): CPU buffers, MPI_Allreduce; also the
//     bootstrap (ranks, world size, broadcasting NCCL's unique id);
//   - NCCL (nccl_communicator.h): device buffers, all-reducing on the given
//     CUDA stream; compiled only where CUDA and NCCL are (BERT_WITH_NCCL).
// No LibTorch here: buffers are raw pointers (host memory for MPI, device
// memory for NCCL), so benchmarks and tests use them directly.
//
// Every rank must call the same collectives in the same order with the same
// counts. Errors name the backend, the call and this rank.
//
// Thread safety: collectives from one thread; Abort() from any thread (it is
// what a failure detector calls to unblock or end a rank stuck in a
// collective).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace bert {

enum class CommDataType { kFloat32, kFloat64, kInt64, kUint64 };
enum class CommReduceOp { kSum, kMin, kMax };

size_t CommDataTypeSize(CommDataType type);

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string backend() const = 0;  // "mpi", "nccl"

  // In place: data[i] = op over ranks of data[i], for count elements.
  virtual Status AllReduce(void* data, size_t count, CommDataType type, CommReduceOp op) = 0;

  // The same sum over a large buffer, as consecutive buckets of at most
  // bucket_bytes. MPI runs them one after the other (a blocking all-reduce
  // per bucket measured ~1.5x faster than overlapping non-blocking ones with
  // Open MPI 4.1 here); NCCL queues them all on its stream. Equal to
  // AllReduce(kSum) up to the backend's summation order, which is fixed for
  // a given world size (deterministic).
  virtual Status AllReduceBuckets(void* data, size_t count, CommDataType type, size_t bucket_bytes) = 0;

  // ZeRO-1's two halves, in place over a buffer cut into world_size
  // consecutive parts, part r being counts[r] elements long (the same counts
  // on every rank):
  // - ReduceScatter: afterwards part rank() holds the sum over ranks of that
  //   part; the other parts hold anything. Summation order is fixed for a
  //   given world size (deterministic). A backend may sum every part (an
  //   all-reduce is a valid reduce-scatter).
  // - AllGather: afterwards every rank holds every rank's own part.
  // Together they move the data of one all-reduce.
  virtual Status ReduceScatter(void* data, const std::vector<size_t>& counts, CommDataType type) = 0;
  virtual Status AllGather(void* data, const std::vector<size_t>& counts, CommDataType type) = 0;

  // data (bytes) of `root` copied to every rank.
  virtual Status Broadcast(void* data, size_t bytes, int root) = 0;

  virtual Status Barrier() = 0;

  // Ends this rank's part in the collectives; a collective in progress on
  // another thread fails or the process ends (MPI cannot cancel one: there
  // Abort() exits the process with `exit_code`). Never returns an error.
  virtual void Abort(int exit_code) noexcept = 0;
};

}  // namespace bert
