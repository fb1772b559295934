#include "coordinator/client.h"

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>

#include <glog/logging.h>
#include <xxhash.h>
#include <zmq.h>

namespace bert {
namespace {

constexpr int kMaxPollMs = 50;
constexpr int kCloseLingerMs = 1000;
constexpr char kPipeEndpoint[] = "inproc://coordinator-client-outbox";
constexpr char kMonitorEndpoint[] = "inproc://coordinator-client-monitor";
// A handshake that fails without a reason may be a connection cut short;
// this many in a row mean the coordinator does not know our server key.
constexpr int kMaxSilentHandshakeFailures = 3;

std::string Hostname() {
  char name[256] = {0};
  return ::gethostname(name, sizeof(name) - 1) == 0 ? std::string(name) : std::string("?");
}

// Resident set size of this process from /proc/self/statm (0 if unknown).
uint64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t pages = 0, resident_pages = 0;
  if (!(statm >> pages >> resident_pages)) return 0;
  return resident_pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

std::string_view View(const zmq::message_t& m) { return std::string_view(static_cast<const char*>(m.data()), m.size()); }

RunInfo FromReply(const proto::RegisterReply& r) {
  RunInfo run;
  run.run_id = r.run_id();
  run.start_step = r.start_step();
  run.checkpoint = r.checkpoint();
  run.checkpoint_every = r.checkpoint_every();
  run.total_steps = r.total_steps();
  run.global_batch_size = r.global_batch_size();
  run.micro_batch_size = r.micro_batch_size();
  run.micro_batches_per_step = r.micro_batches_per_step();
  run.world_size = r.world_size();
  run.prefetch = r.prefetch();
  run.heartbeat_interval_ms = static_cast<int>(r.heartbeat_interval_ms());
  run.heartbeat_timeout_ms = static_cast<int>(r.heartbeat_timeout_ms());
  run.seed = r.seed();
  run.max_seq_len = r.max_seq_len();
  run.max_predictions = r.max_predictions();
  run.vocab_size = r.vocab_size();
  run.masked_lm_prob = r.masked_lm_prob();
  run.whole_word_masking = r.whole_word_masking();
  return run;
}

}  // namespace

int ExitCodeFor(EndReason reason) {
  switch (reason) {
    case EndReason::kNone:
    case EndReason::kDone: return kExitOk;
    case EndReason::kAborted: return kExitAborted;
    case EndReason::kPreempted: return kExitPreempted;
    case EndReason::kCoordinatorLost: return kExitCoordinatorLost;
    case EndReason::kRefused: return kExitRegistration;
    case EndReason::kProtocolError: return kExitError;
  }
  return kExitError;
}

const char* EndReasonName(EndReason reason) {
  switch (reason) {
    case EndReason::kNone: return "running";
    case EndReason::kDone: return "done";
    case EndReason::kAborted: return "aborted";
    case EndReason::kPreempted: return "preempted";
    case EndReason::kCoordinatorLost: return "coordinator lost";
    case EndReason::kRefused: return "refused";
    case EndReason::kProtocolError: return "protocol error";
  }
  return "?";
}

CoordinatorClient::CoordinatorClient(ClientOptions options)
    : options_(std::move(options)),
      dealer_(context_, zmq::socket_type::dealer),
      monitor_(context_, zmq::socket_type::pair),
      pipe_out_(context_, zmq::socket_type::pair),
      pipe_in_(context_, zmq::socket_type::pair) {
  ConfigureSocket(dealer_, options_.max_batch_bytes + int64_t{kMaxControlFrameBytes}, kCloseLingerMs);
  if (options_.keys) SetCurveClient(dealer_, *options_.keys);
  // One client per context, so the inproc name is private to this object.
  pipe_out_.bind(kPipeEndpoint);
  pipe_in_.connect(kPipeEndpoint);
}

CoordinatorClient::~CoordinatorClient() {
  stopping_.store(true);
  if (io_thread_.joinable()) io_thread_.join();
}

std::string CoordinatorClient::HandshakeFailure(int* silent_failures) {
  zmq::message_t event, address;
  while (monitor_.recv(event, zmq::recv_flags::dontwait)) {
    if (!event.more() || !monitor_.recv(address, zmq::recv_flags::none) || event.size() < 6) continue;
    uint16_t id = 0;
    uint32_t value = 0;
    std::memcpy(&id, event.data(), sizeof(id));
    std::memcpy(&value, static_cast<const char*>(event.data()) + sizeof(id), sizeof(value));
    if (id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
      return Where() + " refused this worker's credentials (ZAP status " + std::to_string(value) +
             "): not the run's RUN_DIR/keys, too many peers, or --insecure on one side only";
    }
    if (id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
      return Where() + ": handshake failed (ZMTP protocol error " + std::to_string(value) +
             "): CURVE on one side and --insecure on the other?";
    }
    if (id == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL && ++*silent_failures >= kMaxSilentHandshakeFailures) {
      return Where() + ": handshake failed " + std::to_string(*silent_failures) +
             " times: server.pub of another run, or CURVE on one side and --insecure on the other?";
    }
  }
  return "";
}

Result<RunInfo> CoordinatorClient::Register() {
  // Handshake failures would otherwise look like a silent coordinator.
  constexpr int kEvents =
      ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
  if (zmq_socket_monitor(dealer_.handle(), kMonitorEndpoint, kEvents) == 0) monitor_.connect(kMonitorEndpoint);
  int silent_failures = 0;
  try {
    dealer_.connect(options_.endpoint);
  } catch (const zmq::error_t& e) {
    End(EndReason::kCoordinatorLost, Where() + ": cannot connect: " + e.what());
    return Status::IoError(end_message());
  }
  proto::Envelope envelope = MakeEnvelope();
  proto::Register* request = envelope.mutable_registration();
  request->set_run_id(options_.run_id);
  request->set_rank(options_.rank);
  request->set_world_size(options_.world_size);
  request->set_host(options_.host.empty() ? Hostname() : options_.host);
  request->set_device(options_.device);
  request->set_pid(static_cast<uint32_t>(::getpid()));
  request->set_generation(options_.generation);
  request->set_protocol_version(kProtocolVersion);
  // A DEALER queues the message until the connection is up.
  SendEnvelope(dealer_, "", envelope);
  const int64_t deadline = MonotonicMs() + options_.register_timeout_ms;
  for (int64_t now = MonotonicMs(); now < deadline; now = MonotonicMs()) {
    zmq::pollitem_t items[] = {{dealer_.handle(), 0, ZMQ_POLLIN, 0}};
    PollSockets(items, 1, static_cast<int>(std::min<int64_t>(deadline - now, kMaxPollMs)));
    if (const std::string failure = HandshakeFailure(&silent_failures); !failure.empty()) {
      End(EndReason::kRefused, failure);
      return Status::FailedPrecondition(end_message());
    }
    Frames frames;
    while (RecvMessage(dealer_, 2, &frames)) {
      proto::Envelope reply;
      std::string detail;
      if (frames.parts.size() != 1 || ParseControlFrame(View(frames.parts[0]), &reply, &detail) != Reject::kNone ||
          ValidateFromCoordinator(reply, &detail) != Reject::kNone || !reply.has_registration_reply()) {
        ++rejected_;
        continue;
      }
      if (!reply.registration_reply().ok()) {
        End(EndReason::kRefused, Where() + " refused rank " + std::to_string(options_.rank) + ": " +
                                     reply.registration_reply().reason());
        return Status::FailedPrecondition(end_message());
      }
      zmq_socket_monitor(dealer_.handle(), nullptr, 0);  // only Register() reads its events
      run_ = FromReply(reply.registration_reply());
      last_acked_step_ = run_.start_step;
      io_thread_ = std::thread([this] { IoLoop(); });
      return run_;
    }
  }
  End(EndReason::kCoordinatorLost, Where() + ": no answer to Register within " +
                                       std::to_string(options_.register_timeout_ms) + " ms");
  return Status::IoError(end_message());
}

Result<std::optional<WorkerBatch>> CoordinatorClient::NextBatch() {
  const auto start = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [this] {
    return !queue_.empty() || done_ || (end_reason_ != EndReason::kNone && end_reason_ != EndReason::kDone);
  });
  if (end_reason_ != EndReason::kNone && end_reason_ != EndReason::kDone) {
    return Status::FailedPrecondition(end_message_);
  }
  if (queue_.empty()) return std::optional<WorkerBatch>();  // done
  WorkerBatch batch = std::move(queue_.front());
  queue_.pop_front();
  lock.unlock();
  batch.wait_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  proto::Envelope credit = MakeEnvelope();
  credit.mutable_credit()->set_credits(1);
  Enqueue(credit);
  return std::optional<WorkerBatch>(std::move(batch));
}

