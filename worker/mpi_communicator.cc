#include "worker/mpi_communicator.h"

// The C API only: Open MPI's deprecated C++ bindings need libmpi_cxx.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include <glog/logging.h>

namespace bert {
namespace {

MPI_Datatype ToMpi(CommDataType type) {
  switch (type) {
    case CommDataType::kFloat32: return MPI_FLOAT;
    case CommDataType::kFloat64: return MPI_DOUBLE;
    case CommDataType::kInt64: return MPI_INT64_T;
    case CommDataType::kUint64: return MPI_UINT64_T;
  }
  return MPI_BYTE;
}

MPI_Op ToMpi(CommReduceOp op) {
  switch (op) {
    case CommReduceOp::kSum: return MPI_SUM;
    case CommReduceOp::kMin: return MPI_MIN;
    case CommReduceOp::kMax: return MPI_MAX;
  }
  return MPI_SUM;
}

MPI_Comm AsComm(void* comm) { return reinterpret_cast<MPI_Comm>(comm); }

// MPI counts are int: large buffers go in pieces of at most this many elements.
constexpr size_t kMaxMpiCount = size_t{1} << 30;

}  // namespace

size_t CommDataTypeSize(CommDataType type) {
  switch (type) {
    case CommDataType::kFloat32: return 4;
    case CommDataType::kFloat64:
    case CommDataType::kInt64:
    case CommDataType::kUint64: return 8;
  }
  return 1;
}

MpiEnvironment::MpiEnvironment(int* argc, char*** argv) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (initialised) return;
  int provided = 0;
  // FUNNELED: only the training thread calls MPI (the coordinator client's
  // I/O thread never does).
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  initialised_here_ = true;
}

MpiEnvironment::~MpiEnvironment() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (initialised_here_ && !finalised) MPI_Finalize();
}

bool MpiEnvironment::LaunchedByMpi() {
  // Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; PMIx launchers (srun
  // --mpi=pmix) set PMIX_RANK.
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr ||
         std::getenv("PMI_RANK") != nullptr;
}

Result<std::unique_ptr<Communicator>> MpiCommunicator::Create() {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) return Status::FailedPrecondition("mpi: MPI is not initialised (construct MpiEnvironment first)");
  std::unique_ptr<MpiCommunicator> comm(new MpiCommunicator());
  MPI_Comm dup = MPI_COMM_NULL;
  if (MPI_Comm_dup(MPI_COMM_WORLD, &dup) != MPI_SUCCESS) return Status::Internal("mpi: MPI_Comm_dup failed");
  // Errors come back as codes (the default handler would abort the job
  // without saying which call failed).
  MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
  comm->comm_ = reinterpret_cast<void*>(dup);
  MPI_Comm_rank(dup, &comm->rank_);
  MPI_Comm_size(dup, &comm->world_size_);
  return std::unique_ptr<Communicator>(std::move(comm));
}

MpiCommunicator::~MpiCommunicator() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (comm_ != nullptr && !finalised) {
    MPI_Comm comm = AsComm(comm_);
    MPI_Comm_free(&comm);
  }
}

Status MpiCommunicator::Check(int rc, const char* call) const {
  if (rc == MPI_SUCCESS) return Status::Ok();
  char text[MPI_MAX_ERROR_STRING] = {0};
  int length = 0;
  MPI_Error_string(rc, text, &length);
  return Status::Internal(std::string("mpi: ") + call + " failed on rank " + std::to_string(rank_) + ": " +
                          std::string(text, static_cast<size_t>(length)));
}

Status MpiCommunicator::AllReduce(void* data, size_t count, CommDataType type, CommReduceOp op) {
  if (world_size_ == 1) return Status::Ok();
  char* bytes = static_cast<char*>(data);
  const size_t element = CommDataTypeSize(type);
  for (size_t done = 0; done < count;) {
    const size_t n = std::min(kMaxMpiCount, count - done);
    BERT_RETURN_IF_ERROR(Check(MPI_Allreduce(MPI_IN_PLACE, bytes + done * element, static_cast<int>(n), ToMpi(type),
                                             ToMpi(op), AsComm(comm_)),
                               "MPI_Allreduce"));
    done += n;
  }
  return Status::Ok();
}

