#include "coordinator/server.h"

#include <algorithm>
#include <chrono>

#include <glog/logging.h>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/logging.h"
#include "common/run_config.h"

namespace bert {
namespace {

constexpr int kMaxPollMs = 50;          // upper bound on one wait, so time checks stay prompt
constexpr int kMaxMessagesPerLoop = 4096;  // then send and check time before reading more
constexpr uint64_t kRejectsLoggedInFull = 5;  // per reason; then every 1000th

std::string_view View(const zmq::message_t& m) { return std::string_view(static_cast<const char*>(m.data()), m.size()); }

}  // namespace

uint64_t ServerStats::total_rejects() const {
  uint64_t total = 0;
  for (uint64_t n : rejects) total += n;
  return total;
}

std::string ServerStats::ToJson() const {
  nlohmann::json reject_counts = nlohmann::json::object();
  for (size_t i = 1; i < rejects.size(); ++i) reject_counts[RejectName(static_cast<Reject>(i))] = rejects[i];
  nlohmann::json j = {{"exit_code", exit_code},   {"exit_reason", exit_reason},
                      {"dead_rank", dead_rank},   {"start_step", start_step},
                      {"cursor", cursor},         {"batches_sent", batches_sent},
                      {"samples_sent", samples_sent}, {"bytes_sent", bytes_sent},
                      {"tokens_sent", tokens_sent},   {"acks", acks},
                      {"messages_received", messages_received}, {"rejects", reject_counts},
                      {"rejects_total", total_rejects()}, {"elapsed_s", elapsed_s},
                      {"build_cpu_s", build_cpu_s}, {"samples_built", samples_built},
                      {"checkpoints_committed", checkpoints_committed},
                      {"last_checkpoint_step", last_checkpoint_step}, {"security", security}};
  return j.dump();
}

Server::Server(const ServerOptions& options, const DataSource& data, const DispatchGeometry& geometry, Ledger* ledger)
    : options_(options),
      data_(data),
      geometry_(geometry),
      ledger_(ledger),
      counters_(options.counters != nullptr ? options.counters : &own_counters_),
      router_(context_, zmq::socket_type::router),
      registry_(options.run_id, geometry.world_size),
      tracker_(ledger->cursor(), uint64_t{geometry.world_size} * geometry.micro_batches),
      streams_(geometry.world_size) {
  stats_.start_step = stats_.cursor = ledger->cursor();
  end_step_ = options.budget_end_step > 0 ? std::min(options.budget_end_step, options.total_steps) : options.total_steps;
  for (uint32_t rank = 0; rank < geometry.world_size; ++rank) {
    streams_[rank].next_send = streams_[rank].next_request = BatchKey{ledger->cursor(), rank, 0};
  }
}

Server::~Server() {
  builder_.reset();  // joins the pool before the sockets go
  router_.close();
  auth_.reset();
  context_.close();  // waits up to linger_ms for the last messages to leave
}

Result<std::string> Server::Bind() {
  ConfigureSocket(router_, options_.max_message_bytes, options_.linger_ms);
  // Sending to a peer that is gone fails instead of vanishing silently.
  router_.set(zmq::sockopt::router_mandatory, 1);
  // The ZAP handler must serve before the first handshake; with a ZAP domain
  // libzmq asks it about NULL (--insecure) handshakes too, for the peer cap.
  AuthenticatorOptions auth_options;
  auth_options.worker_public_z85 = options_.keys ? options_.keys->worker_public_z85 : "";
  auth_options.max_peers = options_.max_peers > 0 ? options_.max_peers : 2 * int64_t{geometry_.world_size} + 16;
  auth_ = std::make_unique<Authenticator>(&context_, auth_options, counters_);
  BERT_RETURN_IF_ERROR(auth_->Start(router_));
  router_.set(zmq::sockopt::zap_domain, "bert");
  router_.set(zmq::sockopt::handshake_ivl, options_.handshake_timeout_ms);
  if (options_.keys) {
    SetCurveServer(router_, *options_.keys);
  } else {
    LOG(WARNING) << "[coord] CURVE is off (--insecure): any host that reaches " << options_.bind
                 << " can register as a worker and read the batches";
  }
  try {
    router_.bind(options_.bind);
  } catch (const zmq::error_t& e) {
    return Status::IoError("--bind " + options_.bind + ": " + e.what());
  }
  builder_ = std::make_unique<BatchBuilder>(data_, geometry_, ledger_, options_.builder);
  BERT_RETURN_IF_ERROR(builder_->Start());
  return router_.get(zmq::sockopt::last_endpoint);
}

int Server::Run() {
  CHECK(builder_) << "Bind() first";
  start_ms_ = last_heartbeat_ms_ = last_progress_ms_ = MonotonicMs();
  last_progress_cursor_ = tracker_.cursor();
  for (uint32_t rank = 0; rank < geometry_.world_size; ++rank) RequestAhead(rank);
  while (true) {
    zmq::pollitem_t items[] = {{router_.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, builder_->ready_fd(), ZMQ_POLLIN, 0}};
    const int64_t until_heartbeat = last_heartbeat_ms_ + options_.heartbeat_interval_ms - MonotonicMs();
    const int64_t wait_ms = std::clamp<int64_t>(until_heartbeat, 0, kMaxPollMs);
    PollSockets(items, 2, static_cast<int>(wait_ms));
    if (items[1].revents & ZMQ_POLLIN) builder_->DrainReady();
    Frames frames;
    for (int n = 0; n < kMaxMessagesPerLoop && RecvMessage(router_, kMaxFramesPerMessage, &frames); ++n) {
      ++stats_.messages_received;
      HandleMessage(frames.parts.data(), frames.parts.size(), frames.dropped_frames);
    }
    SendBatches();
    const int64_t now_ms = MonotonicMs();
    if (now_ms - last_heartbeat_ms_ >= options_.heartbeat_interval_ms) SendHeartbeats(now_ms);
    const int exit_code = CheckRunState(now_ms);
    if (exit_code >= 0) return exit_code;
    MaybeLogProgress(now_ms, /*force=*/false);
  }
}

void Server::HandleMessage(zmq::message_t* parts, size_t num_parts, size_t dropped_frames) {
  const std::string identity = num_parts > 0 ? std::string(View(parts[0])) : std::string();
  // From a DEALER: [identity][envelope]. Workers send no payload frames.
  if (num_parts != 2 || dropped_frames > 0) {
    CountReject(Reject::kTooManyFrames, identity,
                std::to_string(num_parts + dropped_frames) + " frames, expected identity + envelope");
    return;
  }
  proto::Envelope envelope;
  std::string detail;
  Reject reason = ParseControlFrame(View(parts[1]), &envelope, &detail);
  if (reason != Reject::kNone) return CountReject(reason, identity, detail);
  reason = ValidateFromWorker(envelope, &detail);
  if (envelope.body_case() == proto::Envelope::kRegistration) {
    return HandleRegister(identity, envelope.registration(), reason, detail);
  }
  if (reason != Reject::kNone) return CountReject(reason, identity, detail);
  const std::optional<uint32_t> rank = registry_.RankOf(identity);
  if (!rank) return CountReject(Reject::kUnregisteredPeer, identity, "message before a successful Register");
  registry_.Touch(*rank, MonotonicMs());
  if (options_.board) options_.board->OnSeen(*rank, MonotonicMs());
  switch (envelope.body_case()) {
    case proto::Envelope::kCredit: return HandleCredit(*rank, envelope.credit());
    case proto::Envelope::kAck: return HandleAck(*rank, envelope.ack());
    case proto::Envelope::kShardDurable: return HandleShardDurable(*rank, envelope.shard_durable());
    case proto::Envelope::kHeartbeat:
      registry_.SetActivity(*rank, envelope.heartbeat(), MonotonicMs());
      if (options_.board) options_.board->OnHeartbeat(*rank, envelope.heartbeat());
      return;  // otherwise Touch() was its purpose
    default: return;
  }
}

void Server::HandleRegister(const std::string& identity, const proto::Register& request, Reject field_check,
                            const std::string& field_detail) {
  const bool known = registry_.RankOf(identity).has_value();
  std::string detail = field_detail;
  const Reject reason =
      field_check != Reject::kNone ? field_check : registry_.Register(identity, request, MonotonicMs(), &detail);
  proto::Envelope envelope = MakeEnvelope();
  proto::RegisterReply* reply = envelope.mutable_registration_reply();
  if (reason != Reject::kNone) {
    CountReject(reason, identity, "Register refused: " + detail);
    reply->set_ok(false);
    reply->set_reason(detail);
    SendEnvelope(router_, identity, envelope);
    return;
  }
  reply->set_ok(true);
  reply->set_run_id(options_.run_id);
  reply->set_start_step(stats_.start_step);
  reply->set_checkpoint(options_.resume_checkpoint);
  if (options_.committer != nullptr) reply->set_checkpoint_every(options_.checkpoint_every);
  reply->set_total_steps(options_.total_steps);
  reply->set_global_batch_size(geometry_.global_batch_size);
  reply->set_micro_batch_size(geometry_.micro_batch_size);
  reply->set_micro_batches_per_step(geometry_.micro_batches);
  reply->set_world_size(geometry_.world_size);
  reply->set_prefetch(options_.prefetch);
  reply->set_heartbeat_interval_ms(options_.heartbeat_interval_ms);
  reply->set_heartbeat_timeout_ms(options_.heartbeat_timeout_ms);
  reply->set_seed(data_.options.seed);
  reply->set_max_seq_len(data_.options.max_seq_len);
  reply->set_max_predictions(data_.options.masking.max_predictions);
  reply->set_masked_lm_prob(data_.options.masking.masked_lm_prob);
  reply->set_whole_word_masking(data_.options.masking.whole_word);
  reply->set_vocab_size(data_.vocab->vocab_size);
  SendEnvelope(router_, identity, envelope);
  if (known) return;  // a resent Register: same answer, no new credits
  streams_[request.rank()].credits = options_.prefetch;
  if (options_.board) options_.board->OnRegister(*registry_.Find(request.rank()), MonotonicMs());
  LOG(INFO) << "[coord] " << registry_.Find(request.rank())->Describe() << " registered, generation "
            << request.generation() << " (" << registry_.num_registered() << "/" << geometry_.world_size
            << " ranks); it starts at step " << stats_.start_step;
}

void Server::HandleCredit(uint32_t rank, const proto::Credit& credit) {
  RankStream& stream = streams_[rank];
  if (credit.credits() > stream.uncredited) {
    return CountReject(Reject::kExcessCredit, registry_.Find(rank)->identity,
                       "Credit of " + std::to_string(credit.credits()) + " but only " +
                           std::to_string(stream.uncredited) + " batches are uncredited");
  }
  stream.uncredited -= credit.credits();
  stream.credits += credit.credits();
}

void Server::HandleAck(uint32_t rank, const proto::Ack& ack) {
  const std::string& identity = registry_.Find(rank)->identity;
  if (ack.step() >= options_.total_steps || ack.micro() >= geometry_.micro_batches) {
    return CountReject(Reject::kBadField, identity,
                       "Ack of step " + std::to_string(ack.step()) + " micro " + std::to_string(ack.micro()) +
                           " is outside the run");
  }
  if (streams_[rank].unacked.erase({ack.step(), ack.micro()}) == 0) {
    return CountReject(Reject::kUnexpectedAck, identity,
                       "Ack of step " + std::to_string(ack.step()) + " micro " + std::to_string(ack.micro()) +
                           ", which is not in flight to rank " + std::to_string(rank));
  }
  if (ack.ends_run()) {
    const uint64_t end = ack.step() + 1;
    if (options_.time_budget_s <= 0) {
      return CountReject(Reject::kBadField, identity, "Ack.ends_run, but this run has no train.time_budget");
    }
    if (end != end_step_) {
      if (end_step_ != options_.total_steps) {
        return CountReject(Reject::kBadField, identity,
                           "Ack.ends_run at step " + std::to_string(end) + ", but the run ends at step " +
                               std::to_string(end_step_));
      }
      end_step_ = end;
      if (options_.committer != nullptr) options_.committer->Request(end_step_);
      if (options_.board) options_.board->OnEndStep(end_step_);
      LOG(INFO) << "[coord] time budget " << FormatTimeBudget(options_.time_budget_s) << " spent: step " << end_step_
                << " of at most " << options_.total_steps << " is the run's last; no batch after it is sent";
    }
  }
  ++stats_.acks;
  const bool cursor_moved = tracker_.Ack(ack.step());
  const Status recorded =
      ledger_->RecordAck(BatchKey{ack.step(), rank, ack.micro()}, ack.loss(), ack.step_time_ms(), ack.data_wait_ms(),
                         cursor_moved ? std::optional<uint64_t>(tracker_.cursor()) : std::nullopt);
  if (!recorded.ok() && fatal_.ok()) fatal_ = recorded;
  stats_.cursor = tracker_.cursor();
  if (options_.board) options_.board->OnAck(rank, ack, tracker_.cursor(), MonotonicMs());
}

void Server::HandleShardDurable(uint32_t rank, const proto::ShardDurable& shard) {
  const std::string& identity = registry_.Find(rank)->identity;
  if (options_.committer == nullptr) {
    return CountReject(Reject::kUnexpectedType, identity, "ShardDurable, but this run writes no checkpoints");
  }
  Result<std::optional<std::string>> committed = options_.committer->Report(rank, shard);
  if (options_.board && committed.ok()) options_.board->OnShardReported(shard.step());
  if (!committed.ok()) {
    if (committed.status().code() == Status::Code::kInvalidArgument) {
      return CountReject(Reject::kBadField, identity, committed.status().message());
    }
    LOG(ERROR) << "[coord] checkpoint of step " << shard.step() << " not committed: " << committed.status().message();
    // Without the final checkpoint the run cannot complete; an earlier one
    // only means a longer way back after a failure.
    if (shard.step() >= end_step_ && fatal_.ok()) fatal_ = committed.status();
    return;
  }
  if (!committed->has_value()) return;
  ++stats_.checkpoints_committed;
  stats_.last_checkpoint_step = shard.step();
  if (options_.board) options_.board->OnCheckpointCommitted(shard.step(), **committed);
  proto::Envelope envelope = MakeEnvelope();
  envelope.mutable_checkpoint_committed()->set_step(shard.step());
  envelope.mutable_checkpoint_committed()->set_name(**committed);
  SendToAll(envelope);
}

void Server::CountReject(Reject reason, const std::string& identity, const std::string& detail) {
  const uint64_t count = ++stats_.rejects[static_cast<size_t>(reason)];
  ++counters_->rejects[static_cast<size_t>(reason)];
  if (count <= kRejectsLoggedInFull || count % 1000 == 0) {
    LOG(WARNING) << "[coord] dropped a message from " << DescribePeer(identity) << ": " << detail << " ("
                 << RejectName(reason) << ", " << count << " so far)";
  }
}

std::string Server::DescribePeer(const std::string& identity) const {
  if (auto rank = registry_.RankOf(identity)) return registry_.Find(*rank)->Describe();
  static const char kHex[] = "0123456789abcdef";
  std::string hex = "unregistered peer 0x";
  for (unsigned char c : identity) hex += std::string{kHex[c >> 4], kHex[c & 15]};
  return hex;
}

void Server::Advance(BatchKey* key) const {
  if (++key->micro == geometry_.micro_batches) {
    key->micro = 0;
    ++key->step;
  }
}

void Server::RequestAhead(uint32_t rank) {
  RankStream& stream = streams_[rank];
  const uint64_t window = 2 * uint64_t{options_.prefetch};
  auto ahead = [&] {
    return (stream.next_request.step - stream.next_send.step) * geometry_.micro_batches + stream.next_request.micro -
           stream.next_send.micro;
  };
  while (stream.next_request.step < end_step_ && ahead() < window) {
    builder_->Request(stream.next_request);
    Advance(&stream.next_request);
  }
}

void Server::SendBatches() {
  for (uint32_t rank = 0; rank < geometry_.world_size; ++rank) {
    if (registry_.Find(rank) == nullptr) continue;
    const uint64_t end_step = stop_at_step_ > 0 ? std::min(stop_at_step_, end_step_) : end_step_;
    while (streams_[rank].credits > 0 && streams_[rank].next_send.step < end_step && SendNext(rank)) {
    }
  }
}

bool Server::SendNext(uint32_t rank) {
  RankStream& stream = streams_[rank];
  const uint64_t max_unacked =
      options_.max_unacked > 0 ? options_.max_unacked : 2 * (uint64_t{options_.prefetch} + geometry_.micro_batches);
  if (stream.unacked.size() >= max_unacked) return false;  // it credits without acking: it waits
  const BatchKey key = stream.next_send;
  std::optional<BuiltBatch> built = builder_->Take(key);
  if (!built) return false;
  if (!built->status.ok()) {
    if (fatal_.ok()) fatal_ = Status(built->status);
    return false;
  }
  proto::Envelope envelope = MakeEnvelope();
  proto::BatchHeader* header = envelope.mutable_batch();
  header->set_step(key.step);
  header->set_micro(key.micro);
  header->set_num_micro(geometry_.micro_batches);
  header->set_rank(rank);
  header->set_epoch(built->epoch);
  header->set_sample_begin(built->range.begin);
  header->set_sample_end(built->range.end);
  header->set_payload_bytes(built->payload.size());
  header->set_checksum(built->checksum);
  LedgerEntry entry;
  entry.epoch = built->epoch;
  entry.sample_begin = built->range.begin;
  entry.sample_end = built->range.end;
  entry.payload_bytes = built->payload.size();
  entry.payload_checksum = built->checksum;
  entry.dispatched_unix_ms = UnixMs();
  const uint64_t num_tokens = built->num_tokens;
  if (options_.board && key.micro == 0) options_.board->OnEpoch(key.step, built->epoch);
  if (!SendEnvelope(router_, registry_.Find(rank)->identity, envelope, &built->payload)) {
    builder_->PutBack(std::move(*built));  // peer unreachable or queue full: liveness decides
    return false;
  }
  const Status recorded = ledger_->RecordDispatch(key, entry);
  if (!recorded.ok() && fatal_.ok()) fatal_ = recorded;
  ++stats_.batches_sent;
  stats_.samples_sent += entry.sample_end - entry.sample_begin;
  stats_.bytes_sent += entry.payload_bytes;
  stats_.tokens_sent += num_tokens;
  --stream.credits;
  ++stream.uncredited;
  stream.unacked.insert({key.step, key.micro});
  Advance(&stream.next_send);
  RequestAhead(rank);
  return true;
}

void Server::SendToAll(const proto::Envelope& envelope) {
  for (const auto& [rank, info] : registry_.workers()) SendEnvelope(router_, info.identity, envelope);
}

void Server::SendHeartbeats(int64_t now_ms) {
  last_heartbeat_ms_ = now_ms;
  proto::Envelope envelope = MakeEnvelope();
  envelope.mutable_heartbeat()->set_sent_unix_ms(UnixMs());
  envelope.mutable_heartbeat()->set_step(tracker_.cursor());
  SendToAll(envelope);
}

}  // namespace bert