Status CoordinatorClient::Ack(uint64_t step, uint32_t micro, float loss, float step_time_ms, float data_wait_ms) {
  proto::Envelope envelope = MakeEnvelope();
  proto::Ack* ack = envelope.mutable_ack();
  ack->set_step(step);
  ack->set_micro(micro);
  ack->set_loss(loss);
  ack->set_step_time_ms(step_time_ms);
  ack->set_data_wait_ms(data_wait_ms);
  Enqueue(envelope);
  last_acked_step_ = step;
  return Status::Ok();
}

Status CoordinatorClient::WaitForDone() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [this] { return done_ || end_reason_ != EndReason::kNone; });
  queue_.clear();
  if (end_reason_ != EndReason::kDone) return Status::FailedPrecondition(end_message_);
  return Status::Ok();
}

Status CoordinatorClient::Ack(uint64_t step, uint32_t micro, float loss, float step_time_ms, float data_wait_ms,
                              const StepFigures& figures, bool ends_run) {
  proto::Envelope envelope = MakeEnvelope();
  proto::Ack* ack = envelope.mutable_ack();
  if (ends_run) ack->set_ends_run(true);
  ack->set_step(step);
  ack->set_micro(micro);
  ack->set_loss(loss);
  ack->set_step_time_ms(step_time_ms);
  ack->set_data_wait_ms(data_wait_ms);
  proto::StepFigures* f = ack->mutable_figures();
  f->set_mlm_accuracy(static_cast<float>(figures.mlm_accuracy));
  f->set_nsp_accuracy(static_cast<float>(figures.nsp_accuracy));
  f->set_lr(figures.lr);
  f->set_grad_norm(static_cast<float>(figures.grad_norm));
  f->set_samples(figures.samples);
  f->set_tokens(figures.tokens);
  f->set_masked(figures.masked);
  f->set_model_flops(figures.model_flops);
  f->set_peak_flops(figures.peak_flops);
  f->set_compute_ms(static_cast<float>(figures.compute_ms));
  f->set_data_wait_ms(static_cast<float>(figures.data_wait_ms));
  // The coordinator would drop the whole Ack for a bad figure, and the step
  // would never complete: send it without them instead.
  std::string detail;
  if (ValidateFromWorker(envelope, &detail) != Reject::kNone) {
    LOG_EVERY_N(WARNING, 100) << "[worker r" << options_.rank << "] step " << step << ": figures left out: " << detail;
    ack->clear_figures();
  }
  Enqueue(envelope);
  last_acked_step_ = step;
  return Status::Ok();
}

