// All-reduce benchmark: fp32 sums of 1 to 400 MiB over the MPI communicator,
// one MPI_Allreduce per buffer (AllReduce) and one per 25 MiB bucket
// (AllReduceBuckets, the gradient all-reduce of --replicate-optimizer) and
// ReduceScatter then AllGather (ZeRO-1's pair, the default step), beside
// memcpy of the same size measured in the same run (one copy between two
// preallocated, pre-touched buffers, on rank 0 while the others wait): the
// all-reduce moves each byte at least twice, so memcpy bounds what it can
// reach within one machine.
//
// Figures, as nccl-tests defines them (doc/PERFORMANCE.md there):
//   time   median over the repeats of the slowest rank's time (each repeat
//          starts from a barrier; one warm-up repeat is not counted);
//   algbw  bytes / time;
//   busbw  algbw * 2 (W - 1) / W, the per-link rate of a ring all-reduce,
//          comparable across world sizes.
// GB/s are 1e9 bytes per second; sizes are MiB (2^20 bytes).
//
// Every rank fills rank + 1 and checks that each element became
// W (W + 1) / 2 after every repeat; a mismatch on any rank makes every rank
// exit 1.
//
//   allreduce_bench [--smoke] [--ranks N] [--no-launch] [--repeats N]
//                   [--sizes-mib 1,4,16] [--bucket-mib 25]
// Started without mpirun, it runs itself under
// `mpirun -np N --bind-to none` (N = --ranks, default 2); --no-launch runs
// in place instead (a world of one without a launcher).
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "worker/comm/mpi_communicator.h"

namespace {

using namespace bert;  // NOLINT: a benchmark's main file

constexpr size_t kMiB = size_t{1} << 20;

struct Args {
  bool smoke = false;
  bool no_launch = false;        // true: never re-exec under mpirun
  int ranks = 2;                 // world size when this binary starts mpirun
  int repeats = 0;               // timed repeats per size; 0: 10, or 5 above 64 MiB (2 with --smoke)
  std::vector<size_t> sizes_mib = {1, 4, 16, 64, 100, 400};
  size_t bucket_mib = 25;        // AllReduceBuckets' bucket (PyTorch DDP's default bucket_cap_mb)
};

bool ParseArgs(int argc, char** argv, Args* args) {
  bool sizes_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    try {
      if (arg == "--smoke") {
        args->smoke = true;
      } else if (arg == "--no-launch") {
        args->no_launch = true;
      } else if (arg == "--ranks") {
        args->ranks = std::stoi(value());
      } else if (arg == "--repeats") {
        args->repeats = std::stoi(value());
      } else if (arg == "--bucket-mib") {
        args->bucket_mib = std::stoul(value());
      } else if (arg == "--sizes-mib") {
        args->sizes_mib.clear();
        std::stringstream in(value());
        for (std::string part; std::getline(in, part, ',');) args->sizes_mib.push_back(std::stoul(part));
        sizes_given = true;
      } else {
        std::fprintf(stderr, "allreduce_bench: unknown argument %s\n", arg.c_str());
        return false;
      }
    } catch (const std::exception&) {
      std::fprintf(stderr, "allreduce_bench: %s needs a number\n", arg.c_str());
      return false;
    }
  }
  if (args->smoke && !sizes_given) args->sizes_mib = {1, 4};
  if (args->smoke && args->repeats == 0) args->repeats = 2;
  if (args->ranks < 1 || args->repeats < 0 || args->bucket_mib == 0 || args->sizes_mib.empty()) {
    std::fprintf(stderr, "allreduce_bench: --ranks, --bucket-mib and --sizes-mib must be positive\n");
    return false;
  }
  return true;
}

