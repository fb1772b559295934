// Dispatch benchmark: samples/s and MB/s that the coordinator delivers to 2
// workers over TCP loopback (batch building, ledger writes, ZeroMQ, the
// client's checksum + decode, acks and credits all included), beside raw
// ZeroMQ moving frames of the same size between the same sockets in the
// same run:
//   - with the same credit window (one credit back per frame), and
//   - streaming without flow control,
// and the batch builders' own rate (samples per core-second), which shows
// whether dispatch is bound by building or by transport.
// Dispatch runs twice: with CURVE authentication and encryption (the
// default of every run) and without (--insecure), so the cost of CURVE shows.
// The corpus is the Linux kernel documentation (Debian's linux-doc-6.1).
//   dispatch_bench [--smoke] [--steps N] [--prefetch P] [--build-threads T]
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>

#include "common/curve_keys.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "coordinator/client.h"
#include "coordinator/server.h"
#include "bench/coordinator/kernel_docs_corpus.h"
#include "datapipe/corpus_ingest.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kWorkers = 2;

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

int Fail(const bert::Status& status) {
  std::fprintf(stderr, "dispatch_bench: %s\n", status.message().c_str());
  return 1;
}

struct Rate {
  double seconds = 0;
  uint64_t messages = 0, bytes = 0;
};

// The coordinator (in this process, its own thread) and kWorkers clients.
// With keys, both ends use CURVE (encryption and the ZAP handshake), as every
// real run does unless --insecure.
Rate RunDispatch(const bert::DataSource& data, const bert::DispatchGeometry& geometry, uint64_t steps,
                 const bert::ServerOptions& base, const std::string& ledger_dir,
                 const std::optional<bert::WorkerKeys>& keys, bert::ServerStats* stats) {
  bert::LedgerMeta meta;
  meta.run_id = "bench";
  meta.global_batch_size = geometry.global_batch_size;
  auto ledger = bert::Ledger::Open(ledger_dir, meta);
  if (!ledger.ok()) return Rate();
  bert::ServerOptions options = base;
  options.run_id = "bench";
  options.total_steps = steps;
  bert::Server server(options, data, geometry, ledger->get());
  auto endpoint = server.Bind();
  if (!endpoint.ok()) return Rate();
  std::thread serving([&] { server.Run(); });
  std::vector<std::thread> workers;
  std::atomic<uint64_t> bytes{0}, batches{0};
  const auto start = Clock::now();
  for (uint32_t rank = 0; rank < kWorkers; ++rank) {
    workers.emplace_back([&, rank] {
      bert::ClientOptions client_options;
      client_options.endpoint = *endpoint;
      client_options.run_id = "bench";
      client_options.rank = rank;
      client_options.world_size = kWorkers;
      client_options.keys = keys;
      bert::CoordinatorClient client(client_options);
      if (!client.Register().ok()) return;
      while (true) {
        auto next = client.NextBatch();
        if (!next.ok() || !next->has_value()) return;
        bytes += (*next)->payload_bytes;
        ++batches;
        client.Ack((*next)->step, (*next)->micro, 0, 0, static_cast<float>((*next)->wait_ms));
      }
    });
  }
  for (std::thread& t : workers) t.join();
  Rate rate;
  rate.seconds = Seconds(start);
  rate.messages = batches;
  rate.bytes = bytes;
  serving.join();
  *stats = server.stats();
  return rate;
}