Status CoordinatorClient::ReportShardDurable(const ShardReport& report) {
  if (report.rank_state_json.size() > kMaxRankStateBytes) {
    return Status::InvalidArgument("shard report: rank state over " + std::to_string(kMaxRankStateBytes) + " bytes");
  }
  proto::Envelope envelope = MakeEnvelope();
  proto::ShardDurable* shard = envelope.mutable_shard_durable();
  shard->set_step(report.step);
  shard->set_file(report.file);
  shard->set_begin(report.begin);
  shard->set_end(report.end);
  shard->set_bytes(report.bytes);
  shard->set_xxh3(report.xxh3);
  shard->set_rank_state_json(report.rank_state_json);
  Enqueue(envelope);
  return Status::Ok();
}

void CoordinatorClient::ClearCheckpointRequest(uint64_t step) {
  requested_checkpoint_step_.compare_exchange_strong(step, 0);
}

void CoordinatorClient::SetAbortCallback(std::function<void(EndReason, const std::string&)> callback) {
  std::lock_guard<std::mutex> lock(mutex_);
  abort_callback_ = std::move(callback);
}

EndReason CoordinatorClient::end_reason() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return end_reason_;
}

std::string CoordinatorClient::end_message() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return end_message_;
}

void CoordinatorClient::Enqueue(const proto::Envelope& envelope) {
  const std::string bytes = envelope.SerializeAsString();
  std::lock_guard<std::mutex> lock(pipe_mutex_);
  // Never blocks: the I/O thread drains the pipe every loop; a full pipe
  // means it has stopped, and the message could not leave anyway.
  if (!pipe_in_.send(zmq::buffer(bytes), zmq::send_flags::dontwait)) {
    LOG_EVERY_N(WARNING, 100) << "[worker r" << options_.rank << "] outbox full; message dropped";
  }
}

