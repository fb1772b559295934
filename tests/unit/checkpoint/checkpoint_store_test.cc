// CheckpointStore (checkpoint/checkpoint.h): commit, load with fallback past
// damaged checkpoints, idempotent and refusing commits, retention.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <map>

#include "checkpoint/checkpoint.h"
#include "common/file_util.h"
#include "unit/checkpoint/checkpoint_test_util.h"

namespace bert {
namespace {

namespace fs = std::filesystem;
using testing::Arrays;
using testing::TempDir;

bool Exists(const std::string& path) { return fs::exists(path); }

std::string Latest(const CheckpointStore& store) {
  Result<std::string> text = ReadFile(store.dir() + "/latest");
  return text.ok() ? *text : "(none)";
}

class StoreTest : public ::testing::Test {
 protected:
  StoreTest() : store_(dir_.path()) {}

  // Same step and seed, same data: as deterministic training would write.
  void Commit(uint64_t step, uint32_t world_size = 2, uint64_t total = 1001, uint64_t seed = 0) {
    arrays_[step] = Arrays::Random(total, step + seed);
    const Status status = testing::WriteCheckpoint(&store_, step, world_size, arrays_[step]);
    ASSERT_TRUE(status.ok()) << status.message();
  }
  std::string StepDir(uint64_t step) const { return store_.dir() + "/" + CheckpointStore::StepName(step); }
  std::string Shard(uint64_t step, uint32_t rank, uint32_t world_size = 2) const {
    return StepDir(step) + "/" + ShardFileName(rank, world_size);
  }
  // LoadLatest must return `step`, with its data intact.
  void ExpectLoads(uint64_t step, std::vector<std::string>* skipped = nullptr) {
    Result<LoadedCheckpoint> loaded = store_.LoadLatest(skipped);
    ASSERT_TRUE(loaded.ok()) << loaded.status().message();
    EXPECT_EQ(loaded->manifest.step, step);
    EXPECT_EQ(loaded->dir, StepDir(step));
    const std::vector<float>& expected = arrays_[step].sections[2];
    std::vector<float> out(expected.size());
    ASSERT_TRUE(ReadRange(*loaded, "exp_avg_sq", 0, out.size(), out.data()).ok());
    EXPECT_EQ(std::memcmp(out.data(), expected.data(), out.size() * sizeof(float)), 0);
  }

