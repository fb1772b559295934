// Server: the coordinator's ZeroMQ loop (protocol in common/protocol.h).
//
// One thread owns the ROUTER socket, the worker registry, the per-rank
// dispatch streams and the ledger writes; a BatchBuilder pool builds batches
// ahead. Each loop iteration waits (zmq::poll) on the socket and on the
// builders' eventfd, handles every waiting message, sends every batch that a
// worker has credit for and that is built, sends heartbeats that are due, and
// checks liveness, completion and the stop flag.
//
// Per rank r the stream is (step, micro) for step from the ledger's cursor
// to total_steps - 1, micro from 0 to M - 1, in that order; batches are built
// up to 2 x prefetch ahead of what was sent, before the worker registers.
//
// Run() returns the process exit code (ExitCode in common/protocol.h):
//   kExitOk            every step acknowledged; Done sent to every worker
//   kExitAborted       a worker was silent for heartbeat_timeout_ms: the others got Abort;
//                      or ranks waited in a collective for collective_timeout_ms that
//                      one never entered (coordinator/hang_diagnosis.h): all got Abort
//   kExitRegistration  not every rank registered within register_timeout_ms
//   kExitInterrupted   *stop became true: the workers got Abort
//   kExitPreempted     *checkpoint_and_stop became true and the checkpoint it
//                      ordered was committed (then the workers got Abort with
//                      preempted set), or it came before every rank registered
//   kExitError         the ledger or the corpus failed: the workers got Abort
// Authentication: Bind() starts an Authenticator (ZAP handler and connection
// monitor, coordinator/authenticator.h) on the server's context before the
// socket binds; with options.keys the socket is a CURVE server.
// Not thread-safe: construct, Bind() and Run() on one thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "common/curve_keys.h"
#include "common/protocol.h"
#include "common/status.h"
#include "coordinator/authenticator.h"
#include "coordinator/batch_builder.h"
#include "coordinator/checkpoint_committer.h"
#include "datapipe/data_source.h"
#include "datapipe/dispatch_plan.h"
#include "coordinator/ledger.h"
#include "coordinator/status_board.h"
#include "coordinator/worker_registry.h"

namespace bert {

struct ServerOptions {
  std::string bind = "tcp://127.0.0.1:*";   // ZeroMQ endpoint; port * = any free port
  std::string run_id;                       // workers must present it
  uint64_t total_steps = 0;                 // the run is complete when all are acknowledged
  // train.time_budget (seconds; 0: none): the ranks may end the run earlier,
  // at the step their Acks mark (Ack.ends_run), once its checkpoint commits.
  int64_t time_budget_s = 0;
  // A run whose time budget was spent at this step (its latest checkpoint
  // says so): complete there; 0: not so.
  uint64_t budget_end_step = 0;
  uint32_t prefetch = 4;                    // batches in flight per worker (credits)
  BuilderOptions builder;
  int heartbeat_interval_ms = 500;          // both ways
  int heartbeat_timeout_ms = 3000;          // silent longer = dead
  int64_t collective_timeout_ms = 600000;   // a rank in one collective this long: a hang (0: not checked)
  int64_t register_timeout_ms = 600000;     // all ranks must register within this
  int64_t max_message_bytes = 1 << 20;      // ZMQ_MAXMSGSIZE: libzmq drops peers sending bigger frames
  double progress_every_s = 10;             // progress line interval
  int linger_ms = 2000;                     // to flush the final Done / Abort
  const std::atomic<bool>* stop = nullptr;  // set by a signal handler: Abort the workers and return
  // Set by a signal handler (SIGUSR1: preemption, a time limit): order a
  // checkpoint at the next step boundary the ranks agree on (at most the
  // step after the one running when they learn of it, not after the
  // prefetched batches), and once it is committed Abort the workers and
  // return kExitPreempted. Null: never.
  const std::atomic<bool>* checkpoint_and_stop = nullptr;
  // Commits checkpoints from the workers' shard reports; the run is complete
  // only once the checkpoint after the last step is committed. Null: no
  // checkpoints (workers that report shards are refused).
  CheckpointCommitter* committer = nullptr;
  std::string resume_checkpoint;            // told to registering workers (RegisterReply.checkpoint)
  uint64_t checkpoint_every = 0;            // told to registering workers
  StatusBoard* board = nullptr;             // fed with what the server sees (monitoring); null: none
  // Authentication (coordinator/SECURITY.md). With keys the socket is a CURVE
  // server that admits only keys->worker_public_z85; nullopt: CURVE off
  // (--insecure), any client within max_peers may connect.
  std::optional<ServerKeys> keys;
  int64_t max_peers = 0;                    // open connections beyond this: handshakes refused; 0: 2 x W + 16
  // Batches sent to a rank and not acked: a worker that credits without
  // acking gets no more. A real one holds its queue (prefetch) and the step's
  // micro-batches until the step's all-reduce. 0: 2 x (prefetch + micro-batches per step).
  uint32_t max_unacked = 0;
  int handshake_timeout_ms = 5000;          // ZMQ_HANDSHAKE_IVL: a connection that has not authenticated by then goes
  SecurityCounters* counters = nullptr;     // refusals and rejects, for the status service; null: the server's own
};

struct ServerStats {
  uint64_t batches_sent = 0, samples_sent = 0, bytes_sent = 0, tokens_sent = 0;
  uint64_t acks = 0, messages_received = 0;
  uint64_t checkpoints_committed = 0, last_checkpoint_step = 0;
  std::array<uint64_t, static_cast<size_t>(Reject::kCount)> rejects{};
  uint64_t start_step = 0, cursor = 0;
  int exit_code = -1;
  std::string exit_reason;
  int dead_rank = -1;
  double elapsed_s = 0;
  double build_cpu_s = 0;  // CPU time the batch builders spent
  uint64_t samples_built = 0;
  nlohmann::json security;  // SecurityCounters::ToJson() at the end of the run
  uint64_t total_rejects() const;
  std::string ToJson() const;
};

class Server {
 public:
  // `data` and `ledger` must outlive the server; `geometry` must match
  // options.world_size.
  Server(const ServerOptions& options, const DataSource& data, const DispatchGeometry& geometry, Ledger* ledger);
  ~Server();