void CoordinatorClient::ForwardOutbox() {
  zmq::message_t outgoing;
  while (pipe_out_.recv(outgoing, zmq::recv_flags::dontwait)) {
    // A full queue (an unreachable coordinator) drops the message; liveness reports it.
    dealer_.send(outgoing, zmq::send_flags::dontwait);
  }
}

void CoordinatorClient::End(EndReason reason, const std::string& message) {
  std::function<void(EndReason, const std::string&)> callback;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (end_reason_ != EndReason::kNone) return;  // the first reason stands
    end_reason_ = reason;
    end_message_ = message;
    if (reason != EndReason::kDone) callback = abort_callback_;
  }
  changed_.notify_all();
  if (callback) callback(reason, message);
}

void CoordinatorClient::IoLoop() {
  int64_t last_heard_ms = MonotonicMs(), last_sent_heartbeat_ms = 0;
  while (!stopping_.load()) {
    zmq::pollitem_t items[] = {{dealer_.handle(), 0, ZMQ_POLLIN, 0}, {pipe_out_.handle(), 0, ZMQ_POLLIN, 0}};
    PollSockets(items, 2, std::min(kMaxPollMs, run_.heartbeat_interval_ms));
    ForwardOutbox();
    Frames frames;
    while (RecvMessage(dealer_, 2, &frames)) {
      last_heard_ms = MonotonicMs();
      HandleIncoming(frames);
    }
    const int64_t now = MonotonicMs();
    if (now - last_sent_heartbeat_ms >= run_.heartbeat_interval_ms) {
      proto::Envelope heartbeat = MakeEnvelope();
      heartbeat.mutable_heartbeat()->set_sent_unix_ms(UnixMs());
      heartbeat.mutable_heartbeat()->set_step(last_acked_step_.load());
      heartbeat.mutable_heartbeat()->set_rss_bytes(ResidentBytes());
      if (options_.activity != nullptr) {
        const WorkerActivity::Snapshot activity = options_.activity->Read();
        proto::Heartbeat* h = heartbeat.mutable_heartbeat();
        h->set_has_activity(true);
        h->set_phase(static_cast<uint32_t>(activity.phase));
        h->set_phase_ms(static_cast<uint64_t>(std::min<int64_t>(activity.phase_ms, (int64_t{1} << 40) - 1)));
        h->set_collectives(activity.collectives);
        h->set_in_collective(activity.in_collective);
        h->set_activity_step(activity.step);
      }
      SendEnvelope(dealer_, "", heartbeat);
      last_sent_heartbeat_ms = now;
    }
    if (now - last_heard_ms > run_.heartbeat_timeout_ms && end_reason() == EndReason::kNone) {
      End(EndReason::kCoordinatorLost, Where() + " silent for " + std::to_string(now - last_heard_ms) +
                                           " ms (timeout " + std::to_string(run_.heartbeat_timeout_ms) + " ms)");
    }
  }
  ForwardOutbox();  // the last Acks leave during the socket's linger
}