// One blocking MPI_Allreduce per bucket, not MPI_Iallreduce for all of them
// then MPI_Waitall: Open MPI 4.1 serves MPI_Iallreduce from libnbc, whose
// algorithms are slower than the tuned MPI_Allreduce's and progress only
// inside MPI calls, so nothing overlaps on the host. Measured with
// bench/worker/allreduce_bench (2 ranks, 25 MiB buckets, 64-400 MiB fp32):
// ~0.8-1.0 GB/s busbw with MPI_Iallreduce, ~2.8 GB/s with this loop, ~1.9
// GB/s for one MPI_Allreduce of the whole buffer. Sums stay deterministic:
// Open MPI picks the algorithm by message size and world size only.
Status MpiCommunicator::AllReduceBuckets(void* data, size_t count, CommDataType type, size_t bucket_bytes) {
  if (world_size_ == 1 || count == 0) return Status::Ok();
  const size_t element = CommDataTypeSize(type);
  const size_t bucket = std::clamp<size_t>(bucket_bytes / element, 1, kMaxMpiCount);
  char* bytes = static_cast<char*>(data);
  for (size_t first = 0; first < count; first += bucket) {
    const size_t n = std::min(bucket, count - first);
    BERT_RETURN_IF_ERROR(Check(MPI_Allreduce(MPI_IN_PLACE, bytes + first * element, static_cast<int>(n),
                                             ToMpi(type), MPI_SUM, AsComm(comm_)),
                               "MPI_Allreduce (bucket)"));
  }
  return Status::Ok();
}

namespace {

// counts has one entry per rank; their offsets, or an error naming the call.
Status CheckParts(const std::vector<size_t>& counts, int world_size, int rank, const char* call) {
  if (counts.size() != static_cast<size_t>(world_size)) {
    return Status::InvalidArgument(std::string("mpi: ") + call + " on rank " + std::to_string(rank) + ": " +
                                   std::to_string(counts.size()) + " parts for " + std::to_string(world_size) +
                                   " ranks");
  }
  return Status::Ok();
}

// Whether every count and offset fits MPI's int.
bool FitsInt(const std::vector<size_t>& counts) {
  size_t total = 0;
  for (size_t c : counts) total += c;
  return total <= kMaxMpiCount;
}

}  // namespace

Status MpiCommunicator::ReduceScatter(void* data, const std::vector<size_t>& counts, CommDataType type) {
  BERT_RETURN_IF_ERROR(CheckParts(counts, world_size_, rank_, "ReduceScatter"));
  if (world_size_ == 1) return Status::Ok();
  size_t total = 0, offset = 0;
  for (int r = 0; r < world_size_; ++r) {
    if (r == rank_) offset = total;
    total += counts[r];
  }
  if (!FitsInt(counts)) return AllReduceBuckets(data, total, type, kMaxMpiCount * CommDataTypeSize(type));
  const size_t element = CommDataTypeSize(type);
  std::vector<int> recv_counts(counts.begin(), counts.end());
  scratch_.resize(counts[rank_] * element);
  BERT_RETURN_IF_ERROR(Check(MPI_Reduce_scatter(data, scratch_.data(), recv_counts.data(), ToMpi(type), MPI_SUM,
                                                AsComm(comm_)),
                             "MPI_Reduce_scatter"));
  std::copy(scratch_.begin(), scratch_.end(), static_cast<char*>(data) + offset * element);
  return Status::Ok();
}

Status MpiCommunicator::AllGather(void* data, const std::vector<size_t>& counts, CommDataType type) {
  BERT_RETURN_IF_ERROR(CheckParts(counts, world_size_, rank_, "AllGather"));
  if (world_size_ == 1) return Status::Ok();
  const size_t element = CommDataTypeSize(type);
  if (!FitsInt(counts)) {
    size_t offset = 0;
    for (int r = 0; r < world_size_; ++r) {
      BERT_RETURN_IF_ERROR(Broadcast(static_cast<char*>(data) + offset * element, counts[r] * element, r));
      offset += counts[r];
    }
    return Status::Ok();
  }
  std::vector<int> recv_counts(counts.begin(), counts.end()), offsets(counts.size());
  for (size_t r = 1; r < counts.size(); ++r) offsets[r] = offsets[r - 1] + recv_counts[r - 1];
  return Check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, recv_counts.data(), offsets.data(),
                              ToMpi(type), AsComm(comm_)),
               "MPI_Allgatherv");
}

Status MpiCommunicator::Broadcast(void* data, size_t bytes, int root) {
  if (world_size_ == 1) return Status::Ok();
  char* p = static_cast<char*>(data);
  for (size_t done = 0; done < bytes;) {
    const size_t n = std::min(kMaxMpiCount, bytes - done);
    BERT_RETURN_IF_ERROR(Check(MPI_Bcast(p + done, static_cast<int>(n), MPI_BYTE, root, AsComm(comm_)), "MPI_Bcast"));
    done += n;
  }
  return Status::Ok();
}

Status MpiCommunicator::Barrier() {
  if (world_size_ == 1) return Status::Ok();
  return Check(MPI_Barrier(AsComm(comm_)), "MPI_Barrier");
}

void MpiCommunicator::Abort(int exit_code) noexcept {
  // MPI cannot cancel a collective another thread is blocked in, and
  // MPI_Abort from a thread other than the FUNNELED one is not allowed: end
  // the process. The launcher (mpirun / srun) then ends the other ranks.
  google::FlushLogFiles(google::GLOG_INFO);
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(exit_code);
}

}  // namespace bert
