// CheckpointStore: staging, commit, load with fallback, retention
// (checkpoint/checkpoint.h). The commit idiom is leveldb's: write a file,
// fsync it, rename it into place, fsync the directory.
#include "checkpoint/checkpoint.h"

#include <glog/logging.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <optional>
#include <set>
#include <thread>

#include "checkpoint/checkpoint_internal.h"
#include "common/file_util.h"

namespace bert {
namespace {

namespace fs = std::filesystem;
using namespace checkpoint_internal;  // NOLINT: the module's own internals

constexpr char kStagingPrefix[] = ".staging-";
constexpr char kDeletingPrefix[] = ".deleting-";  // a checkpoint Retain is removing
constexpr char kReplacedPrefix[] = ".replaced-";  // a stale commit that Commit is replacing
constexpr char kManifestFile[] = "manifest.json";
constexpr char kLatestFile[] = "latest";
constexpr size_t kMaxVerifyThreads = 8;

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string UtcNow() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

std::string Join(const std::vector<std::string>& lines, const char* separator) {
  std::string joined;
  for (const std::string& line : lines) joined += (joined.empty() ? "" : separator) + line;
  return joined;
}

// Removes a directory tree; IoError naming it.
Status RemoveTree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return Status::IoError(path + ": remove: " + ec.message());
  return Status::Ok();
}

Status Rename(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    return Status::IoError(from + ": rename to " + to + ": " + ErrnoText(errno));
  }
  return Status::Ok();
}

// Reads and validates DIR/manifest.json.
Result<Manifest> ReadManifest(const std::string& dir) {
  const std::string path = dir + "/" + kManifestFile;
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return Status::Corruption(text.status().message());
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(*text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for a number like 1e999
    return Status::Corruption(path + ": bad JSON: " + e.what());
  }
  return Manifest::FromJson(json, path);
}

// The manifest of checkpoint DIR of step `step`, with every shard's size,
// header and checksum verified. Errors name the file at fault.
Result<Manifest> VerifyCheckpoint(const std::string& dir, uint64_t step) {
  Result<Manifest> manifest = ReadManifest(dir);
  if (!manifest.ok()) return manifest.status();
  if (manifest->step != step) {
    return Status::Corruption(dir + "/" + kManifestFile + ": step: " + std::to_string(manifest->step) +
                              " but the directory is " + CheckpointStore::StepName(step));
  }
  // Shards are verified in parallel: reading is the cost, and several
  // streams keep a disk or a parallel filesystem busier than one. The error
  // reported is the lowest-ranked shard's, whatever the timing.
  const size_t num_shards = manifest->shards.size();
  const size_t num_threads = std::min<size_t>({num_shards, kMaxVerifyThreads,
                                               std::max(1u, std::thread::hardware_concurrency())});
  std::vector<Status> statuses(num_shards);
  std::atomic<size_t> next{0};
  auto verify = [&] {
    for (size_t r = next++; r < num_shards; r = next++) {
      statuses[r] = VerifyShard(dir + "/" + manifest->shards[r].file, *manifest, manifest->shards[r]);
    }
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < num_threads; ++t) threads.emplace_back(verify);
  verify();
  for (std::thread& thread : threads) thread.join();
  for (const Status& status : statuses) BERT_RETURN_IF_ERROR(status);
  return manifest;
}

// Whether DIR already holds a commit of `manifest`: same step and the same
// shard files, sizes and checksums (so the same contents).
bool HoldsCommitOf(const std::string& dir, const Manifest& manifest) {
  Result<Manifest> committed = ReadManifest(dir);
  if (!committed.ok() || committed->step != manifest.step || committed->shards.size() != manifest.shards.size()) {
    return false;
  }
  for (size_t r = 0; r < manifest.shards.size(); ++r) {
    const ShardInfo &a = committed->shards[r], &b = manifest.shards[r];
    if (a.file != b.file || a.bytes != b.bytes || a.xxh3 != b.xxh3) return false;
  }
  return true;
}

// The name `latest` holds, trimmed; nullopt when there is no `latest`.
std::optional<std::string> ReadLatestName(const std::string& checkpoints_dir) {
  Result<std::string> text = ReadFile(checkpoints_dir + "/" + kLatestFile);
  if (!text.ok()) return std::nullopt;
  return text->substr(0, text->find_last_not_of(" \n\r\t") + 1);
}

// The step `latest` names; nullopt when there is none or it is garbled.
std::optional<uint64_t> ReadLatestStep(const std::string& checkpoints_dir) {
  std::optional<std::string> name = ReadLatestName(checkpoints_dir);
  uint64_t step = 0;
  if (!name || !checkpoint_internal::ParseStepName(*name, "", &step)) return std::nullopt;
  return step;
}