  TempDir dir_;
  CheckpointStore store_;
  std::map<uint64_t, Arrays> arrays_;
};

TEST(CheckpointStoreNames, StepNameHasAtLeastSixDigits) {
  EXPECT_EQ(CheckpointStore::StepName(100), "step-000100");
  EXPECT_EQ(CheckpointStore::StepName(0), "step-000000");
  EXPECT_EQ(CheckpointStore::StepName(12345678), "step-12345678");
  EXPECT_EQ(CheckpointStore("/r").dir(), "/r/checkpoints");
}

TEST_F(StoreTest, NoCheckpointIsNotFound) {
  EXPECT_EQ(store_.LoadLatest().status().code(), Status::Code::kNotFound);
  // A staged but uncommitted checkpoint does not exist either.
  ASSERT_TRUE(testing::StageCheckpoint(&store_, 100, 2, Arrays::Random(50, 1)).ok());
  std::vector<std::string> skipped;
  EXPECT_EQ(store_.LoadLatest(&skipped).status().code(), Status::Code::kNotFound);
  EXPECT_TRUE(skipped.empty());
  EXPECT_TRUE(store_.CommittedSteps().empty());
}

TEST_F(StoreTest, CommitThenLoad) {
  Commit(100);
  EXPECT_EQ(Latest(store_), "step-000100\n");
  EXPECT_FALSE(Exists(store_.dir() + "/.staging-step-000100"));
  EXPECT_FALSE(Exists(store_.dir() + "/latest.tmp"));
  EXPECT_EQ(store_.CommittedSteps(), std::vector<uint64_t>({100}));
  std::vector<std::string> skipped = {"stale"};
  ExpectLoads(100, &skipped);
  EXPECT_TRUE(skipped.empty());
  Result<LoadedCheckpoint> loaded = store_.LoadLatest();
  EXPECT_EQ(loaded->manifest.ToJson(), testing::TestManifest(100, 2, 1001, loaded->manifest.shards).ToJson());
  EXPECT_EQ(loaded->manifest.shards[1].rank_state["dropout_seed"], 1001);
  Commit(200);
  EXPECT_EQ(Latest(store_), "step-000200\n");
  ExpectLoads(200);
  EXPECT_EQ(store_.CommittedSteps(), std::vector<uint64_t>({100, 200}));
}

TEST_F(StoreTest, CommitFillsInCreatedAt) {
  Result<Manifest> manifest = testing::StageCheckpoint(&store_, 100, 1, Arrays::Random(10, 1));
  ASSERT_TRUE(manifest.ok());
  manifest->created_at.clear();
  ASSERT_TRUE(store_.Commit(*manifest).ok());
  Result<LoadedCheckpoint> loaded = store_.LoadLatest();
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->manifest.created_at.size(), 20u) << loaded->manifest.created_at;  // 2024-01-02T03:04:05Z
}

// Each kind of damage to the newest checkpoint: LoadLatest falls back to the
// previous good one and reports the damaged file in one line.
TEST_F(StoreTest, LoadFallsBackPastEachKindOfDamage) {
  auto shard = [](uint32_t rank) { return "/checkpoints/step-000200/" + ShardFileName(rank, 2); };
  const std::string manifest = "/checkpoints/step-000200/manifest.json";
  const std::vector<std::pair<const char*, std::function<void(const std::string&)>>> damages = {
      {"truncated shard", [&](const std::string& run) { ::truncate((run + shard(1)).c_str(), 1000); }},
      {"flipped data byte", [&](const std::string& run) { testing::FlipByte(run + shard(1), 3000); }},
      {"missing shard", [&](const std::string& run) { fs::remove(run + shard(0)); }},
      {"missing manifest", [&](const std::string& run) { fs::remove(run + manifest); }},
      {"bad JSON", [&](const std::string& run) { testing::WriteBytes(run + manifest, "{\"step\": 200,"); }},
      {"format version",
       [&](const std::string& run) {
         nlohmann::json j = nlohmann::json::parse(testing::ReadBytes(run + manifest));
         j["format_version"] = 2;
         testing::WriteBytes(run + manifest, j.dump());
       }},
      {"shards swapped (header says another rank)",
       [&](const std::string& run) {
         fs::rename(run + shard(0), run + "/tmp-shard");
         fs::rename(run + shard(1), run + shard(0));
         fs::rename(run + "/tmp-shard", run + shard(1));
       }},
      {"step of another checkpoint",
       [&](const std::string& run) {
         fs::copy_file(run + "/checkpoints/step-000100/manifest.json", run + manifest,
                       fs::copy_options::overwrite_existing);
       }},
  };
  const std::vector<std::string> expected = {
      shard(1) + ": size 1000 != manifest's " + std::to_string(ShardFileBytes(testing::TestSections(), 500)) +
          " (truncated)",
      shard(1) + ": xxh3 ",
      shard(0) + ": cannot open: No such file or directory",
      manifest + ": cannot open: No such file or directory",
      manifest + ": bad JSON: ",
      manifest + ": format_version: 2 is not supported (this build reads version 1)",
      shard(0) + ": header rank is 1, the manifest says 0",
      manifest + ": step: 100 but the directory is step-000200",
  };
  for (size_t i = 0; i < damages.size(); ++i) {
    TempDir run;
    CheckpointStore store(run.path());
    const Arrays arrays = Arrays::Random(1000, i);  // even: both shards have the same size
    ASSERT_TRUE(testing::WriteCheckpoint(&store, 100, 2, arrays).ok());
    ASSERT_TRUE(testing::WriteCheckpoint(&store, 200, 2, Arrays::Random(1000, i + 50)).ok());
    damages[i].second(run.path());
    std::vector<std::string> skipped;
    Result<LoadedCheckpoint> loaded = store.LoadLatest(&skipped);
    ASSERT_TRUE(loaded.ok()) << damages[i].first << ": " << loaded.status().message();
    EXPECT_EQ(loaded->manifest.step, 100u) << damages[i].first;
    ASSERT_EQ(skipped.size(), 1u) << damages[i].first;
    EXPECT_EQ(skipped[0].rfind(run.path() + expected[i], 0), 0u) << damages[i].first << ": " << skipped[0];
    EXPECT_EQ(skipped[0].find('\n'), std::string::npos) << skipped[0];
  }
}

TEST_F(StoreTest, FlippedByteNamesBothChecksums) {
  Commit(100);
  Commit(200);
  testing::FlipByte(Shard(200, 0), 500);
  std::vector<std::string> skipped;
  ExpectLoads(100, &skipped);
  ASSERT_EQ(skipped.size(), 1u);
  Result<std::string> actual = FileChecksumHex(Shard(200, 0));
  ASSERT_TRUE(actual.ok());
  EXPECT_NE(skipped[0].find(Shard(200, 0) + ": xxh3 " + *actual + " != manifest's "), std::string::npos)
      << skipped[0];
}

TEST_F(StoreTest, OnlyDamagedCheckpointsIsAnErrorNamingEach) {
  Commit(100);
  Commit(200);
  testing::FlipByte(Shard(100, 1), 100);
  ::truncate(Shard(200, 0).c_str(), 10);
  std::vector<std::string> skipped;
  Result<LoadedCheckpoint> loaded = store_.LoadLatest(&skipped);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), Status::Code::kCorruption);
  EXPECT_EQ(skipped.size(), 2u);
  const std::string& message = loaded.status().message();
  EXPECT_NE(message.find(Shard(200, 0) + ": size 10"), std::string::npos) << message;
  EXPECT_NE(message.find(Shard(100, 1) + ": xxh3"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos);
}

