// CoordinatorClient: the worker's side of the protocol (common/protocol.h),
// without LibTorch. A worker (one process per GPU or CPU slot) does:
//
//   CoordinatorClient client(options);
//   Result<RunInfo> run = client.Register();        // refused -> exit ExitCodeFor(client.end_reason())
//   while (true) {
//     Result<std::optional<WorkerBatch>> next = client.NextBatch();
//     if (!next.ok()) return ExitCodeFor(client.end_reason());   // aborted / coordinator lost
//     if (!next->has_value()) break;                             // Done: the run is complete
//     ... train on (*next)->batch ...
//     client.Ack((*next)->step, (*next)->micro, loss, step_ms, (*next)->wait_ms);
//   }
//
// Prefetch: the coordinator may send `prefetch` batches ahead; a background
// I/O thread receives, verifies (size, checksum, header vs. contents) and
// decodes them into a queue, and NextBatch() returns one credit per batch it
// takes, so `prefetch` batches stay in flight and a worker never waits on
// data in steady state. The same thread sends a Heartbeat every interval
// (even while the training thread is busy) and watches the coordinator's:
// after heartbeat_timeout_ms of silence the coordinator is lost. Heartbeats
// carry the last acked step, this process's resident memory and, with
// ClientOptions::activity, what the training thread is doing.
//
// Abort: when the coordinator orders an abort (a peer died) or is lost, the
// abort callback runs on the I/O thread (e.g. to abort NCCL collectives that
// would otherwise hang), and NextBatch() returns the error.
//
// Authentication: with ClientOptions::keys the connection is CURVE; a
// coordinator that refuses the handshake (another run's keys, or a plain
// client against a CURVE coordinator) ends Register() at once with
// EndReason::kRefused and a message saying so, instead of a timeout.
//
// Thread safety: NextBatch() from one thread; Ack() from any thread;
// Register() once, first. Errors name the coordinator's endpoint.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <zmq.hpp>

#include "common/curve_keys.h"
#include "common/protocol.h"
#include "common/status.h"
#include "common/worker_activity.h"
#include "datapipe/batch_codec.h"

namespace bert {

struct ClientOptions {
  std::string endpoint;              // the coordinator's, e.g. tcp://node1:5555
  std::string run_id;                // the run's id (its name unless the coordinator was given --run-id)
  uint32_t rank = 0;
  uint32_t world_size = 1;
  std::string host;                  // default: this machine's hostname
  std::string device = "cpu";        // for the coordinator's logs
  uint64_t generation = 0;           // launcher restart count
  int register_timeout_ms = 60000;   // no RegisterReply by then: the coordinator is lost
  int64_t max_batch_bytes = int64_t{1} << 30;  // ZMQ_MAXMSGSIZE and the batch decode limit
  // CURVE keys (LoadWorkerKeys(RUN_DIR/keys)); nullopt: a plain connection,
  // which a coordinator only accepts with --insecure.
  std::optional<WorkerKeys> keys;
  // What the training thread is doing, sent with every Heartbeat (for the
  // coordinator's hang diagnosis); null: not reported. Must outlive the client.
  const WorkerActivity* activity = nullptr;
};

// What RegisterReply told the worker.
struct RunInfo {
  std::string run_id;
  uint64_t start_step = 0, total_steps = 0;
  std::string checkpoint;         // checkpoint to resume from (under RUN_DIR/checkpoints); "": none
  uint64_t checkpoint_every = 0;  // steps between checkpoints (0: only after the last)
  uint64_t global_batch_size = 0, micro_batch_size = 0;
  uint32_t micro_batches_per_step = 0, world_size = 0, prefetch = 0;
  int heartbeat_interval_ms = 0, heartbeat_timeout_ms = 0;
  uint64_t seed = 0;
  int32_t max_seq_len = 0, max_predictions = 0, vocab_size = 0;
  double masked_lm_prob = 0;
  bool whole_word_masking = false;
};

struct WorkerBatch {
  uint64_t step = 0;
  uint32_t micro = 0, num_micro = 0;
  uint64_t epoch = 0;
  uint64_t sample_begin = 0, sample_end = 0;  // epoch-local sample indices
  uint64_t payload_bytes = 0, checksum = 0;
  double wait_ms = 0;  // how long NextBatch() blocked for it (data wait)
  Batch batch;         // decoded samples
};

// A rank's checkpoint shard, durable on disk (checkpoint/checkpoint.h).
struct ShardReport {
  uint64_t step = 0;
  std::string file;
  uint64_t begin = 0, end = 0, bytes = 0;
  std::string xxh3;
  std::string rank_state_json;  // at most kMaxRankStateBytes
};

// The figures of a whole step that a worker reports with the Ack of the
// step's last micro-batch (proto::StepFigures, whose comments give the
// meaning and valid range of each field).
struct StepFigures {
  double mlm_accuracy = 0, nsp_accuracy = 0;  // [0, 1]
  double lr = 0;
  double grad_norm = 0;
  uint64_t samples = 0, tokens = 0, masked = 0;  // of the step, all ranks
  double model_flops = 0;                         // of the step, all ranks
  double peak_flops = 0;                          // FLOP/s of all ranks together
  double compute_ms = 0;                          // this rank, without collectives and data waits
  double data_wait_ms = 0;                        // the slowest rank's, whole step
};

enum class EndReason {
  kNone,             // still running
  kDone,             // the coordinator reported the run complete
  kAborted,          // the coordinator ordered an abort
  kPreempted,        // the coordinator stopped the run for a preemption (checkpoint committed)
  kCoordinatorLost,  // the coordinator went silent, or never answered Register
  kRefused,          // registration refused
  kProtocolError,    // the coordinator sent an invalid batch
};
// kExitOk, kExitAborted, kExitPreempted, kExitCoordinatorLost, kExitRegistration or kExitError.
int ExitCodeFor(EndReason reason);
const char* EndReasonName(EndReason reason);

class CoordinatorClient {
 public:
  explicit CoordinatorClient(ClientOptions options);
  ~CoordinatorClient();  // stops the I/O thread; pending Acks are flushed (up to 1 s)
  CoordinatorClient(const CoordinatorClient&) = delete;
  CoordinatorClient& operator=(const CoordinatorClient&) = delete;

