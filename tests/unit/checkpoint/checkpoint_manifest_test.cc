// Manifest (checkpoint/checkpoint.h): the resharding arithmetic, JSON round
// trip, and validation errors that name the source and the field.
#include <gtest/gtest.h>

#include <functional>

#include "checkpoint/checkpoint.h"
#include "unit/checkpoint/checkpoint_test_util.h"

namespace bert {
namespace {

using nlohmann::json;

TEST(ShardRanges, TileEveryTotalForEveryWorldSize) {
  for (uint64_t total = 0; total <= 50; ++total) {
    for (uint32_t world = 1; world <= 16; ++world) {
      const std::vector<ShardRange> ranges = ShardRanges(total, world);
      ASSERT_EQ(ranges.size(), world);
      uint64_t next = 0;
      for (uint32_t r = 0; r < world; ++r) {
        EXPECT_EQ(ranges[r].rank, r);
        EXPECT_EQ(ranges[r].begin, next) << total << "/" << world;
        // The first total % world ranks hold one element more.
        EXPECT_EQ(ranges[r].size(), total / world + (r < total % world ? 1 : 0)) << total << "/" << world;
        next = ranges[r].end;
      }
      EXPECT_EQ(next, total);
    }
  }
}

TEST(ShardRanges, LargeTotalsDoNotOverflow) {
  const uint64_t total = (uint64_t{1} << 40) + 3;
  const std::vector<ShardRange> ranges = ShardRanges(total, 7);
  EXPECT_EQ(ranges.back().end, total);
  EXPECT_EQ(ranges[0].size(), total / 7 + 1);
}

TEST(ShardFiles, NameAndSize) {
  EXPECT_EQ(ShardFileName(1, 2), "shard-00001-of-00002.bin");
  EXPECT_EQ(ShardFileName(12, 128), "shard-00012-of-00128.bin");
  // 40 fixed header bytes, then (4 + name) per section, then the floats.
  EXPECT_EQ(ShardFileBytes({"params", "exp_avg"}, 10), 40u + (4 + 6) + (4 + 7) + 2 * 10 * 4);
  EXPECT_EQ(ShardFileBytes({"params"}, 0), 40u + 10);
  EXPECT_EQ(ShardFileBytes({"params"}, uint64_t{1} << 62), UINT64_MAX);  // saturates, never wraps
}

// A manifest whose shard fields are consistent (sizes from ShardFileBytes).
Manifest ValidManifest() {
  const uint64_t total = 101;
  std::vector<ShardInfo> shards;
  for (const ShardRange& range : ShardRanges(total, 2)) {
    ShardInfo shard;
    shard.file = ShardFileName(range.rank, 2);
    shard.rank = range.rank;
    shard.begin = range.begin, shard.end = range.end;
    shard.bytes = ShardFileBytes(testing::TestSections(), range.size());
    shard.xxh3 = range.rank == 0 ? "0123456789abcdef" : "fedcba9876543210";
    shard.rank_state = {{"dropout_seed", 7 + range.rank}};
    shards.push_back(shard);
  }
  return testing::TestManifest(300, 2, total, shards);
}

TEST(Manifest, RoundTripsThroughJsonText) {
  const Manifest original = ValidManifest();
  const json first = original.ToJson();
  Result<Manifest> parsed = Manifest::FromJson(json::parse(first.dump(2)), "m.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(parsed->ToJson(), first);
  EXPECT_EQ(parsed->step, 300u);
  EXPECT_EQ(parsed->epoch, 30u);
  EXPECT_EQ(parsed->data_cursor, 300u);
  EXPECT_EQ(parsed->world_size, 2u);
  EXPECT_EQ(parsed->total_elements, 101u);
  EXPECT_EQ(parsed->sections, testing::TestSections());
  ASSERT_EQ(parsed->layout.size(), 2u);
  EXPECT_EQ(parsed->layout[1].name, "cls.predictions.bias");
  EXPECT_EQ(parsed->layout[1].shape, std::vector<int64_t>({68}));
  EXPECT_EQ(parsed->layout[1].offset, 33u);
  ASSERT_EQ(parsed->shards.size(), 2u);
  EXPECT_EQ(parsed->shards[1].begin, 51u);
  EXPECT_EQ(parsed->shards[1].xxh3, "fedcba9876543210");
  EXPECT_EQ(parsed->shards[1].rank_state["dropout_seed"], 8);
  EXPECT_EQ(parsed->optimizer["kind"], "adamw");
  EXPECT_EQ(parsed->scheduler["warmup_steps"], 10);
  EXPECT_EQ(parsed->rng["seed"], 42);
  EXPECT_EQ(parsed->config_yaml, "model: tiny\nsteps: 100\n");
  EXPECT_EQ(parsed->vocab_checksum, "0123456789abcdef");
  EXPECT_EQ(parsed->created_at, "2024-01-02T03:04:05Z");
}

TEST(Manifest, JsonHoldsEverythingARestartNeeds) {
  const json j = ValidManifest().ToJson();
  for (const char* key : {"format_version", "run_id", "step", "epoch", "data_cursor", "world_size", "total_elements",
                          "sections", "layout", "shards", "optimizer", "scheduler", "rng", "config_yaml",
                          "vocab_checksum", "created_at"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["format_version"], kCheckpointFormatVersion);
  for (const char* key : {"name", "dtype", "shape", "offset"}) EXPECT_TRUE(j["layout"][0].contains(key)) << key;
  for (const char* key : {"file", "rank", "begin", "end", "bytes", "xxh3", "rank_state"}) {
    EXPECT_TRUE(j["shards"][0].contains(key)) << key;
  }
}

TEST(Manifest, UnknownKeysAreIgnoredAndRankStateIsOptional) {
  json j = ValidManifest().ToJson();
  j["written_by"] = "a newer build";
  j["shards"][0].erase("rank_state");
  Result<Manifest> parsed = Manifest::FromJson(j, "m.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_TRUE(parsed->shards[0].rank_state.is_null());
}

struct BadCase {
  const char* what;
  std::function<void(json*)> damage;
  const char* expected;  // in the message, after "m.json: "
};

TEST(Manifest, ErrorsNameTheSourceAndTheField) {
  const std::vector<BadCase> cases = {
      {"format", [](json* j) { (*j)["format_version"] = 2; }, "format_version: 2 is not supported"},
      {"format type", [](json* j) { (*j)["format_version"] = "1"; }, "format_version: expected an integer"},
      {"missing", [](json* j) { j->erase("epoch"); }, "epoch: missing"},
      {"negative", [](json* j) { (*j)["step"] = -1; }, "step: expected a non-negative integer, got -1"},
      {"float", [](json* j) { (*j)["data_cursor"] = 1.5; }, "data_cursor: expected a non-negative integer"},
      {"world 0", [](json* j) { (*j)["world_size"] = 0; }, "world_size: must be at least 1"},
      {"world 2^32", [](json* j) { (*j)["world_size"] = uint64_t{1} << 32; }, "world_size: 4294967296 does not fit"},
      {"run id", [](json* j) { (*j)["run_id"] = 7; }, "run_id: expected a string"},
      {"sections empty", [](json* j) { (*j)["sections"] = json::array(); }, "sections: must not be empty"},
      {"sections twice", [](json* j) { (*j)["sections"][1] = "params"; }, "sections[1]: \"params\" appears twice"},
      {"sections type", [](json* j) { (*j)["sections"] = "params"; }, "sections: expected an array"},
      {"layout gap", [](json* j) { (*j)["layout"][1]["offset"] = 34; }, "layout[1].offset: 34 but the tensors"},
      {"layout short", [](json* j) { (*j)["layout"][1]["shape"] = {67}; },
       "layout: the tensors cover [0, 100) but total_elements is 101"},
      {"layout dtype", [](json* j) { (*j)["layout"][0]["dtype"] = "float16"; }, "layout[0].dtype: \"float16\""},
      {"layout dim", [](json* j) { (*j)["layout"][0]["shape"] = {-3}; }, "layout[0].shape[0]: expected"},
      {"layout name", [](json* j) { (*j)["layout"][1]["name"] = (*j)["layout"][0]["name"]; },
       "layout[1].name: \"bert.embeddings.word_embeddings.weight\" appears twice"},
      {"layout entry", [](json* j) { (*j)["layout"][0] = 5; }, "layout[0]: expected an object"},
      {"shard count", [](json* j) { (*j)["shards"].erase(1); }, "shards: 1 entries but world_size is 2"},
      {"shard rank", [](json* j) { (*j)["shards"][0]["rank"] = 1; }, "shards[0].rank: 1 but shards are in rank order"},
      {"shard begin", [](json* j) { (*j)["shards"][1]["begin"] = 50; },
       "shards[1].begin: 50 but ShardRanges(101, 2)[1] is [51, 101)"},
      {"shard end", [](json* j) { (*j)["shards"][1]["end"] = 100; }, "shards[1].end: 100 but ShardRanges(101, 2)[1]"},
      {"shard bytes", [](json* j) { (*j)["shards"][1]["bytes"] = 1; }, "shards[1].bytes: 1 but a shard of 3 sections"},
      {"shard xxh3", [](json* j) { (*j)["shards"][0]["xxh3"] = "0123456789ABCDEF"; }, "shards[0].xxh3: "},
      {"shard file", [](json* j) { (*j)["shards"][0]["file"] = "../../etc/passwd"; }, "shards[0].file: "},
      {"shard manifest", [](json* j) { (*j)["shards"][0]["file"] = "manifest.json"; }, "shards[0].file: "},
      {"shard twice", [](json* j) { (*j)["shards"][1]["file"] = (*j)["shards"][0]["file"]; },
       "shards[1].file: \"shard-00000-of-00002.bin\" appears twice"},
      {"rank state", [](json* j) { (*j)["shards"][1]["rank_state"] = "x"; },
       "shards[1].rank_state: expected an object"},
      {"optimizer", [](json* j) { (*j)["optimizer"] = 3; }, "optimizer: expected an object or null, got 3"},
      {"scheduler", [](json* j) { j->erase("scheduler"); }, "scheduler: missing"},
      {"rng", [](json* j) { (*j)["rng"] = json::array(); }, "rng: expected an object or null"},
      {"config", [](json* j) { (*j)["config_yaml"] = json::object(); }, "config_yaml: expected a string"},
      {"vocab", [](json* j) { j->erase("vocab_checksum"); }, "vocab_checksum: missing"},
      {"created", [](json* j) { (*j)["created_at"] = nullptr; }, "created_at: expected a string"},
  };
  for (const BadCase& bad : cases) {
    json j = ValidManifest().ToJson();
    bad.damage(&j);
    Result<Manifest> parsed = Manifest::FromJson(j, "m.json");
    ASSERT_FALSE(parsed.ok()) << bad.what;
    const std::string& message = parsed.status().message();
    EXPECT_EQ(message.rfind(std::string("m.json: ") + bad.expected, 0), 0u) << bad.what << ": " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << bad.what << ": " << message;
    EXPECT_EQ(parsed.status().code(), Status::Code::kCorruption) << bad.what;
  }
}

TEST(Manifest, RejectsANonObject) {
  Result<Manifest> parsed = Manifest::FromJson(json::array({1, 2}), "m.json");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().message(), "m.json: expected a JSON object, got [1,2]");
}

TEST(Manifest, AcceptsNullStateRecords) {
  json j = ValidManifest().ToJson();
  j["optimizer"] = nullptr, j["scheduler"] = nullptr, j["rng"] = nullptr;
  EXPECT_TRUE(Manifest::FromJson(j, "m.json").ok());
}

}  // namespace
}  // namespace bert