TEST_F(StoreTest, LatestNamingAMissingCheckpointFallsBack) {
  Commit(100);
  Commit(200);
  fs::remove_all(StepDir(200));
  std::vector<std::string> skipped;
  ExpectLoads(100, &skipped);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0], StepDir(200) + ": named by " + store_.dir() + "/latest but missing");
}

TEST_F(StoreTest, GarbledLatestFallsBackToTheNewestStep) {
  Commit(100);
  Commit(200);
  testing::WriteBytes(store_.dir() + "/latest", "step-2\n");
  std::vector<std::string> skipped;
  ExpectLoads(200, &skipped);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find("\"step-2\" is not a checkpoint name"), std::string::npos);
  fs::remove(store_.dir() + "/latest");
  ExpectLoads(200);
}

// A step directory newer than `latest` was renamed in but `latest` never
// moved to it (a crash inside Commit): the commit is not complete, and
// `latest` decides.
TEST_F(StoreTest, StepNewerThanLatestIsNotLoaded) {
  Commit(100);
  Commit(200);
  testing::WriteBytes(store_.dir() + "/latest", "step-000100\n");
  ExpectLoads(100);
}

TEST_F(StoreTest, CommitRefusesAMissingShardAndShowsNothing) {
  Commit(100);
  Result<Manifest> manifest = testing::StageCheckpoint(&store_, 200, 2, Arrays::Random(1001, 9));
  ASSERT_TRUE(manifest.ok());
  const std::string staged = store_.dir() + "/.staging-step-000200/" + ShardFileName(1, 2);
  fs::remove(staged);
  const Status status = store_.Commit(*manifest);
  EXPECT_EQ(status.code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(status.message(), staged + ": No such file or directory (shards[1] of the manifest)");
  EXPECT_FALSE(Exists(StepDir(200)));
  EXPECT_FALSE(Exists(store_.dir() + "/.staging-step-000200/manifest.json"));
  EXPECT_EQ(Latest(store_), "step-000100\n");
  ExpectLoads(100);
}

TEST_F(StoreTest, CommitRefusesAShardOfTheWrongSize) {
  Commit(100);
  Result<Manifest> manifest = testing::StageCheckpoint(&store_, 200, 2, Arrays::Random(1001, 9));
  ASSERT_TRUE(manifest.ok());
  const std::string staged = store_.dir() + "/.staging-step-000200/" + ShardFileName(0, 2);
  ::truncate(staged.c_str(), 100);
  const Status status = store_.Commit(*manifest);
  EXPECT_EQ(status.code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(status.message().rfind(staged + ": size 100 != manifest's ", 0), 0u) << status.message();
  EXPECT_FALSE(Exists(StepDir(200)));
  EXPECT_EQ(Latest(store_), "step-000100\n");
}

TEST_F(StoreTest, CommitRefusesAnInvalidManifest) {
  Result<Manifest> manifest = testing::StageCheckpoint(&store_, 200, 2, Arrays::Random(1001, 9));
  ASSERT_TRUE(manifest.ok());
  manifest->shards[1].end = 1000;
  const Status status = store_.Commit(*manifest);
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(status.message().find("shards[1].end: 1000"), std::string::npos) << status.message();
  EXPECT_FALSE(Exists(StepDir(200)));
  EXPECT_FALSE(Exists(store_.dir() + "/latest"));
}

TEST_F(StoreTest, CommitWithNothingStagedFails) {
  const Manifest manifest = testing::TestManifest(300, 1, 10, {});
  Manifest one_shard = manifest;
  one_shard.shards.push_back({ShardFileName(0, 1), 0, 0, 10, ShardFileBytes(testing::TestSections(), 10),
                              "0123456789abcdef", {}});
  const Status status = store_.Commit(one_shard);
  EXPECT_EQ(status.code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(status.message().find(".staging-step-000300: no such directory"), std::string::npos) << status.message();
}

TEST_F(StoreTest, CommitIsIdempotent) {
  Result<Manifest> manifest = testing::StageCheckpoint(&store_, 100, 2, Arrays::Random(1001, 100));
  ASSERT_TRUE(manifest.ok());
  arrays_[100] = Arrays::Random(1001, 100);
  ASSERT_TRUE(store_.Commit(*manifest).ok());
  ASSERT_TRUE(store_.Commit(*manifest).ok());
  ExpectLoads(100);
  // A staging directory created again after the commit (a retry) is cleaned.
  ASSERT_TRUE(store_.Staging(100).ok());
  ASSERT_TRUE(store_.Commit(*manifest).ok());
  EXPECT_FALSE(Exists(store_.dir() + "/.staging-step-000100"));
  Commit(200);
  // Committing 100 again does not move `latest` back.
  ASSERT_TRUE(store_.Commit(*manifest).ok());
  EXPECT_EQ(Latest(store_), "step-000200\n");
}

// A crash between the rename and `latest`: committing again finishes it.
TEST_F(StoreTest, RecommitFinishesACommitCutShortBeforeLatest) {
  Commit(100);
  Result<Manifest> manifest = testing::StageCheckpoint(&store_, 200, 2, Arrays::Random(1001, 200));
  arrays_[200] = Arrays::Random(1001, 200);
  ASSERT_TRUE(manifest.ok());
  ASSERT_TRUE(store_.Commit(*manifest).ok());
  testing::WriteBytes(store_.dir() + "/latest", "step-000100\n");
  ASSERT_TRUE(store_.Commit(*manifest).ok());
  EXPECT_EQ(Latest(store_), "step-000200\n");
  ExpectLoads(200);
}

// After falling back from a damaged step 200, training reaches step 200
// again: the new commit replaces the damaged directory. Regression: with
// deterministic training the new shards are bit-identical, so the damaged
// directory's manifest matches the new one exactly; Commit once took it for
// "already committed" and threw the good shards away.
TEST_F(StoreTest, CommitReplacesADamagedCheckpointOfTheSameStep) {
  for (uint64_t seed : {0, 7}) {  // identical data again, then different data
    Commit(100);
    Commit(200);
    testing::FlipByte(Shard(200, 1), 2000);
    ExpectLoads(100);
    Commit(200, 2, 1001, seed);
    std::vector<std::string> skipped;
    ExpectLoads(200, &skipped);
    EXPECT_TRUE(skipped.empty()) << skipped[0];
    EXPECT_FALSE(Exists(store_.dir() + "/.replaced-step-000200"));
  }
}

TEST_F(StoreTest, ChangingTheWorldSizeBetweenCheckpoints) {
  Commit(100, 3);
  Commit(200, 5);
  ExpectLoads(200);
  fs::remove(Shard(200, 4, 5));
  ExpectLoads(100);
}

TEST_F(StoreTest, RetainKeepsLastEveryAndLatest) {
  for (uint64_t step = 100; step <= 1000; step += 100) Commit(step, 1, 10);
  testing::WriteBytes(store_.dir() + "/latest", "step-000300\n");  // say, a rollback
  ASSERT_TRUE(store_.Staging(50).ok());
  ASSERT_TRUE(store_.Staging(1100).ok());
  ASSERT_TRUE(store_.Staging(1200).ok());
  fs::create_directory(store_.dir() + "/.deleting-step-000042");  // left by a crash inside Retain
  ASSERT_TRUE(store_.Retain(3, 500, 1100).ok());
  EXPECT_EQ(store_.CommittedSteps(), std::vector<uint64_t>({300, 500, 800, 900, 1000}));
  EXPECT_FALSE(Exists(store_.dir() + "/.staging-step-000050"));
  EXPECT_TRUE(Exists(store_.dir() + "/.staging-step-001100"));
  EXPECT_TRUE(Exists(store_.dir() + "/.staging-step-001200"));
  EXPECT_FALSE(Exists(store_.dir() + "/.deleting-step-000042"));
  for (const auto& entry : fs::directory_iterator(store_.dir())) {
    EXPECT_NE(entry.path().filename().string().rfind(".deleting-", 0), 0u) << entry.path();
  }
  ExpectLoads(300);

  ASSERT_TRUE(store_.Retain(0, 0, 1100).ok());
  EXPECT_EQ(store_.CommittedSteps(), std::vector<uint64_t>({300}));  // `latest` always stays
  ExpectLoads(300);
  ASSERT_TRUE(store_.Retain(1, 0, 2000).ok());
  EXPECT_FALSE(Exists(store_.dir() + "/.staging-step-001100"));
  EXPECT_EQ(store_.Retain(-1, 0, 0).code(), Status::Code::kInvalidArgument);
}

TEST_F(StoreTest, RetainOnAnEmptyStore) {
  EXPECT_TRUE(store_.Retain(2, 0, 0).ok());
  EXPECT_TRUE(store_.CommittedSteps().empty());
}

// A full disk while the manifest is written: Commit fails naming the file,
// nothing is renamed, and once there is space again the commit succeeds.
TEST(CheckpointStoreFullDisk, CommitOnAFullDiskShowsNothingThenSucceeds) {
  testing::SmallTmpfs tmpfs;
  TempDir fallback;
  const std::string run = tmpfs.mounted() ? tmpfs.path() : fallback.path();
  CheckpointStore store(run);
  const Arrays arrays = Arrays::Random(20000, 1);  // 2 x 120 kB of shards
  Result<Manifest> manifest = testing::StageCheckpoint(&store, 100, 2, arrays);
  ASSERT_TRUE(manifest.ok()) << manifest.status().message();
  const std::string staging = store.dir() + "/.staging-step-000100";
  const std::string filler = run + "/filler";
  if (tmpfs.mounted()) {
    testing::FillUp(filler);
  } else {
    std::fprintf(stderr, "no tmpfs (%s): the manifest goes to /dev/full\n", tmpfs.error().c_str());
    ASSERT_EQ(::symlink("/dev/full", (staging + "/manifest.json.tmp").c_str()), 0);
  }
  const Status status = store.Commit(*manifest);
  EXPECT_EQ(status.code(), Status::Code::kIoError);
  EXPECT_EQ(status.message(), staging + "/manifest.json.tmp: write: No space left on device");
  EXPECT_FALSE(Exists(store.dir() + "/step-000100"));
  EXPECT_FALSE(Exists(store.dir() + "/latest"));
  EXPECT_EQ(store.LoadLatest().status().code(), Status::Code::kNotFound);

  fs::remove(filler);
  fs::remove(staging + "/manifest.json.tmp");
  ASSERT_TRUE(store.Commit(*manifest).ok());
  Result<LoadedCheckpoint> loaded = store.LoadLatest();
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ(loaded->manifest.step, 100u);
}

}  // namespace
}  // namespace bert
