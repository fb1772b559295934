// MpiCommunicator on two real ranks. Each TEST runs this binary again under
// `mpirun -np 2` with BERT_MPI_CHILD=1 and only itself selected; in that
// child mode the TEST body does the checks on both ranks (non-fatal
// EXPECTs only, so that every rank makes the same collectives whatever
// fails) and prints "PASS <test> rank <r>" when all ranks passed. The parent
// asserts mpirun's exit code and both ranks' PASS lines.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "integration/coordinator/subprocess.h"
#include "test_util.h"
#include "worker/comm/mpi_communicator.h"

namespace bert {
namespace {

constexpr int kRanks = 2;

bool InChild() {
  const char* child = std::getenv("BERT_MPI_CHILD");
  return child != nullptr && std::string(child) == "1";
}

std::string CurrentTestName() {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return std::string(info->test_suite_name()) + "." + info->name();
}

std::string PassLine(int rank) { return "PASS " + CurrentTestName() + " rank " + std::to_string(rank); }

struct MpiRun {
  int exit_code = -1;  // -1: still running at the timeout (then killed)
  std::string output;  // both ranks' stdout and stderr, and mpirun's
  double seconds = 0;
};

// Runs the current test in child mode on `ranks` ranks.
MpiRun RunThisTestUnderMpirun(int timeout_ms, int ranks = kRanks) {
  testing::TempDir dir;
  const std::string log_path = dir / "mpirun.log";
  std::vector<std::string> argv = {"/usr/bin/env", "mpirun"};
  if (::geteuid() == 0) argv.push_back("--allow-run-as-root");
  const std::string np = std::to_string(ranks);
  for (const char* arg : {"-np", np.c_str(), "--bind-to", "none", "--oversubscribe", "-x", "BERT_MPI_CHILD=1"}) {
    argv.push_back(arg);
  }
  argv.push_back(std::filesystem::read_symlink("/proc/self/exe").string());
  argv.push_back("--gtest_filter=" + CurrentTestName());
  MpiRun run;
  const auto start = std::chrono::steady_clock::now();
  {
    testing::Subprocess mpirun(argv, log_path);
    std::optional<int> exit_code = mpirun.Wait(timeout_ms);
    run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (exit_code) {
      run.exit_code = *exit_code;
    } else {
      mpirun.Signal(SIGTERM);  // mpirun then ends its ranks; SIGKILL (the destructor's) would leave them
      mpirun.Wait(5000);
    }
  }
  std::ifstream in(log_path);
  std::stringstream text;
  text << in.rdbuf();
  run.output = text.str();
  return run;
}

// The parent's half of a test: mpirun succeeded and every rank passed.
void ExpectAllRanksPass(int ranks = kRanks) {
  const MpiRun run = RunThisTestUnderMpirun(/*timeout_ms=*/30000, ranks);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  for (int rank = 0; rank < ranks; ++rank) {
    EXPECT_NE(run.output.find(PassLine(rank)), std::string::npos) << "no \"" << PassLine(rank) << "\" in\n"
                                                                  << run.output;
  }
}

// The child's half: the checks on this rank, then the PASS line if every rank passed.
void RunChild(const std::function<void(Communicator*)>& checks, int ranks = kRanks) {
  MpiEnvironment mpi(nullptr, nullptr);
  Result<std::unique_ptr<Communicator>> created = MpiCommunicator::Create();
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  Communicator* comm = created->get();
  ASSERT_EQ(comm->world_size(), ranks);
  checks(comm);
  int64_t passed = ::testing::Test::HasFailure() ? 0 : 1;
  ASSERT_TRUE(comm->AllReduce(&passed, 1, CommDataType::kInt64, CommReduceOp::kMin).ok());
  if (passed == 1) std::printf("%s\n", PassLine(comm->rank()).c_str());
  std::fflush(stdout);
}

const char* OpName(CommReduceOp op) {
  return op == CommReduceOp::kSum ? "sum" : op == CommReduceOp::kMin ? "min" : "max";
}

// AllReduce of value(rank, i) for counts from 1 to 300007 (past Open MPI's
// switch to segmented algorithms) and every op, against the same reduction
// done locally. Values differ in sign by element, so min and max each come
// from both ranks.
template <typename T, typename Value>
void CheckAllReduce(Communicator* comm, CommDataType type, const char* type_name, Value value) {
  for (size_t count : {size_t{1}, size_t{7}, size_t{300007}}) {
    for (CommReduceOp op : {CommReduceOp::kSum, CommReduceOp::kMin, CommReduceOp::kMax}) {
      std::vector<T> data(count);
      for (size_t i = 0; i < count; ++i) data[i] = value(comm->rank(), i);
      Status status = comm->AllReduce(data.data(), count, type, op);
      EXPECT_TRUE(status.ok()) << status.ToString();
      size_t wrong = 0, first_wrong = 0;
      for (size_t i = 0; i < count; ++i) {
        T expected = value(0, i);
        for (int rank = 1; rank < comm->world_size(); ++rank) {
          const T v = value(rank, i);
          expected = op == CommReduceOp::kSum ? T(expected + v) : op == CommReduceOp::kMin ? std::min(expected, v)
                                                                                          : std::max(expected, v);
        }
        if (data[i] != expected && wrong++ == 0) first_wrong = i;
      }
      EXPECT_EQ(wrong, 0u) << type_name << " " << OpName(op) << " of " << count << " elements on rank "
                           << comm->rank() << ": first wrong element " << first_wrong;
    }
  }
}

TEST(MpiCommunicatorTest, CreateWithoutMpiEnvironmentFails) {
  if (InChild()) return;
  Result<std::unique_ptr<Communicator>> created = MpiCommunicator::Create();
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(created.status().message().find("MpiEnvironment"), std::string::npos) << created.status().ToString();
}

TEST(MpiCommunicatorTest, AllReduceSumMinMaxForEveryType) {
  if (!InChild()) return ExpectAllRanksPass();
  RunChild([](Communicator* comm) {
    EXPECT_EQ(comm->backend(), "mpi");
    EXPECT_TRUE(comm->rank() == 0 || comm->rank() == 1) << comm->rank();
    auto sign = [](size_t i) { return i % 2 == 0 ? 1 : -1; };
    // Exact in binary floating point, so the expected sums are exact.
    CheckAllReduce<float>(comm, CommDataType::kFloat32, "float32", [&](int rank, size_t i) {
      return static_cast<float>(i % 13) * 0.5f - 3.0f + static_cast<float>(sign(i) * rank) * 1.25f;
    });
    CheckAllReduce<double>(comm, CommDataType::kFloat64, "float64", [&](int rank, size_t i) {
      return static_cast<double>(i % 1001) * 0.125 - 60.0 + sign(i) * rank * 1e10;
    });
    // Beyond 2^53: a reduction through double would lose these.
    CheckAllReduce<int64_t>(comm, CommDataType::kInt64, "int64", [&](int rank, size_t i) {
      return (static_cast<int64_t>(i % 1000) - 500) * 1000000007LL + sign(i) * rank * (int64_t{1} << 60) + rank;
    });
    CheckAllReduce<uint64_t>(comm, CommDataType::kUint64, "uint64", [&](int rank, size_t i) {
      return (uint64_t{1} << 62) + i * 3 + static_cast<uint64_t>(rank) * ((i % 2) ? (uint64_t{1} << 61) : 1);
    });
  });
}

// Deterministic values of varied magnitude, different on every rank.
std::vector<float> NoisyFloats(size_t count, int rank) {
  std::vector<float> values(count);
  uint64_t state = 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(rank + 1);
  for (float& v : values) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    const double unit = static_cast<double>(state >> 11) / static_cast<double>(uint64_t{1} << 53);
    v = static_cast<float>((unit - 0.5) * std::pow(10.0, static_cast<double>((state >> 3) % 9) - 4));
  }
  return values;
}

TEST(MpiCommunicatorTest, AllReduceBucketsEqualsAllReduce) {
  if (!InChild()) return ExpectAllRanksPass();
  RunChild([](Communicator* comm) {
    // With two ranks every element is a + b either way, so bucketed and whole
    // agree bit for bit; the count is no multiple of the bucket (16385 floats).
    struct Case {
      size_t count, bucket_bytes;
    };
    for (const Case& c : {Case{1000003, 64 * 1024 + 4}, Case{10, 1}, Case{3, 0}, Case{0, 64}, Case{5, 1 << 20}}) {
      const std::vector<float> input = NoisyFloats(c.count, comm->rank());
      std::vector<float> whole = input, bucketed = input;
      Status status = comm->AllReduce(whole.data(), whole.size(), CommDataType::kFloat32, CommReduceOp::kSum);
      EXPECT_TRUE(status.ok()) << status.ToString();
      status = comm->AllReduceBuckets(bucketed.data(), bucketed.size(), CommDataType::kFloat32, c.bucket_bytes);
      EXPECT_TRUE(status.ok()) << status.ToString();
      EXPECT_TRUE(c.count == 0 || std::memcmp(whole.data(), bucketed.data(), c.count * sizeof(float)) == 0)
          << c.count << " floats in buckets of " << c.bucket_bytes << " bytes differ from one AllReduce";
      EXPECT_TRUE(c.count == 0 || whole != input) << "the all-reduce changed nothing";
    }
    // float64 too, buckets of 1 MiB over 2.5 MiB.
    std::vector<double> whole(327680 + 17), bucketed;
    for (size_t i = 0; i < whole.size(); ++i) whole[i] = 1.0 / static_cast<double>(i + 1 + comm->rank());
    bucketed = whole;
    EXPECT_TRUE(comm->AllReduce(whole.data(), whole.size(), CommDataType::kFloat64, CommReduceOp::kSum).ok());
    EXPECT_TRUE(comm->AllReduceBuckets(bucketed.data(), bucketed.size(), CommDataType::kFloat64, 1 << 20).ok());
    EXPECT_TRUE(whole == bucketed) << "float64 buckets differ from one AllReduce";
  });
}

// ZeRO-1's pair: ReduceScatter leaves this rank's part equal to the
// all-reduce's (bit for bit: with two ranks each element is a + b), and
// AllGather then gives every rank the all-reduced buffer. Parts of unequal
// size (ShardRanges' rule), an empty part, and float64.
TEST(MpiCommunicatorTest, ReduceScatterThenAllGatherEqualsAllReduce) {
  if (!InChild()) return ExpectAllRanksPass();
  RunChild([](Communicator* comm) {
    for (const std::vector<size_t>& parts :
         {std::vector<size_t>{500002, 500001}, std::vector<size_t>{3, 0}, std::vector<size_t>{0, 7}}) {
      const size_t count = parts[0] + parts[1];
      const size_t offset = comm->rank() == 0 ? 0 : parts[0];
      const std::vector<float> input = NoisyFloats(count, comm->rank());
      std::vector<float> reduced = input, scattered = input;
      EXPECT_TRUE(comm->AllReduce(reduced.data(), count, CommDataType::kFloat32, CommReduceOp::kSum).ok());
      Status status = comm->ReduceScatter(scattered.data(), parts, CommDataType::kFloat32);
      EXPECT_TRUE(status.ok()) << status.ToString();
      EXPECT_TRUE(parts[comm->rank()] == 0 || std::memcmp(scattered.data() + offset, reduced.data() + offset,
                                                          parts[comm->rank()] * sizeof(float)) == 0)
          << "rank " << comm->rank() << "'s part of " << count << " differs from the all-reduce's";
      // Only the own part is defined: spoil the rest, AllGather must restore it.
      for (size_t i = 0; i < count; ++i) {
        if (i < offset || i >= offset + parts[comm->rank()]) scattered[i] = -1.0f;
      }
      status = comm->AllGather(scattered.data(), parts, CommDataType::kFloat32);
      EXPECT_TRUE(status.ok()) << status.ToString();
      EXPECT_TRUE(scattered == reduced) << "all-gathered " << count << " floats differ from the all-reduce's";
      EXPECT_TRUE(count == 0 || reduced != input);
    }
    std::vector<double> values(1001);
    for (size_t i = 0; i < values.size(); ++i) values[i] = 1.0 / static_cast<double>(i + 1 + comm->rank());
    std::vector<double> reduced = values;
    EXPECT_TRUE(comm->AllReduce(reduced.data(), reduced.size(), CommDataType::kFloat64, CommReduceOp::kSum).ok());
    EXPECT_TRUE(comm->ReduceScatter(values.data(), {501, 500}, CommDataType::kFloat64).ok());
    EXPECT_TRUE(comm->AllGather(values.data(), {501, 500}, CommDataType::kFloat64).ok());
    EXPECT_TRUE(values == reduced) << "float64";
    // Parts that do not match the world size: an error naming the call and rank.
    Status wrong = comm->AllGather(values.data(), {1001}, CommDataType::kFloat64);
    EXPECT_FALSE(wrong.ok());
    EXPECT_NE(wrong.message().find("AllGather on rank " + std::to_string(comm->rank())), std::string::npos)
        << wrong.message();
  });
}

// The ring's part bookkeeping on more ranks than two: 3 ranks with parts
// of 4 MiB and more (so that parts go in several pieces), one of them
// empty. Integer-valued floats make every summation order exact, so each
// element must equal the sum over ranks computed here.
TEST(MpiCommunicatorTest, ReduceScatterAndAllGatherOnThreeRanks) {
  constexpr int kThree = 3;
  if (!InChild()) return ExpectAllRanksPass(kThree);
  RunChild(
      [](Communicator* comm) {
        const std::vector<size_t> parts = {(size_t{27} << 20) / 4 + 3, 0, (size_t{26} << 20) / 4 + 1};
        size_t count = 0;
        for (size_t part : parts) count += part;
        auto value = [](int rank, size_t i) { return static_cast<float>((i * 7 + static_cast<size_t>(rank) * 3) % 1001); };
        std::vector<float> data(count);
        for (size_t i = 0; i < count; ++i) data[i] = value(comm->rank(), i);
        Status status = comm->ReduceScatter(data.data(), parts, CommDataType::kFloat32);
        EXPECT_TRUE(status.ok()) << status.ToString();
        size_t offset = 0;
        for (int r = 0; r < comm->rank(); ++r) offset += parts[r];
        size_t wrong = 0;
        for (size_t i = offset; i < offset + parts[comm->rank()]; ++i) {
          wrong += data[i] != value(0, i) + value(1, i) + value(2, i);
        }
        EXPECT_EQ(wrong, 0u) << "rank " << comm->rank() << "'s reduced part";
        status = comm->AllGather(data.data(), parts, CommDataType::kFloat32);
        EXPECT_TRUE(status.ok()) << status.ToString();
        wrong = 0;
        for (size_t i = 0; i < count; ++i) wrong += data[i] != value(0, i) + value(1, i) + value(2, i);
        EXPECT_EQ(wrong, 0u) << "rank " << comm->rank() << " after the all-gather";
      },
      kThree);
}

TEST(MpiCommunicatorTest, BroadcastFromRankOne) {
  if (!InChild()) return ExpectAllRanksPass();
  RunChild([](Communicator* comm) {
    const size_t bytes = 3 * (size_t{1} << 20) + 5;
    auto pattern = [](size_t i) { return static_cast<unsigned char>((i * 31 + 7) & 0xff); };
    std::vector<unsigned char> data(bytes, 0);
    if (comm->rank() == 1) {
      for (size_t i = 0; i < bytes; ++i) data[i] = pattern(i);
    }
    Status status = comm->Broadcast(data.data(), bytes, /*root=*/1);
    EXPECT_TRUE(status.ok()) << status.ToString();
    size_t wrong = 0;
    for (size_t i = 0; i < bytes; ++i) wrong += data[i] != pattern(i);
    EXPECT_EQ(wrong, 0u) << "rank " << comm->rank();
    EXPECT_TRUE(comm->Broadcast(data.data(), 0, /*root=*/1).ok());

    // A root outside the world is an error that names the backend, the call and the rank.
    status = comm->Broadcast(data.data(), 8, /*root=*/kRanks);
    EXPECT_EQ(status.code(), Status::Code::kInternal) << status.ToString();
    for (const std::string& part : {std::string("mpi"), std::string("MPI_Bcast"),
                                    "rank " + std::to_string(comm->rank())}) {
      EXPECT_NE(status.message().find(part), std::string::npos) << status.message();
    }
    EXPECT_TRUE(comm->Barrier().ok());
  });
}

// FNV-1a over the bytes: equal replicas, equal checksums.
uint64_t Checksum(const std::vector<float>& values) {
  uint64_t hash = 1469598103934665603ULL;
  const unsigned char* bytes = reinterpret_cast<const unsigned char*>(values.data());
  for (size_t i = 0; i < values.size() * sizeof(float); ++i) hash = (hash ^ bytes[i]) * 1099511628211ULL;
  return hash;
}

// Whether every rank holds the same checksum: its min and max over ranks agree.
bool ReplicasAgree(Communicator* comm, uint64_t checksum) {
  uint64_t min = checksum, max = checksum;
  EXPECT_TRUE(comm->AllReduce(&min, 1, CommDataType::kUint64, CommReduceOp::kMin).ok());
  EXPECT_TRUE(comm->AllReduce(&max, 1, CommDataType::kUint64, CommReduceOp::kMax).ok());
  return min == max;
}

TEST(MpiCommunicatorTest, ChecksumMismatchIsSeenOnEveryRank) {
  if (!InChild()) return ExpectAllRanksPass();
  RunChild([](Communicator* comm) {
    std::vector<float> parameters = NoisyFloats(4099, /*rank=*/0);  // the same on every rank
    EXPECT_TRUE(ReplicasAgree(comm, Checksum(parameters))) << "rank " << comm->rank();
    // One ulp of one element on rank 1 only: both ranks must see it.
    if (comm->rank() == 1) parameters[2048] = std::nextafter(parameters[2048], 1e9f);
    EXPECT_FALSE(ReplicasAgree(comm, Checksum(parameters))) << "rank " << comm->rank();
  });
}

// Abort(7) from a watchdog thread on rank 0, while rank 1 waits in an
// AllReduce that rank 0 never joins: the job ends with an error in seconds.
TEST(MpiCommunicatorTest, AbortEndsTheJobWhileAPeerWaits) {
  if (InChild()) {
    MpiEnvironment mpi(nullptr, nullptr);
    Result<std::unique_ptr<Communicator>> created = MpiCommunicator::Create();
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    Communicator* comm = created->get();
    ASSERT_TRUE(comm->Barrier().ok());
    if (comm->rank() == 1) {
      std::printf("rank 1 waits in AllReduce\n");
      std::fflush(stdout);
      double value = 1;
      Status status = comm->AllReduce(&value, 1, CommDataType::kFloat64, CommReduceOp::kSum);
      std::printf("UNEXPECTED: rank 1's AllReduce returned: %s\n", status.ToString().c_str());
    } else {
      std::thread watchdog([comm] {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        std::printf("rank 0 aborts\n");
        comm->Abort(7);
      });
      std::this_thread::sleep_for(std::chrono::seconds(60));  // stuck "computing"
      std::printf("UNEXPECTED: rank 0 outlived its Abort\n");
      watchdog.join();
    }
    std::fflush(stdout);
    return;
  }
  const MpiRun run = RunThisTestUnderMpirun(/*timeout_ms=*/20000);
  ASSERT_NE(run.exit_code, -1) << "mpirun still running after 20 s:\n" << run.output;
  // Open MPI's mpirun exits with the code of the first rank that failed.
  EXPECT_EQ(run.exit_code, 7) << run.output;
  EXPECT_LT(run.seconds, 10.0) << run.output;
  EXPECT_NE(run.output.find("rank 1 waits in AllReduce"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("rank 0 aborts"), std::string::npos) << run.output;
  EXPECT_EQ(run.output.find("UNEXPECTED"), std::string::npos) << run.output;
}

}  // namespace
}  // namespace bert