// Replaces this process with `mpirun ... <this binary> <args> --no-launch`.
// Returns only if exec failed.
int RelaunchUnderMpirun(const Args& args, int argc, char** argv) {
  std::vector<std::string> command = {"mpirun"};
  if (::geteuid() == 0) command.push_back("--allow-run-as-root");  // Open MPI refuses root otherwise
  command.insert(command.end(), {"-np", std::to_string(args.ranks), "--bind-to", "none"});
  if (args.ranks > static_cast<int>(std::thread::hardware_concurrency())) command.push_back("--oversubscribe");
  // This binary's path, resolved now: after the exec /proc/self/exe is mpirun.
  std::error_code error;
  const std::string self = std::filesystem::read_symlink("/proc/self/exe", error).string();
  command.push_back(error ? std::string(argv[0]) : self);
  for (int i = 1; i < argc; ++i) command.push_back(argv[i]);
  command.push_back("--no-launch");  // a launcher the check below misses must not recurse
  std::vector<char*> exec_argv;
  for (std::string& part : command) exec_argv.push_back(part.data());
  exec_argv.push_back(nullptr);
  std::fflush(stdout);
  ::execvp(exec_argv[0], exec_argv.data());
  std::fprintf(stderr, "allreduce_bench: cannot run mpirun (%s); start it under mpirun or pass --no-launch\n",
               std::strerror(errno));
  return 2;
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values.empty() ? 0 : values[values.size() / 2];
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

struct Timing {
  double median_s = 0;
  bool verified = true;  // on this rank
};

// Ends the job on a failed collective: the other ranks would wait forever.
void CheckOrAbort(const Status& status, Communicator* comm) {
  if (status.ok()) return;
  std::fprintf(stderr, "[allreduce_bench r%d] %s\n", comm->rank(), status.ToString().c_str());
  comm->Abort(1);
}

// Times `reduce` on `buffer` (filled with rank + 1 before each repeat,
// untimed) and checks every element against W (W + 1) / 2.
Timing TimeAllReduce(Communicator* comm, std::vector<float>* buffer, int repeats, const char* method,
                     const std::function<Status()>& reduce) {
  const int world = comm->world_size();
  const float expected = static_cast<float>(world) * static_cast<float>(world + 1) / 2;
  Timing timing;
  std::vector<double> seconds;
  for (int repeat = -1; repeat < repeats; ++repeat) {  // -1: warm-up
    std::fill(buffer->begin(), buffer->end(), static_cast<float>(comm->rank() + 1));
    CheckOrAbort(comm->Barrier(), comm);
    const auto start = std::chrono::steady_clock::now();
    CheckOrAbort(reduce(), comm);
    double elapsed_s = SecondsSince(start);
    const auto wrong = std::find_if(buffer->begin(), buffer->end(), [&](float v) { return v != expected; });
    if (wrong != buffer->end() && timing.verified) {
      std::fprintf(stderr, "[allreduce_bench r%d] %s of %zu MiB: element %zu is %g, expected %g\n", comm->rank(),
                   method, buffer->size() * sizeof(float) / kMiB, static_cast<size_t>(wrong - buffer->begin()),
                   *wrong, expected);
      timing.verified = false;
    }
    CheckOrAbort(comm->AllReduce(&elapsed_s, 1, CommDataType::kFloat64, CommReduceOp::kMax), comm);
    if (repeat >= 0) seconds.push_back(elapsed_s);
  }
  timing.median_s = Median(seconds);
  return timing;
}

// memcpy between two pre-touched buffers of `bytes`; median of `repeats`.
double TimeMemcpy(size_t bytes, int repeats) {
  std::vector<char> source(bytes, 1), destination(bytes, 0);
  std::memcpy(destination.data(), source.data(), bytes);  // warm-up
  std::vector<double> seconds;
  for (int repeat = 0; repeat < repeats; ++repeat) {
    source[repeat % bytes] = static_cast<char>(repeat);  // the copy is not a no-op
    const auto start = std::chrono::steady_clock::now();
    std::memcpy(destination.data(), source.data(), bytes);
    seconds.push_back(SecondsSince(start));
  }
  if (std::memcmp(destination.data(), source.data(), bytes) != 0) {
    std::fprintf(stderr, "[allreduce_bench] memcpy of %zu bytes went wrong\n", bytes);
  }
  return Median(seconds);
}

struct Row {
  size_t mib = 0;
  int repeats = 0;
  Timing whole, buckets, zero;  // zero: ReduceScatter then AllGather (ZeRO-1's step)
  double memcpy_s = 0;  // rank 0's
};

Row MeasureSize(Communicator* comm, size_t mib, const Args& args) {
  Row row;
  row.mib = mib;
  row.repeats = args.repeats > 0 ? args.repeats : (mib > 64 ? 5 : 10);
  const size_t bytes = mib * kMiB;
  std::vector<float> buffer(bytes / sizeof(float));  // zeroed: pre-touched
  row.whole = TimeAllReduce(comm, &buffer, row.repeats, "AllReduce", [&] {
    return comm->AllReduce(buffer.data(), buffer.size(), CommDataType::kFloat32, CommReduceOp::kSum);
  });
  row.buckets = TimeAllReduce(comm, &buffer, row.repeats, "AllReduceBuckets", [&] {
    return comm->AllReduceBuckets(buffer.data(), buffer.size(), CommDataType::kFloat32, args.bucket_mib * kMiB);
  });
  std::vector<size_t> parts;  // ShardRanges' rule: sizes differ by at most one
  for (int r = 0; r < comm->world_size(); ++r) {
    parts.push_back(buffer.size() / comm->world_size() + (static_cast<size_t>(r) < buffer.size() % comm->world_size()));
  }
  row.zero = TimeAllReduce(comm, &buffer, row.repeats, "ReduceScatter+AllGather", [&] {
    Status status = comm->ReduceScatter(buffer.data(), parts, CommDataType::kFloat32);
    return status.ok() ? comm->AllGather(buffer.data(), parts, CommDataType::kFloat32) : status;
  });
  buffer = std::vector<float>();  // rank 0's memcpy buffers take its place
  if (comm->rank() == 0) row.memcpy_s = TimeMemcpy(bytes, row.repeats);
  CheckOrAbort(comm->Barrier(), comm);
  return row;
}

void PrintTable(const std::vector<Row>& rows, int world, const Args& args) {
  const double bus_factor = world > 1 ? 2.0 * (world - 1) / world : 0.0;
  std::printf("[allreduce_bench] %d ranks (mpi), fp32 sum, bucket %zu MiB; time = median of the repeats of the "
              "slowest rank; GB/s = 1e9 B/s; busbw = algbw * 2(W-1)/W; memcpy on rank 0 alone\n",
              world, args.bucket_mib);
  if (world == 1) std::printf("[allreduce_bench] a world of one: the all-reduces are no-ops (run under mpirun)\n");
  std::printf("%8s %4s | %28s | %28s | %28s | %17s | %9s\n", "", "", "AllReduce (one call)", "AllReduceBuckets",
              "ReduceScatter+AllGather", "memcpy", "busbw /");
  std::printf("%8s %4s | %8s %9s %9s | %8s %9s %9s | %8s %9s %9s | %8s %8s | %9s\n", "size MiB", "reps", "ms", "algbw",
              "busbw", "ms", "algbw", "busbw", "ms", "algbw", "busbw", "ms", "GB/s", "memcpy");
  for (const Row& row : rows) {
    const double bytes = static_cast<double>(row.mib * kMiB);
    auto gbps = [&](double seconds) { return seconds > 0 ? bytes / seconds / 1e9 : 0.0; };
    const double memcpy_gbps = gbps(row.memcpy_s);
    const double best_busbw =
        bus_factor * std::max({gbps(row.whole.median_s), gbps(row.buckets.median_s), gbps(row.zero.median_s)});
    std::printf("%8zu %4d | %8.2f %9.2f %9.2f | %8.2f %9.2f %9.2f | %8.2f %9.2f %9.2f | %8.2f %8.2f | %9.2f\n",
                row.mib, row.repeats, row.whole.median_s * 1e3, gbps(row.whole.median_s),
                bus_factor * gbps(row.whole.median_s), row.buckets.median_s * 1e3, gbps(row.buckets.median_s),
                bus_factor * gbps(row.buckets.median_s), row.zero.median_s * 1e3, gbps(row.zero.median_s),
                bus_factor * gbps(row.zero.median_s), row.memcpy_s * 1e3, memcpy_gbps,
                memcpy_gbps > 0 ? best_busbw / memcpy_gbps : 0.0);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (!ParseArgs(argc, argv, &args)) return 2;
  if (!args.no_launch && !MpiEnvironment::LaunchedByMpi()) return RelaunchUnderMpirun(args, argc, argv);

  MpiEnvironment mpi(&argc, &argv);
  Result<std::unique_ptr<Communicator>> created = MpiCommunicator::Create();
  if (!created.ok()) {
    std::fprintf(stderr, "allreduce_bench: %s\n", created.status().ToString().c_str());
    return 1;
  }
  Communicator* comm = created->get();

  std::vector<Row> rows;
  int64_t verified = 1;
  for (size_t mib : args.sizes_mib) {
    rows.push_back(MeasureSize(comm, mib, args));
    if (!rows.back().whole.verified || !rows.back().buckets.verified || !rows.back().zero.verified) verified = 0;
  }
  CheckOrAbort(comm->AllReduce(&verified, 1, CommDataType::kInt64, CommReduceOp::kMin), comm);
  if (comm->rank() == 0) {
    PrintTable(rows, comm->world_size(), args);
    if (verified == 0) std::printf("[allreduce_bench] FAILED: a rank's sum was wrong (see its message above)\n");
  }
  return verified == 1 ? 0 : 1;
}
