#include "coordinator/checkpoint_committer.h"

#include <chrono>
#include <ctime>

#include <glog/logging.h>

#include "common/file_util.h"

namespace bert {
namespace {

std::string UtcNow() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

}  // namespace

CheckpointCommitter::CheckpointCommitter(CommitterOptions options, std::function<uint64_t(uint64_t)> epoch_of)
    : options_(std::move(options)), epoch_of_(std::move(epoch_of)), store_(options_.run_dir) {}

bool CheckpointCommitter::IsCheckpointStep(uint64_t step) const {
  if (step == 0 || step > options_.total_steps) return false;
  if (step == options_.total_steps || requested_.count(step) > 0) return true;
  if (requested_window_ && step >= requested_window_->first && step <= requested_window_->second) return true;
  return options_.every_steps > 0 && step % options_.every_steps == 0;
}

Result<std::optional<std::string>> CheckpointCommitter::Report(uint32_t rank, const proto::ShardDurable& shard) {
  const uint64_t step = shard.step();
  if (!IsCheckpointStep(step)) {
    return Status::InvalidArgument("ShardDurable.step: " + std::to_string(step) + " is not a checkpoint step");
  }
  if (step <= last_committed_) {
    return Status::InvalidArgument("ShardDurable.step: " + std::to_string(step) + " is already committed");
  }
  const std::string expected = ShardFileName(rank, options_.world_size);
  if (shard.file() != expected) {
    return Status::InvalidArgument("ShardDurable.file: " + shard.file() + ", expected " + expected);
  }
  ShardInfo info;
  info.file = shard.file();
  info.rank = rank;
  info.begin = shard.begin();
  info.end = shard.end();
  info.bytes = shard.bytes();
  info.xxh3 = shard.xxh3();
  if (!shard.rank_state_json().empty()) {
    info.rank_state = nlohmann::json::parse(shard.rank_state_json(), nullptr, /*allow_exceptions=*/false);
    if (info.rank_state.is_discarded() || !info.rank_state.is_object()) {
      return Status::InvalidArgument("ShardDurable.rank_state_json: not a JSON object");
    }
  }
  std::map<uint32_t, ShardInfo>& reports = reports_[step];
  if (!reports.emplace(rank, info).second) {
    return Status::InvalidArgument("ShardDurable: rank " + std::to_string(rank) + " reported step " +
                                   std::to_string(step) + " twice");
  }
  if (reports.size() < options_.world_size) return std::optional<std::string>();
  Result<std::string> committed = Commit(step);
  reports_.erase(step);
  if (!committed.ok()) return committed.status();
  return std::optional<std::string>(*committed);
}

Result<std::string> CheckpointCommitter::Commit(uint64_t step) {
  const auto start = std::chrono::steady_clock::now();
  Result<std::string> staging = store_.Staging(step);
  if (!staging.ok()) return staging.status();
  const std::string state_path = *staging + "/" + kRankZeroStateFile;
  Result<std::string> state_text = ReadFile(state_path);
  if (!state_text.ok()) return state_text.status();
  const nlohmann::json state = nlohmann::json::parse(*state_text, nullptr, /*allow_exceptions=*/false);
  if (state.is_discarded() || !state.is_object()) return Status::Corruption(state_path + ": not a JSON object");

  // rank0-state.json has the manifest's model-side fields; the coordinator
  // adds its own and the shard list.
  nlohmann::json j = state;
  j["format_version"] = kCheckpointFormatVersion;
  j["run_id"] = options_.run_id;
  j["step"] = step;
  j["epoch"] = epoch_of_(step);
  j["data_cursor"] = step;
  j["world_size"] = options_.world_size;
  j["config_yaml"] = options_.config_yaml;
  j["vocab_checksum"] = options_.vocab_checksum;
  j["created_at"] = UtcNow();
  nlohmann::json shards = nlohmann::json::array();
  for (const auto& [rank, info] : reports_[step]) {
    Manifest one;  // for its shard serialisation
    one.shards.push_back(info);
    shards.push_back(one.ToJson()["shards"][0]);
  }
  j["shards"] = shards;
  Result<Manifest> manifest = Manifest::FromJson(j, state_path + " + shard reports of step " + std::to_string(step));
  if (!manifest.ok()) return manifest.status();
  BERT_RETURN_IF_ERROR(store_.Commit(*manifest));
  last_committed_ = step;
  requested_.erase(step);
  if (requested_window_ && step >= requested_window_->first) requested_window_.reset();
  const std::string name = CheckpointStore::StepName(step);
  Status retained = store_.Retain(options_.keep_last, options_.keep_every, step + 1);
  if (!retained.ok()) LOG(WARNING) << "[coord] checkpoint retention: " << retained.message();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  LOG(INFO) << "[coord] committed checkpoint " << name << " (" << options_.world_size << " shards) in " << ms
            << " ms";
  return name;
}

}  // namespace bert