// Every shard the manifest lists is in the staging directory with its size.
Status CheckStaged(const std::string& staging, const Manifest& manifest) {
  if (!IsDirectory(staging)) {
    return Status::FailedPrecondition(staging + ": no such directory (nothing staged for " +
                                      CheckpointStore::StepName(manifest.step) + ")");
  }
  for (size_t r = 0; r < manifest.shards.size(); ++r) {
    const ShardInfo& shard = manifest.shards[r];
    const std::string path = staging + "/" + shard.file;
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      return Status::FailedPrecondition(path + ": " + ErrnoText(errno) + " (shards[" + std::to_string(r) +
                                        "] of the manifest)");
    }
    if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != shard.bytes) {
      return Status::FailedPrecondition(path + ": size " + std::to_string(st.st_size) + " != manifest's " +
                                        std::to_string(shard.bytes) + " (shards[" + std::to_string(r) + "])");
    }
  }
  return Status::Ok();
}

}  // namespace

namespace checkpoint_internal {

bool ParseStepName(const std::string& name, const std::string& prefix, uint64_t* step) {
  const std::string head = prefix + "step-";
  if (name.compare(0, head.size(), head) != 0 || name.size() - head.size() < 6) return false;
  uint64_t value = 0;
  for (size_t i = head.size(); i < name.size(); ++i) {
    const char c = name[i];
    if (c < '0' || c > '9') return false;
    if (__builtin_mul_overflow(value, uint64_t{10}, &value) ||
        __builtin_add_overflow(value, static_cast<uint64_t>(c - '0'), &value)) {
      return false;
    }
  }
  // Only the canonical spelling: "step-0000100" is not step 100's directory.
  if (prefix + CheckpointStore::StepName(value) != name) return false;
  *step = value;
  return true;
}

}  // namespace checkpoint_internal

CheckpointStore::CheckpointStore(std::string run_dir)
    : run_dir_(std::move(run_dir)), dir_(run_dir_ + "/checkpoints") {}

std::string CheckpointStore::StepName(uint64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step-%06llu", static_cast<unsigned long long>(step));
  return name;
}

Result<std::string> CheckpointStore::Staging(uint64_t step) {
  if (!IsDirectory(dir_)) {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec) return Status::IoError(dir_ + ": cannot create: " + ec.message());
    // The new directory's own entry, so commits inside it survive a crash.
    BERT_RETURN_IF_ERROR(FsyncDirectory(run_dir_));
  }
  const std::string staging = dir_ + "/" + kStagingPrefix + StepName(step);
  if (::mkdir(staging.c_str(), 0755) != 0 && !(errno == EEXIST && IsDirectory(staging))) {
    return Status::IoError(staging + ": cannot create: " + ErrnoText(errno));
  }
  return staging;
}

Status CheckpointStore::Commit(const Manifest& manifest_in) {
  Manifest manifest = manifest_in;
  if (manifest.created_at.empty()) manifest.created_at = UtcNow();
  const nlohmann::json json = manifest.ToJson();
  const std::string name = StepName(manifest.step);
  const std::string final_dir = dir_ + "/" + name;
  const std::string staging = dir_ + "/" + kStagingPrefix + name;
  // The same validation a load applies: never commit what cannot be loaded.
  Result<Manifest> valid = Manifest::FromJson(json, "manifest of " + name);
  if (!valid.ok()) return Status::InvalidArgument(valid.status().message());

  const Status staged = CheckStaged(staging, manifest);
  if (!staged.ok()) {
    if (IsDirectory(final_dir) && HoldsCommitOf(final_dir, manifest)) {
      // Already committed (a retried Commit). Finish what a crash may have
      // cut short: a leftover staging directory and `latest`, never moving
      // `latest` back to an older step.
      if (IsDirectory(staging)) BERT_RETURN_IF_ERROR(RemoveTree(staging));
      std::optional<uint64_t> latest = ReadLatestStep(dir_);
      if (latest && *latest >= manifest.step) return Status::Ok();
      return WriteFileAtomic(dir_ + "/" + kLatestFile, name + "\n");
    }
    return staged;
  }
  // manifest.json last: WriteFileAtomic fsyncs it and the staging directory.
  BERT_RETURN_IF_ERROR(WriteFileAtomic(staging + "/" + kManifestFile, json.dump(2) + "\n"));
  // A complete staging directory wins over a committed directory of the same
  // step: that one is stale, damaged (a load fell back past it and training
  // reached this step again, maybe with bit-identical shards) or left by an
  // earlier life of the run.
  const std::string replaced = dir_ + "/" + kReplacedPrefix + name;
  const bool replacing = IsDirectory(final_dir);
  if (replacing) {
    BERT_RETURN_IF_ERROR(RemoveTree(replaced));
    BERT_RETURN_IF_ERROR(Rename(final_dir, replaced));
    LOG(WARNING) << "[ckpt] replacing the stale " << final_dir;
  }
  BERT_RETURN_IF_ERROR(Rename(staging, final_dir));
  // The step directory is durable before `latest` names it.
  BERT_RETURN_IF_ERROR(FsyncDirectory(dir_));
  BERT_RETURN_IF_ERROR(WriteFileAtomic(dir_ + "/" + kLatestFile, name + "\n"));
  if (replacing) {
    Status removed = RemoveTree(replaced);
    if (!removed.ok()) LOG(WARNING) << "[ckpt] " << removed.message();
  }
  return Status::Ok();
}

