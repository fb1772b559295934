// TracedCommunicator: another communicator's collectives, each recorded in a
// WorkerActivity (common/worker_activity.h) as it is entered and left, so
// that the coordinator can tell which rank never arrived at a collective the
// others wait in (the hang diagnosis). Nothing else changes: the calls,
// their order and their errors are the wrapped communicator's. With NCCL a
// collective is "left" once it is queued on its stream.
#pragma once

#include "common/worker_activity.h"
#include "worker/comm/communicator.h"

namespace bert {

class TracedCommunicator : public Communicator {
 public:
  // Both must outlive this.
  TracedCommunicator(Communicator* inner, WorkerActivity* activity) : inner_(inner), activity_(activity) {}

  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  std::string backend() const override { return inner_->backend(); }

  Status AllReduce(void* data, size_t count, CommDataType type, CommReduceOp op) override {
    Scope scope(activity_);
    return inner_->AllReduce(data, count, type, op);
  }
  Status AllReduceBuckets(void* data, size_t count, CommDataType type, size_t bucket_bytes) override {
    Scope scope(activity_);
    return inner_->AllReduceBuckets(data, count, type, bucket_bytes);
  }
  Status ReduceScatter(void* data, const std::vector<size_t>& counts, CommDataType type) override {
    Scope scope(activity_);
    return inner_->ReduceScatter(data, counts, type);
  }
  Status AllGather(void* data, const std::vector<size_t>& counts, CommDataType type) override {
    Scope scope(activity_);
    return inner_->AllGather(data, counts, type);
  }
  Status Broadcast(void* data, size_t bytes, int root) override {
    Scope scope(activity_);
    return inner_->Broadcast(data, bytes, root);
  }
  Status Barrier() override {
    Scope scope(activity_);
    return inner_->Barrier();
  }
  void Abort(int exit_code) noexcept override { inner_->Abort(exit_code); }

 private:
  struct Scope {
    explicit Scope(WorkerActivity* activity) : activity(activity) { activity->EnterCollective(); }
    ~Scope() { activity->LeaveCollective(); }
    WorkerActivity* activity;
  };
  Communicator* inner_;
  WorkerActivity* activity_;
};

}  // namespace bert