// Raw ZeroMQ: a ROUTER sends `per_worker` frames of `frame_bytes` to each
// DEALER. With a credit window, a worker returns one small frame per frame
// it takes; window 0 streams without flow control.
Rate RunRawZmq(uint64_t per_worker, size_t frame_bytes, uint32_t window) {
  zmq::context_t context(1);
  zmq::socket_t router(context, zmq::socket_type::router);
  bert::ConfigureSocket(router, -1, 0);
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
  std::vector<std::thread> workers;
  for (uint32_t rank = 0; rank < kWorkers; ++rank) {
    workers.emplace_back([&, rank] {
      zmq::socket_t dealer(context, zmq::socket_type::dealer);
      bert::ConfigureSocket(dealer, -1, 0);
      dealer.connect(endpoint);
      dealer.send(zmq::buffer(std::string(1, static_cast<char>('0' + rank))), zmq::send_flags::none);  // hello
      zmq::message_t frame;
      for (uint64_t i = 0; i < per_worker; ++i) {
        (void)dealer.recv(frame);
        if (window > 0) dealer.send(zmq::buffer("c", 1), zmq::send_flags::none);
      }
    });
  }
  std::vector<std::string> identities;
  zmq::message_t identity, body;
  for (uint32_t i = 0; i < kWorkers; ++i) {
    (void)router.recv(identity);
    (void)router.recv(body);
    identities.push_back(identity.to_string());
  }
  const std::string payload(frame_bytes, 'p');
  const auto start = Clock::now();
  std::vector<uint64_t> sent(kWorkers, 0), credits(kWorkers, window);
  auto send_to = [&](uint32_t w) {
    router.send(zmq::buffer(identities[w]), zmq::send_flags::sndmore);
    router.send(zmq::message_t(payload.data(), payload.size()), zmq::send_flags::none);  // a copy, like a fresh batch
    ++sent[w];
  };
  if (window == 0) {
    for (uint64_t i = 0; i < per_worker; ++i) {
      for (uint32_t w = 0; w < kWorkers; ++w) send_to(w);
    }
  } else {
    uint64_t done = 0;
    while (done < kWorkers * per_worker) {
      for (uint32_t w = 0; w < kWorkers; ++w) {
        while (credits[w] > 0 && sent[w] < per_worker) {
          send_to(w);
          --credits[w];
          ++done;
        }
      }
      if (done == kWorkers * per_worker) break;
      (void)router.recv(identity);
      (void)router.recv(body);
      for (uint32_t w = 0; w < kWorkers; ++w) credits[w] += identities[w] == identity.to_string();
    }
  }
  for (std::thread& t : workers) t.join();
  Rate rate;
  rate.seconds = Seconds(start);
  rate.messages = kWorkers * per_worker;
  rate.bytes = rate.messages * frame_bytes;
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  bert::InitLogging(argv[0]);
  FLAGS_minloglevel = 1;
  bool smoke = false;
  uint64_t steps = 0;
  bert::ServerOptions options;
  options.prefetch = 8;
  options.progress_every_s = 1e9;
  options.linger_ms = 200;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--smoke")) smoke = true;
    else if (!std::strcmp(argv[i], "--steps") && i + 1 < argc) steps = std::strtoull(argv[++i], nullptr, 10);
    else if (!std::strcmp(argv[i], "--prefetch") && i + 1 < argc) options.prefetch = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--build-threads") && i + 1 < argc) options.builder.num_threads = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: dispatch_bench [--smoke] [--steps N] [--prefetch P] [--build-threads T]\n");
      return 2;
    }
  }
  if (steps == 0) steps = smoke ? 40 : 400;

  bert::bench::KernelDocsCorpus corpus("bert-dispatch-bench");  // removed on every way out
  if (bert::Status ingested = corpus.Ingest(smoke ? 200 : 2000); !ingested.ok()) return Fail(ingested);
  const std::string temp = corpus.dir();
  bert::RunConfig config;
  config.vocab = bert::bench::KernelDocsCorpus::vocab_path();
  config.data.db = {corpus.db()};
  auto data = bert::OpenDataSource(config, uint64_t{1} << 33);
  if (!data.ok()) return Fail(data.status());
  auto geometry = bert::DispatchGeometry::Make(256, kWorkers, 32);  // BERT's batch of 256 at seq 128
  if (!geometry.ok()) return Fail(geometry.status());

  std::printf("dispatch_bench: linux-doc-6.1 (%zu files%s), %llu documents; seq %d, G 256 = %u ranks x %u micro-batches "
              "of 32; prefetch %u; %d build threads; %u CPU cores\n",
              corpus.num_files(), smoke ? ", smoke" : "", (unsigned long long)data->index->num_documents(),
              data->options.max_seq_len, kWorkers, geometry->micro_batches, options.prefetch,
              options.builder.num_threads, std::thread::hardware_concurrency());
  auto server_keys = bert::LoadOrCreateServerKeys(temp + "/keys");
  if (!server_keys.ok()) return Fail(server_keys.status());
  auto worker_keys = bert::LoadWorkerKeys(temp + "/keys");
  if (!worker_keys.ok()) return Fail(worker_keys.status());
  bert::ServerOptions curve_options = options;
  curve_options.keys = *server_keys;
  bert::ServerStats curve_stats;
  const Rate curve = RunDispatch(*data, *geometry, steps, curve_options, temp + "/ledger-curve", *worker_keys, &curve_stats);
  if (curve_stats.exit_code != bert::kExitOk || curve.messages == 0) {
    return Fail(bert::Status::IoError("the CURVE dispatch run failed (exit code " + std::to_string(curve_stats.exit_code) + ")"));
  }
  bert::ServerStats stats;
  const Rate dispatch = RunDispatch(*data, *geometry, steps, options, temp + "/ledger", std::nullopt, &stats);
  if (stats.exit_code != bert::kExitOk || dispatch.messages == 0) {
    return Fail(bert::Status::IoError("the dispatch run failed (exit code " + std::to_string(stats.exit_code) + ")"));
  }
  const double samples = static_cast<double>(dispatch.messages) * geometry->micro_batch_size;
  const size_t frame_bytes = dispatch.bytes / dispatch.messages;
  std::printf("  coordinator -> %u workers (tcp, --insecure) %9.0f samples/s  %7.1f MB/s  (%llu batches of %.1f KB in %.2f s)\n",
              kWorkers, samples / dispatch.seconds, dispatch.bytes / 1e6 / dispatch.seconds,
              (unsigned long long)dispatch.messages, frame_bytes / 1e3, dispatch.seconds);
  std::printf("  the same with CURVE (the default)          %9.0f samples/s  %7.1f MB/s  (%.0f%% of plain)\n",
              curve.messages * double(geometry->micro_batch_size) / curve.seconds, curve.bytes / 1e6 / curve.seconds,
              100.0 * (curve.messages * double(geometry->micro_batch_size) / curve.seconds) / (samples / dispatch.seconds));
  std::printf("  batch building alone (generate+mask+encode) %9.0f samples/core-s  (%.2f core-s for %llu samples)\n",
              stats.samples_built / std::max(1e-9, stats.build_cpu_s), stats.build_cpu_s,
              (unsigned long long)stats.samples_built);
  const uint64_t per_worker = dispatch.messages / kWorkers;
  for (uint32_t window : {options.prefetch, 0u}) {
    const Rate raw = RunRawZmq(per_worker, frame_bytes, window);
    std::printf("  reference: raw ZeroMQ, same frames, %-10s %9.0f samples/s  %7.1f MB/s  (%.0f frames/s; dispatch at %.0f%%)\n",
                window ? "credits" : "streaming", raw.messages * double(geometry->micro_batch_size) / raw.seconds,
                raw.bytes / 1e6 / raw.seconds, raw.messages / raw.seconds,
                100.0 * (samples / dispatch.seconds) / (raw.messages * double(geometry->micro_batch_size) / raw.seconds));
  }
  return 0;
}
