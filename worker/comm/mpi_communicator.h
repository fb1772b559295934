// The MPI backend of Communicator (communicator.h): CPU buffers, Open MPI's
// MPI_Allreduce. Also what every worker starts with: the
// process's rank and world size come from MPI (mpirun, or srun --mpi=pmix),
// and the NCCL backend is bootstrapped over it.
//
//   MpiEnvironment mpi(&argc, &argv);          // first thing in main()
//   Result<std::unique_ptr<Communicator>> comm = MpiCommunicator::Create();
//
// A process started without a launcher is a world of one (MPI's singleton).
#pragma once

#include <memory>

#include "worker/comm/communicator.h"

namespace bert {

// MPI_Init_thread(FUNNELED) on construction, MPI_Finalize on destruction
// (only if this object initialised MPI). One per process.
class MpiEnvironment {
 public:
  MpiEnvironment(int* argc, char*** argv);
  ~MpiEnvironment();
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;
  // Whether a launcher (mpirun, srun) started this process, so that rank and
  // world size are the launcher's rather than a singleton's.
  static bool LaunchedByMpi();

 private:
  bool initialised_here_ = false;
};

class MpiCommunicator : public Communicator {
 public:
  // Over MPI_COMM_WORLD (duplicated, so library traffic stays apart).
  static Result<std::unique_ptr<Communicator>> Create();
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string backend() const override { return "mpi"; }
  Status AllReduce(void* data, size_t count, CommDataType type, CommReduceOp op) override;
  Status AllReduceBuckets(void* data, size_t count, CommDataType type, size_t bucket_bytes) override;
  // Rings of MPI_Sendrecv in 25 MiB pieces (W - 1 steps each). Measured
  // here, 2 ranks, 256 MiB: about as fast as AllReduceBuckets together,
  // where MPI_Reduce_scatter + MPI_Allgatherv took 4x as long.
  Status ReduceScatter(void* data, const std::vector<size_t>& counts, CommDataType type) override;
  Status AllGather(void* data, const std::vector<size_t>& counts, CommDataType type) override;
  Status Broadcast(void* data, size_t bytes, int root) override;
  Status Barrier() override;
  void Abort(int exit_code) noexcept override;

 private:
  MpiCommunicator() = default;
  Status Check(int rc, const char* call) const;
  // ReduceScatter (reduce) or AllGather as a ring (see the .cc).
  Status Ring(void* data, const std::vector<size_t>& counts, CommDataType type, bool reduce, const char* call);

  void* comm_ = nullptr;  // MPI_Comm (kept out of this header)
  int rank_ = 0, world_size_ = 1;
  std::vector<char> scratch_;  // ReduceScatter's receive buffer (one piece)
};

}  // namespace bert
