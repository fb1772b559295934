// Coordinator scale benchmark: one coordinator (its own process, CURVE on,
// as every real run) feeding 16, 64 and 256 model-free workers on loopback,
// each consuming micro-batches of 32 samples at a set rate, as a GPU would.
// It reports, for each worker count, the samples/s offered and delivered,
// the coordinator's CPU (all its threads: batch building, the ZeroMQ loop,
// the ledger, CURVE) per 1000 samples, and the largest data-wait fraction
// of any worker (the time a worker waited for a batch, over its run, the
// first step left out). From the CPU per sample it projects how many GPUs
// one coordinator host feeds at bert-base and bert-large H200 rates.
// The workers share this machine's cores with the coordinator, so the
// figures are an upper bound on the coordinator's cost.
// The corpus is the Linux kernel documentation (Debian's linux-doc-6.1).
//   scale_bench [--smoke] [--rate SAMPLES_PER_S_PER_WORKER] [--seconds S] [--workers N,N,...]
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "common/curve_keys.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "coordinator/client.h"
#include "coordinator/server.h"
#include "bench/coordinator/kernel_docs_corpus.h"
#include "datapipe/corpus_ingest.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kMicro = 32;  // samples per micro-batch, one per rank per step

int Fail(const bert::Status& status) {
  std::fprintf(stderr, "scale_bench: %s\n", status.message().c_str());
  return 1;
}

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec + 1e-6 * (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

struct Result {
  bool ok = false;
  double coordinator_cpu_s = 0;  // from the server's start (its builders) to its end
  uint64_t samples = 0;
  double bytes_per_sample = 0;   // of the batches on the wire
  double seconds = 0;            // the workers' wall time, first batch to last ack, first step left out
  double max_wait_fraction = 0, mean_wait_fraction = 0;
};

// The coordinator: a child process that opens the corpus, serves `steps`
// steps to `workers` ranks and reports its CPU time through `fd`.
[[noreturn]] void ServeInChild(const std::string& db, const std::string& dir, uint32_t workers, uint64_t steps,
                               int fd) {
  bert::RunConfig config;
  config.vocab = bert::bench::KernelDocsCorpus::vocab_path();
  config.data.db = {db};
  auto data = bert::OpenDataSource(config, uint64_t{1} << 33);
  auto geometry = bert::DispatchGeometry::Make(uint64_t{workers} * kMicro, workers, kMicro);
  auto keys = bert::LoadOrCreateServerKeys(dir + "/keys");
  bert::LedgerMeta meta;
  meta.run_id = "scale";
  meta.global_batch_size = uint64_t{workers} * kMicro;
  if (!data.ok() || !geometry.ok() || !keys.ok()) _exit(2);
  auto ledger = bert::Ledger::Open(dir + "/ledger", meta);
  if (!ledger.ok()) _exit(2);
  bert::ServerOptions options;
  options.run_id = "scale";
  options.total_steps = steps;
  options.prefetch = 4;
  options.progress_every_s = 1e9;
  options.linger_ms = 200;
  options.heartbeat_timeout_ms = 60000;  // hundreds of workers on 2 cores answer late
  options.register_timeout_ms = 120000;
  options.keys = *keys;
  int code = 2;
  bert::ServerStats stats;
  const double cpu_start = CpuSeconds();  // the builders start in Bind() and build ahead
  {
    bert::Server server(options, *data, *geometry, ledger->get());
    auto endpoint = server.Bind();
    if (!endpoint.ok()) _exit(2);
    const std::string line = *endpoint + "\n";
    if (write(fd, line.data(), line.size()) < 0) _exit(2);
    code = server.Run();
    stats = server.stats();
  }  // the server's sockets linger until every worker has its Done
  char report[96];
  const int n = std::snprintf(report, sizeof report, "%.6f %.1f\n", CpuSeconds() - cpu_start,
                              static_cast<double>(stats.bytes_sent) / std::max<uint64_t>(1, stats.samples_sent));
  if (write(fd, report, static_cast<size_t>(n)) < 0) _exit(2);
  _exit(code);
}

bool ReadLine(int fd, std::string* line) {
  line->clear();
  char c;
  while (read(fd, &c, 1) == 1) {
    if (c == '\n') return true;
    *line += c;
  }
  return false;
}

Result RunScale(const std::string& db, const std::string& temp, uint32_t workers, double rate, double seconds) {
  Result result;
  const double micro_s = kMicro / rate;  // a worker's time per micro-batch
  const uint64_t steps = std::max<uint64_t>(4, static_cast<uint64_t>(seconds / micro_s));
  const std::string dir = temp + "/run-" + std::to_string(workers);
  std::filesystem::create_directories(dir);
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return result;
  const pid_t child = fork();
  if (child == 0) {
    close(pipe_fds[0]);
    ServeInChild(db, dir, workers, steps, pipe_fds[1]);
  }
  close(pipe_fds[1]);
  std::string endpoint;
  if (child < 0 || !ReadLine(pipe_fds[0], &endpoint)) return result;
  auto keys = bert::LoadWorkerKeys(dir + "/keys");
  if (!keys.ok()) return result;
  std::vector<double> waits(workers, 0), walls(workers, 0);
  std::atomic<uint64_t> batches{0};
  std::vector<std::thread> threads;
  for (uint32_t rank = 0; rank < workers; ++rank) {
    threads.emplace_back([&, rank] {
      bert::ClientOptions options;
      options.endpoint = endpoint;
      options.run_id = "scale";
      options.rank = rank;
      options.world_size = workers;
      options.keys = *keys;
      options.register_timeout_ms = 120000;
      bert::CoordinatorClient client(options);
      if (!client.Register().ok()) return;
      Clock::time_point first, last;
      bool started = false;
      while (true) {
        auto next = client.NextBatch();
        if (!next.ok() || !next->has_value()) break;
        if (!started) {  // the wait for the first batch is the builders' start: left out
          started = true;
          first = Clock::now();
        } else {
          waits[rank] += (*next)->wait_ms / 1000.0;
        }
        ++batches;
        // "Training": a fixed time per micro-batch, as a GPU takes (a late batch delays the rest).
        std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(micro_s * 1e6)));
        last = Clock::now();
        client.Ack((*next)->step, (*next)->micro, 0, static_cast<float>(micro_s * 1e3),
                   static_cast<float>((*next)->wait_ms));
      }
      walls[rank] = std::chrono::duration<double>(last - first).count();
    });
  }
  for (std::thread& t : threads) t.join();
  std::string cpu;
  const bool reported = ReadLine(pipe_fds[0], &cpu);
  close(pipe_fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  if (!reported || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return result;
  result.ok = true;
  char* rest = nullptr;
  result.coordinator_cpu_s = std::strtod(cpu.c_str(), &rest);
  result.bytes_per_sample = std::strtod(rest, nullptr);
  result.samples = batches.load() * kMicro;
  for (uint32_t rank = 0; rank < workers; ++rank) {
    const double fraction = walls[rank] > 0 ? waits[rank] / walls[rank] : 1.0;
    result.max_wait_fraction = std::max(result.max_wait_fraction, fraction);
    result.mean_wait_fraction += fraction / workers;
    result.seconds = std::max(result.seconds, walls[rank]);
  }
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  bert::InitLogging(argv[0]);
  FLAGS_minloglevel = 2;
  bool smoke = false;
  double rate = 50, seconds = 8;
  std::vector<uint32_t> counts = {16, 64, 256};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--smoke")) {
      smoke = true;
    } else if (!std::strcmp(argv[i], "--rate") && i + 1 < argc) {
      rate = std::strtod(argv[++i], nullptr);
    } else if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc) {
      seconds = std::strtod(argv[++i], nullptr);
    } else if (!std::strcmp(argv[i], "--workers") && i + 1 < argc) {
      counts.clear();
      for (char* part = std::strtok(argv[++i], ","); part != nullptr; part = std::strtok(nullptr, ",")) {
        counts.push_back(static_cast<uint32_t>(std::strtoul(part, nullptr, 10)));
      }
    } else {
      std::fprintf(stderr, "usage: scale_bench [--smoke] [--rate SAMPLES_PER_S_PER_WORKER] [--seconds S] "
                           "[--workers N,N,...]\n");
      return 2;
    }
  }
  if (smoke) {
    counts = {4, 16};
    seconds = 1;
  }
  if (rate <= 0 || seconds <= 0 || counts.empty()) return Fail(bert::Status::InvalidArgument("bad flag value"));

  bert::bench::KernelDocsCorpus corpus("bert-scale-bench");  // removed on every way out
  if (bert::Status ingested = corpus.Ingest(smoke ? 200 : 2000); !ingested.ok()) return Fail(ingested);
  const std::string temp = corpus.dir();

  std::printf("scale_bench: linux-doc-6.1 (%zu files%s), seq 128, micro-batches of %u, each worker consuming %.0f "
              "samples/s, CURVE on, %u CPU cores shared by the coordinator and every worker\n",
              corpus.num_files(), smoke ? ", smoke" : "", kMicro, rate, std::thread::hardware_concurrency());
  std::printf("  %7s %11s %12s %22s %15s %15s\n", "workers", "offered/s", "delivered/s", "coord core-s/1k smp",
              "max data wait", "mean data wait");
  double busiest_cpu_per_1k = 0, busiest_rate = 0;  // at the highest delivered rate (fixed costs amortised)
  double bytes_per_sample = 0;
  uint32_t served = 0;
  for (uint32_t workers : counts) {
    const Result r = RunScale(corpus.db(), temp, workers, rate, seconds);
    if (!r.ok || r.samples == 0) return Fail(bert::Status::IoError("the run with " + std::to_string(workers) + " workers failed"));
    const double cpu_per_1k = 1000.0 * r.coordinator_cpu_s / static_cast<double>(r.samples);
    const double delivered = static_cast<double>(r.samples) / r.seconds;
    if (delivered > busiest_rate) {
      busiest_rate = delivered;
      busiest_cpu_per_1k = cpu_per_1k;
    }
    if (r.max_wait_fraction <= 0.01) served = workers;
    bytes_per_sample = r.bytes_per_sample;
    std::printf("  %7u %11.0f %12.0f %22.4f %14.2f%% %14.2f%%\n", workers, workers * rate,
                delivered, cpu_per_1k, 100 * r.max_wait_fraction,
                100 * r.mean_wait_fraction);
  }
  std::printf("  workers served with every data wait <= 1%%: %u (at %.0f samples/s each)\n", served, rate);
  // One coordinator host of C cores delivers C / (core-s per sample) samples/s.
  for (const auto& [model, per_gpu] : {std::pair<const char*, double>{"bert-base", 4000},
                                       std::pair<const char*, double>{"bert-large", 1000}}) {
    const double per_core = 1000.0 / busiest_cpu_per_1k;  // samples/s one core sustains
    std::printf("  projection (%s at %.0f samples/s per H200): one core feeds %.1f GPUs, a 32-core coordinator "
                "host %.0f GPUs (CPU cost only, at the cost per sample of the busiest run above)\n",
                model, per_gpu, per_core / per_gpu, 32 * per_core / per_gpu);
  }
  std::printf("  on the wire: %.0f bytes per sample, so %.1f MB/s per bert-base GPU at 4000 samples/s (a 25 Gb/s NIC "
              "carries %.0f such GPUs)\n",
              bytes_per_sample, bytes_per_sample * 4000 / 1e6, 25e9 / 8 / (bytes_per_sample * 4000));
  return 0;
}
