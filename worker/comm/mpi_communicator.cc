#include "worker/comm/mpi_communicator.h"

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

// ReduceScatter and AllGather move each part in pieces of this many bytes.
constexpr size_t kPartChunkBytes = size_t{25} << 20;

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

// Where each part begins.
std::vector<size_t> Offsets(const std::vector<size_t>& counts) {
  std::vector<size_t> offsets(counts.size(), 0);
  for (size_t r = 1; r < counts.size(); ++r) offsets[r] = offsets[r - 1] + counts[r - 1];
  return offsets;
}

template <typename T>
void AddTyped(void* into, const void* from, size_t n) {
  T* a = static_cast<T*>(into);
  const T* b = static_cast<const T*>(from);
  for (size_t i = 0; i < n; ++i) a[i] += b[i];
}

// into[i] += from[i] for n elements of `type`.
void AddInto(CommDataType type, void* into, const void* from, size_t n) {
  switch (type) {
    case CommDataType::kFloat32: return AddTyped<float>(into, from, n);
    case CommDataType::kFloat64: return AddTyped<double>(into, from, n);
    case CommDataType::kInt64: return AddTyped<int64_t>(into, from, n);
    case CommDataType::kUint64: return AddTyped<uint64_t>(into, from, n);
  }
}

// MPI tag of the ring's messages (collectives use their own context).
constexpr int kRingTag = 0x5a31;

}  // namespace

// Ring reduce-scatter and all-gather (as NCCL's rings, and Open MPI's ring
// all-reduce, do them), in pieces of at most kPartChunkBytes through
// MPI_Sendrecv: W - 1 steps, in step s rank r sends part (r - s - shift) and
// receives part (r - s - shift - 1) from rank r - 1. Reduce-scatter (shift
// 1) adds what arrives to its own copy, so part c's sum starts at rank c + 1
// and goes round the ring in rank order, ending at rank c: a fixed order for
// a given world size. All-gather (shift 0) stores what arrives.
Status MpiCommunicator::Ring(void* data, const std::vector<size_t>& counts, CommDataType type, bool reduce,
                             const char* call) {
  BERT_RETURN_IF_ERROR(CheckParts(counts, world_size_, rank_, call));
  if (world_size_ == 1) return Status::Ok();
  const size_t element = CommDataTypeSize(type);
  const std::vector<size_t> offsets = Offsets(counts);
  const int next = (rank_ + 1) % world_size_, previous = (rank_ + world_size_ - 1) % world_size_;
  const int shift = reduce ? 1 : 0;
  char* bytes = static_cast<char*>(data);
  const size_t piece = kPartChunkBytes / element;
  if (reduce) scratch_.resize(std::min(piece, *std::max_element(counts.begin(), counts.end())) * element);
  for (int s = 0; s + 1 < world_size_; ++s) {
    const int send = ((rank_ - s - shift) % world_size_ + world_size_) % world_size_;
    const int receive = ((rank_ - s - shift - 1) % world_size_ + world_size_) % world_size_;
    const size_t pieces = std::max((counts[send] + piece - 1) / piece, (counts[receive] + piece - 1) / piece);
    for (size_t k = 0; k < pieces; ++k) {
      const size_t send_first = std::min(k * piece, counts[send]), receive_first = std::min(k * piece, counts[receive]);
      const size_t send_n = std::min(piece, counts[send] - send_first);
      const size_t receive_n = std::min(piece, counts[receive] - receive_first);
      char* destination = bytes + (offsets[receive] + receive_first) * element;
      BERT_RETURN_IF_ERROR(Check(MPI_Sendrecv(bytes + (offsets[send] + send_first) * element, static_cast<int>(send_n),
                                              ToMpi(type), next, kRingTag, reduce ? scratch_.data() : destination,
                                              static_cast<int>(receive_n), ToMpi(type), previous, kRingTag,
                                              AsComm(comm_), MPI_STATUS_IGNORE),
                                 reduce ? "MPI_Sendrecv (reduce-scatter)" : "MPI_Sendrecv (all-gather)"));
      if (reduce) AddInto(type, destination, scratch_.data(), receive_n);
    }
  }
  return Status::Ok();
}

Status MpiCommunicator::ReduceScatter(void* data, const std::vector<size_t>& counts, CommDataType type) {
  return Ring(data, counts, type, /*reduce=*/true, "ReduceScatter");
}

Status MpiCommunicator::AllGather(void* data, const std::vector<size_t>& counts, CommDataType type) {
  return Ring(data, counts, type, /*reduce=*/false, "AllGather");
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