Result<LoadedCheckpoint> CheckpointStore::LoadLatest(std::vector<std::string>* skipped) const {
  std::vector<std::string> passed_over;
  const std::vector<uint64_t> steps = CommittedSteps();
  // `latest` first, then the older checkpoints, newest first. A step newer
  // than `latest` was never fully committed (or belongs to an abandoned
  // future of the run) and is not a candidate.
  std::vector<uint64_t> candidates(steps.rbegin(), steps.rend());
  const std::string latest_path = dir_ + "/" + kLatestFile;
  if (std::optional<std::string> name = ReadLatestName(dir_)) {
    uint64_t latest_step = 0;
    if (ParseStepName(*name, "", &latest_step)) {
      candidates.erase(std::remove_if(candidates.begin(), candidates.end(),
                                      [&](uint64_t step) { return step >= latest_step; }),
                       candidates.end());
      candidates.insert(candidates.begin(), latest_step);
    } else {
      passed_over.push_back(latest_path + ": \"" + name->substr(0, 40) + "\" is not a checkpoint name");
    }
  }
  bool any_found = false;
  for (uint64_t step : candidates) {
    const std::string dir = dir_ + "/" + StepName(step);
    if (!IsDirectory(dir)) {
      passed_over.push_back(dir + ": named by " + latest_path + " but missing");
    } else {
      any_found = true;
      Result<Manifest> manifest = VerifyCheckpoint(dir, step);
      if (manifest.ok()) {
        for (const std::string& line : passed_over) LOG(WARNING) << "[ckpt] skipped: " << line;
        if (skipped != nullptr) *skipped = passed_over;
        return LoadedCheckpoint{dir, std::move(manifest).value()};
      }
      passed_over.push_back(manifest.status().message());
    }
  }
  for (const std::string& line : passed_over) LOG(WARNING) << "[ckpt] skipped: " << line;
  if (skipped != nullptr) *skipped = passed_over;
  if (!any_found) {
    const std::string why = passed_over.empty() ? "" : " (" + Join(passed_over, "; ") + ")";
    return Status::NotFound(dir_ + ": no checkpoint" + why);
  }
  return Status::Corruption(dir_ + ": no good checkpoint: " + Join(passed_over, "; "));
}

std::vector<uint64_t> CheckpointStore::CommittedSteps() const {
  std::vector<uint64_t> steps;
  std::error_code ec;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    uint64_t step = 0;
    std::error_code type_ec;
    if (ParseStepName(it->path().filename().string(), "", &step) && it->is_directory(type_ec)) steps.push_back(step);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

Status CheckpointStore::Retain(int keep_last, uint64_t keep_every, uint64_t protect_from) {
  if (keep_last < 0) return Status::InvalidArgument("Retain: keep_last " + std::to_string(keep_last) + " < 0");
  const std::vector<uint64_t> steps = CommittedSteps();
  std::set<uint64_t> keep(steps.end() - std::min<size_t>(steps.size(), keep_last), steps.end());
  for (uint64_t step : steps) {
    if (keep_every > 0 && step % keep_every == 0) keep.insert(step);
  }
  if (std::optional<uint64_t> latest = ReadLatestStep(dir_)) keep.insert(*latest);
  // A checkpoint disappears by one rename (never half deleted under its own
  // name, which a load would report as damaged); the files go afterwards.
  std::vector<std::string> doomed;
  Status first_error;
  auto note = [&first_error](const Status& status) {
    if (!status.ok() && first_error.ok()) first_error = status;
  };
  for (uint64_t step : steps) {
    if (keep.count(step) > 0) continue;
    const std::string trash = dir_ + "/" + kDeletingPrefix + StepName(step);
    note(RemoveTree(trash));  // a leftover of the same name would block the rename
    Status renamed = Rename(dir_ + "/" + StepName(step), trash);
    note(renamed);
    if (renamed.ok()) doomed.push_back(trash);
  }
  if (!doomed.empty()) note(FsyncDirectory(dir_));
  std::error_code ec;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    uint64_t step = 0;
    const bool abandoned_staging = ParseStepName(name, kStagingPrefix, &step) && step < protect_from;
    const bool leftover = name.rfind(kDeletingPrefix, 0) == 0 || name.rfind(kReplacedPrefix, 0) == 0;
    // (A trash directory renamed above is listed again: removing twice is harmless.)
    if (abandoned_staging || leftover) doomed.push_back(it->path().string());
  }
  for (const std::string& path : doomed) note(RemoveTree(path));
  return first_error;
}

}  // namespace bert
