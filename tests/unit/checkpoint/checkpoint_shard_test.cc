// Shard files (checkpoint/checkpoint.h): the documented byte layout, I/O
// errors (full disk) that name the file and leave nothing behind, and
// ReadRange across shards of any world size, bit for bit.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <xxhash.h>

#include <cstring>

#include "checkpoint/checkpoint.h"
#include "common/file_util.h"
#include "unit/checkpoint/checkpoint_test_util.h"

namespace bert {
namespace {

using testing::Arrays;
using testing::TempDir;
using testing::TestSections;

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

template <typename T>
T At(const std::string& bytes, size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

ShardWriteRequest Request(const std::string& path, const Arrays& arrays, uint32_t rank, uint32_t world_size) {
  const ShardRange range = ShardRanges(arrays.sections[0].size(), world_size)[rank];
  ShardWriteRequest request;
  request.path = path;
  request.rank = rank, request.world_size = world_size;
  request.begin = range.begin, request.end = range.end;
  request.section_names = TestSections();
  for (const std::vector<float>& array : arrays.sections) request.section_data.push_back(array.data() + range.begin);
  return request;
}

TEST(WriteShard, WritesTheDocumentedLayout) {
  TempDir dir;
  const Arrays arrays = Arrays::Random(11, 1);
  ShardInfo info;
  const std::string path = dir / "shard-00001-of-00002.bin";
  ASSERT_TRUE(WriteShard(Request(path, arrays, 1, 2), &info).ok());

  const std::string bytes = testing::ReadBytes(path);
  EXPECT_EQ(info.file, "shard-00001-of-00002.bin");
  EXPECT_EQ(info.rank, 1u);
  EXPECT_EQ(info.begin, 6u);
  EXPECT_EQ(info.end, 11u);
  EXPECT_EQ(info.bytes, bytes.size());
  EXPECT_EQ(info.bytes, ShardFileBytes(TestSections(), 5));
  EXPECT_EQ(info.xxh3, Hex64(XXH3_64bits(bytes.data(), bytes.size())));
  EXPECT_TRUE(info.rank_state.is_null());

  ASSERT_EQ(bytes.substr(0, 8), "BERTSHRD");
  EXPECT_EQ(At<uint32_t>(bytes, 8), static_cast<uint32_t>(kCheckpointFormatVersion));
  EXPECT_EQ(At<uint32_t>(bytes, 12), 1u);  // rank
  EXPECT_EQ(At<uint32_t>(bytes, 16), 2u);  // world size
  EXPECT_EQ(At<uint32_t>(bytes, 20), 3u);  // sections
  EXPECT_EQ(At<uint64_t>(bytes, 24), 6u);  // begin
  EXPECT_EQ(At<uint64_t>(bytes, 32), 11u); // end
  size_t offset = 40;
  for (const std::string& name : TestSections()) {
    ASSERT_EQ(At<uint32_t>(bytes, offset), name.size());
    EXPECT_EQ(bytes.substr(offset + 4, name.size()), name);
    offset += 4 + name.size();
  }
  for (const std::vector<float>& array : arrays.sections) {
    EXPECT_EQ(std::memcmp(bytes.data() + offset, array.data() + 6, 5 * sizeof(float)), 0);
    offset += 5 * sizeof(float);
  }
  EXPECT_EQ(offset, bytes.size());
}

TEST(WriteShard, RejectsRequestsThatAreNotAShard) {
  TempDir dir;
  const Arrays arrays = Arrays::Random(10, 2);
  ShardInfo info;
  ShardWriteRequest bad_rank = Request(dir / "a.bin", arrays, 0, 2);
  bad_rank.rank = 2;
  EXPECT_EQ(WriteShard(bad_rank, &info).code(), Status::Code::kInvalidArgument);
  ShardWriteRequest bad_names = Request(dir / "b.bin", arrays, 0, 2);
  bad_names.section_names.pop_back();
  EXPECT_EQ(WriteShard(bad_names, &info).code(), Status::Code::kInvalidArgument);
  ShardWriteRequest no_data = Request(dir / "c.bin", arrays, 0, 2);
  no_data.section_data[1] = nullptr;
  EXPECT_EQ(WriteShard(no_data, &info).code(), Status::Code::kInvalidArgument);
  EXPECT_FALSE(Exists(dir / "a.bin") || Exists(dir / "b.bin") || Exists(dir / "c.bin"));
}

TEST(WriteShard, MissingDirectoryIsAnIoErrorNamingTheFile) {
  TempDir dir;
  ShardInfo info;
  const Status status = WriteShard(Request(dir / "nope/shard.bin", Arrays::Random(4, 3), 0, 1), &info);
  EXPECT_EQ(status.code(), Status::Code::kIoError);
  EXPECT_EQ(status.message().rfind(dir / "nope/shard.bin: cannot create: No such file or directory", 0), 0u)
      << status.message();
}

// A full disk: the write fails midway with ENOSPC, the error names the file,
// and the partial file is gone (so is its space).
TEST(WriteShard, FullDiskRemovesThePartialFile) {
  testing::SmallTmpfs tmpfs;
  TempDir fallback;
  std::string path;
  if (tmpfs.mounted()) {
    path = tmpfs.path() + "/shard-00000-of-00001.bin";
  } else {
    // Not root: /dev/full fails every write with ENOSPC, like a full disk.
    std::fprintf(stderr, "no tmpfs (%s): writing through a link to /dev/full\n", tmpfs.error().c_str());
    path = fallback / "shard-00000-of-00001.bin";
    ASSERT_EQ(::symlink("/dev/full", path.c_str()), 0);
  }
  const Arrays big = Arrays::Random(100000, 4);  // 1.2 MB of floats: more than the 1 MiB tmpfs
  ShardInfo info;
  const Status status = WriteShard(Request(path, big, 0, 1), &info);
  ASSERT_EQ(status.code(), Status::Code::kIoError) << status.ToString();
  EXPECT_EQ(status.message(), path + ": write: No space left on device");
  EXPECT_FALSE(Exists(path));
  if (tmpfs.mounted()) {
    // The space came back: a smaller shard fits now.
    const Arrays small = Arrays::Random(20000, 5);
    ASSERT_TRUE(WriteShard(Request(path, small, 0, 1), &info).ok());
    EXPECT_EQ(info.bytes, ShardFileBytes(TestSections(), 20000));
  }
}

// Writing into /dev/full (ENOSPC on every write) needs no mount, so this
// path of the error handling is tested on every machine.
TEST(WriteShard, DeviceFullIsAnIoErrorNamingTheFile) {
  TempDir dir;
  const std::string path = dir / "shard.bin";
  ASSERT_EQ(::symlink("/dev/full", path.c_str()), 0);
  ShardInfo info;
  const Status status = WriteShard(Request(path, Arrays::Random(10, 6), 0, 1), &info);
  EXPECT_EQ(status.message(), path + ": write: No space left on device");
  EXPECT_FALSE(Exists(path));
}

class ReadRangeTest : public ::testing::Test {
 protected:
  // A committed checkpoint of `total` elements written by `world_size` ranks.
  LoadedCheckpoint Write(uint64_t total, uint32_t world_size) {
    arrays_ = Arrays::Random(total, total * 100 + world_size);
    CheckpointStore store(dir_.path());
    EXPECT_TRUE(testing::WriteCheckpoint(&store, 100, world_size, arrays_).ok());
    Result<LoadedCheckpoint> loaded = store.LoadLatest();
    EXPECT_TRUE(loaded.ok()) << loaded.status().message();
    return *loaded;
  }
  // ReadRange [begin, end) of every section, compared bit for bit.
  void ExpectRange(const LoadedCheckpoint& checkpoint, uint64_t begin, uint64_t end) {
    for (size_t s = 0; s < TestSections().size(); ++s) {
      std::vector<float> out(end - begin + 1, 0.0f);
      const float sentinel = out.back();
      ASSERT_TRUE(ReadRange(checkpoint, TestSections()[s], begin, end, out.data()).ok());
      EXPECT_EQ(std::memcmp(out.data(), arrays_.sections[s].data() + begin, (end - begin) * sizeof(float)), 0)
          << TestSections()[s] << " [" << begin << ", " << end << ")";
      EXPECT_EQ(std::memcmp(&out.back(), &sentinel, sizeof(float)), 0) << "wrote past the range";
    }
  }

  TempDir dir_;
  Arrays arrays_;
};

TEST_F(ReadRangeTest, WrittenByThreeReadAsTwoAndFiveWould) {
  const uint64_t total = 1000;
  const LoadedCheckpoint checkpoint = Write(total, 3);  // shards [0, 334) [334, 667) [667, 1000)
  for (uint32_t world : {2u, 5u}) {
    for (const ShardRange& range : ShardRanges(total, world)) ExpectRange(checkpoint, range.begin, range.end);
  }
  ExpectRange(checkpoint, 0, total);
}

TEST_F(ReadRangeTest, RangesAroundEveryShardBoundary) {
  const uint64_t total = 1000;
  const LoadedCheckpoint checkpoint = Write(total, 3);
  std::vector<uint64_t> points = {0, 1, total - 1, total};
  for (uint64_t boundary : {334u, 667u}) {
    for (uint64_t p : {boundary - 2, boundary - 1, boundary, boundary + 1}) points.push_back(p);
  }
  for (uint64_t begin : points) {
    for (uint64_t end : points) {
      if (begin < end) ExpectRange(checkpoint, begin, end);
    }
  }
}

// Resharding is range arithmetic: every (writer, reader) pair of world sizes.
TEST_F(ReadRangeTest, EveryWriterAndReaderWorldSize) {
  const uint64_t total = 37;
  for (uint32_t writer = 1; writer <= 6; ++writer) {
    const LoadedCheckpoint checkpoint = Write(total, writer);
    for (uint32_t reader = 1; reader <= 8; ++reader) {
      for (const ShardRange& range : ShardRanges(total, reader)) {
        if (range.size() > 0) ExpectRange(checkpoint, range.begin, range.end);
      }
    }
  }
}

TEST_F(ReadRangeTest, MoreRanksThanElements) {
  const LoadedCheckpoint checkpoint = Write(3, 5);  // ranks 3 and 4 hold nothing
  ExpectRange(checkpoint, 0, 3);
  ExpectRange(checkpoint, 2, 3);
}

TEST_F(ReadRangeTest, EmptyRangeTouchesNothing) {
  const LoadedCheckpoint checkpoint = Write(100, 3);
  float untouched = 1.5f;
  EXPECT_TRUE(ReadRange(checkpoint, "params", 40, 40, &untouched).ok());
  EXPECT_TRUE(ReadRange(checkpoint, "params", 100, 100, &untouched).ok());
  EXPECT_EQ(untouched, 1.5f);
}

TEST_F(ReadRangeTest, OutOfBoundsAndUnknownSectionAreErrors) {
  const LoadedCheckpoint checkpoint = Write(100, 3);
  std::vector<float> out(200);
  Status status = ReadRange(checkpoint, "params", 90, 101, out.data());
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(status.message().find("[90, 101) of \"params\" is outside [0, 100)"), std::string::npos)
      << status.message();
  EXPECT_EQ(ReadRange(checkpoint, "params", 50, 40, out.data()).code(), Status::Code::kInvalidArgument);
  status = ReadRange(checkpoint, "momentum", 0, 10, out.data());
  EXPECT_EQ(status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(status.message().find("no section \"momentum\""), std::string::npos) << status.message();
}

TEST_F(ReadRangeTest, ADamagedShardIsNamed) {
  const LoadedCheckpoint checkpoint = Write(100, 2);
  const std::string shard = checkpoint.dir + "/shard-00001-of-00002.bin";
  std::vector<float> out(100);
  // Damaged after the load verified it: the header check still catches it.
  testing::FlipByte(shard, 12);  // the rank field
  Status status = ReadRange(checkpoint, "exp_avg", 40, 60, out.data());
  EXPECT_EQ(status.message(), shard + ": header rank is 0, the manifest says 1");
  // A range inside the healthy shard still reads.
  EXPECT_TRUE(ReadRange(checkpoint, "exp_avg", 0, 50, out.data()).ok());
  ::truncate(shard.c_str(), 100);
  status = ReadRange(checkpoint, "exp_avg", 40, 60, out.data());
  EXPECT_EQ(status.message().rfind(shard + ": size 100 != manifest's", 0), 0u) << status.message();
}

}  // namespace
}  // namespace bert