void CoordinatorClient::HandleIncoming(Frames& frames) {
  proto::Envelope envelope;
  std::string detail;
  if (frames.parts.empty() || frames.dropped_frames > 0 ||
      ParseControlFrame(View(frames.parts[0]), &envelope, &detail) != Reject::kNone ||
      ValidateFromCoordinator(envelope, &detail) != Reject::kNone) {
    ++rejected_;
    LOG_EVERY_N(WARNING, 100) << "[worker r" << options_.rank << "] dropped a message from " << Where() << ": "
                              << detail;
    return;
  }
  switch (envelope.body_case()) {
    case proto::Envelope::kBatch: {
      WorkerBatch batch;
      Status status = frames.parts.size() == 2
                          ? CheckAndDecode(envelope.batch(), frames.parts[1], &batch)
                          : Status::Corruption(Where() + ": batch header without its payload frame");
      if (!status.ok()) return End(EndReason::kProtocolError, status.message());
      {
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(std::move(batch));
      }
      changed_.notify_all();
      return;
    }
    case proto::Envelope::kAbort:
      if (envelope.abort().preempted()) {
        return End(EndReason::kPreempted, "stopped by " + Where() + ": " + envelope.abort().reason());
      }
      return End(EndReason::kAborted, "aborted by " + Where() + ": " + envelope.abort().reason());
    case proto::Envelope::kDone: {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        done_ = true;
      }
      End(EndReason::kDone, "run complete at step " + std::to_string(envelope.done().final_step()));
      return;
    }
    case proto::Envelope::kCheckpointCommitted:
      last_committed_step_ = envelope.checkpoint_committed().step();
      LOG(INFO) << "[worker r" << options_.rank << "] checkpoint " << envelope.checkpoint_committed().name()
                << " committed";
      return;
    case proto::Envelope::kCheckpointRequest: {
      // Keep the earliest outstanding request.
      const uint64_t step = envelope.checkpoint_request().step();
      uint64_t current = requested_checkpoint_step_.load();
      while ((current == 0 || step < current) && !requested_checkpoint_step_.compare_exchange_weak(current, step)) {
      }
      return;
    }
    default: return;  // Heartbeat (any message counts as life); a resent RegisterReply
  }
}

Status CoordinatorClient::CheckAndDecode(const proto::BatchHeader& header, const zmq::message_t& payload,
                                         WorkerBatch* out) const {
  const std::string where = Where() + ": batch of step " + std::to_string(header.step()) + " micro " +
                            std::to_string(header.micro());
  if (header.rank() != options_.rank) {
    return Status::Corruption(where + ": addressed to rank " + std::to_string(header.rank()));
  }
  if (payload.size() != header.payload_bytes()) {
    return Status::Corruption(where + ": payload of " + std::to_string(payload.size()) + " bytes, header says " +
                              std::to_string(header.payload_bytes()));
  }
  if (XXH3_64bits(payload.data(), payload.size()) != header.checksum()) {
    return Status::Corruption(where + ": payload checksum mismatch");
  }
  BatchDecodeLimits limits;
  limits.max_bytes = static_cast<uint64_t>(options_.max_batch_bytes);
  Result<Batch> batch = DecodeBatch(View(payload), limits);
  if (!batch.ok()) return Status::Corruption(where + ": " + batch.status().message());
  if (batch->epoch != header.epoch() || batch->first_index != header.sample_begin() ||
      batch->samples.size() != header.sample_end() - header.sample_begin()) {
    return Status::Corruption(where + ": contents disagree with the header's epoch or sample range");
  }
  out->step = header.step();
  out->micro = header.micro();
  out->num_micro = header.num_micro();
  out->epoch = header.epoch();
  out->sample_begin = header.sample_begin();
  out->sample_end = header.sample_end();
  out->payload_bytes = header.payload_bytes();
  out->checksum = header.checksum();
  out->batch = std::move(batch).value();
  return Status::Ok();
}

}  // namespace bert