  // Binds the ROUTER socket and starts the builders; returns the endpoint
  // actually bound (with the port chosen for "*"). Fails naming the endpoint.
  Result<std::string> Bind();
  // Serves until the run ends; returns the exit code (see above).
  int Run();
  const ServerStats& stats() const { return stats_; }

 private:
  struct RankStream {
    BatchKey next_send;     // next batch to send
    BatchKey next_request;  // next batch to ask the builders for
    uint32_t credits = 0;   // batches the worker may still be sent
    uint64_t uncredited = 0;  // sent and not yet credited back
    std::set<std::pair<uint64_t, uint32_t>> unacked;  // (step, micro) sent, not acknowledged
  };

  void HandleMessage(zmq::message_t* parts, size_t num_parts, size_t dropped_frames);
  void HandleRegister(const std::string& identity, const proto::Register& request, Reject field_check,
                      const std::string& field_detail);
  void HandleCredit(uint32_t rank, const proto::Credit& credit);
  void HandleAck(uint32_t rank, const proto::Ack& ack);
  void HandleShardDurable(uint32_t rank, const proto::ShardDurable& shard);
  void CountReject(Reject reason, const std::string& identity, const std::string& detail);
  std::string DescribePeer(const std::string& identity) const;

  void Advance(BatchKey* key) const;
  void RequestAhead(uint32_t rank);
  void SendBatches();
  bool SendNext(uint32_t rank);
  void SendHeartbeats(int64_t now_ms);
  void SendToAll(const proto::Envelope& envelope);
  // Ends the run: sets stats_, tells the workers (Abort or Done), returns the code.
  int Finish(int exit_code, const std::string& reason, int dead_rank = -1);
  // Checks liveness, completion, timeouts and the stop flag; returns an exit
  // code when the run must end, or -1.
  int CheckRunState(int64_t now_ms);
  // *checkpoint_and_stop is set: orders the checkpoint (once), then returns
  // kExitPreempted when it is committed, or -1 while waiting.
  int CheckpointAndStop();
  void MaybeLogProgress(int64_t now_ms, bool force);

  const ServerOptions options_;
  const DataSource& data_;
  const DispatchGeometry geometry_;
  Ledger* ledger_;
  zmq::context_t context_{1};
  SecurityCounters own_counters_;
  SecurityCounters* counters_;              // options_.counters or &own_counters_
  std::unique_ptr<Authenticator> auth_;     // ZAP handler; before router_ binds, gone before context_ closes
  zmq::socket_t router_;
  std::unique_ptr<BatchBuilder> builder_;
  WorkerRegistry registry_;
  StepTracker tracker_;
  std::vector<RankStream> streams_;
  Status fatal_;  // set when the ledger or a build fails
  ServerStats stats_;
  // A checkpoint ordered for preemption: the ranks take it at a step in
  // [preempt_first_step_, stop_at_step_]; no batch of stop_at_step_ or later
  // is sent (0: none ordered).
  uint64_t stop_at_step_ = 0, preempt_first_step_ = 0;
  // The run's last step: options.total_steps, or earlier once its time
  // budget is spent (Ack.ends_run, or options.budget_end_step).
  uint64_t end_step_ = 0;
  int64_t start_ms_ = 0, last_heartbeat_ms_ = 0, last_progress_ms_ = 0;
  uint64_t last_progress_samples_ = 0, last_progress_bytes_ = 0, last_progress_cursor_ = 0;
};

}  // namespace bert