  Result<RunInfo> Register();
  // The next batch in (step, micro) order, blocking until it arrives;
  // nullopt once the run is complete; an error when aborted or lost.
  Result<std::optional<WorkerBatch>> NextBatch();
  // Reports a micro-batch as trained. Never blocks on the network.
  Status Ack(uint64_t step, uint32_t micro, float loss, float step_time_ms, float data_wait_ms);
  // The same with the step's figures. Figures out of their range (e.g. an
  // accuracy of NaN) are left out, with a warning, so that the Ack itself
  // still counts.
  // ends_run: the run's time budget is spent, step + 1 is its last
  // (proto::Ack.ends_run).
  Status Ack(uint64_t step, uint32_t micro, float loss, float step_time_ms, float data_wait_ms,
             const StepFigures& figures, bool ends_run = false);
  // After the last step of a run that ended early (its time budget): drops
  // the batches prefetched beyond it and waits for the coordinator's Done;
  // an error when aborted or lost instead.
  Status WaitForDone();
  // Tells the coordinator a checkpoint shard is durable. Any thread; never
  // blocks on the network.
  Status ReportShardDurable(const ShardReport& report);
  // The last checkpoint step the coordinator reported committed (0: none).
  uint64_t last_committed_step() const { return last_committed_step_.load(); }
  // The checkpoint the coordinator ordered (CheckpointRequest: at the next
  // step boundary, by this step at the latest) and not yet cleared; 0: none.
  uint64_t PendingCheckpointRequest() const { return requested_checkpoint_step_.load(); }
  // Clears the pending order if it is still `step` (one that arrived since
  // stays pending).
  void ClearCheckpointRequest(uint64_t step);
  // Runs on the I/O thread when the run ends abnormally (abort or lost).
  void SetAbortCallback(std::function<void(EndReason, const std::string&)> callback);

  EndReason end_reason() const;
  std::string end_message() const;
  uint64_t rejected_messages() const { return rejected_.load(); }

 private:
  // Register(): a one-line reason when the monitor saw the handshake fail
  // for good, else "".
  std::string HandshakeFailure(int* silent_failures);
  void IoLoop();
  void HandleIncoming(Frames& frames);
  Status CheckAndDecode(const proto::BatchHeader& header, const zmq::message_t& payload, WorkerBatch* out) const;
  void End(EndReason reason, const std::string& message);
  void Enqueue(const proto::Envelope& envelope);
  void ForwardOutbox();  // I/O thread: pipe -> coordinator
  std::string Where() const { return "coordinator " + options_.endpoint; }

  const ClientOptions options_;
  RunInfo run_;
  zmq::context_t context_{1};
  zmq::socket_t dealer_;     // owned by the caller in Register(), then by the I/O thread
  zmq::socket_t monitor_;    // Register(): the dealer's handshake failures
  zmq::socket_t pipe_out_;   // I/O thread: messages to forward to the coordinator
  std::mutex pipe_mutex_;    // guards pipe_in_ (any thread sends through it)
  zmq::socket_t pipe_in_;
  std::thread io_thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> last_acked_step_{0};
  std::atomic<uint64_t> rejected_{0};
  std::atomic<uint64_t> last_committed_step_{0};
  std::atomic<uint64_t> requested_checkpoint_step_{0};

  mutable std::mutex mutex_;  // guards the fields below
  std::condition_variable changed_;
  std::deque<WorkerBatch> queue_;
  bool done_ = false;
  EndReason end_reason_ = EndReason::kNone;
  std::string end_message_;
  std::function<void(EndReason, const std::string&)> abort_callback_;
};

}  // namespace bert
