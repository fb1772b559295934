// bert-fake-worker: a worker without a model, for the coordinator's
// multi-process tests. It registers through CoordinatorClient, pulls
// batches, "trains" for --step-time-ms per micro-batch, acknowledges them,
// and exits with the code a real worker would (ExitCodeFor in
// coordinator/client.h): 0 done, 3 aborted, 4 coordinator lost, 5 refused.
// Tests make it die or hang with signals (SIGKILL, SIGSTOP).
//
// --record FILE appends one JSON line per batch received (step, micro,
// epoch, sample range, payload checksum, and whether every sample's index
// matched), so a test can compare what workers got with the ledger.
//
// --keys DIR (the run's RUN_DIR/keys) or --insecure: how it authenticates.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include "common/file_util.h"
#include "common/logging.h"
#include "coordinator/client.h"

namespace {

struct Args {
  bert::ClientOptions client;
  std::string endpoint_file;  // read the endpoint from here (waits for it)
  int step_time_ms = 0;
  std::string record;
  std::string keys_dir;  // CURVE keys (server.pub, worker.secret); required unless insecure
  bool insecure = false;
};

// Waits up to timeout_ms for the coordinator to write its endpoint.
std::string ReadEndpoint(const std::string& path, int timeout_ms) {
  for (int waited = 0; waited <= timeout_ms; waited += 20) {
    bert::Result<std::string> text = bert::ReadFile(path);
    if (text.ok() && !text->empty() && text->back() == '\n') return text->substr(0, text->size() - 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return "";
}

// Checks what a test relies on beyond the client's own checks.
bool IndicesMatch(const bert::WorkerBatch& b) {
  for (size_t i = 0; i < b.batch.samples.size(); ++i) {
    if (b.batch.samples[i].index != b.sample_begin + i) return false;
  }
  return true;
}

int Run(Args& args) {
  const std::string tag = "[worker r" + std::to_string(args.client.rank) + "] ";
  if (args.client.endpoint.empty()) args.client.endpoint = ReadEndpoint(args.endpoint_file, 30000);
  if (args.client.endpoint.empty()) {
    LOG(ERROR) << tag << "no endpoint in " << args.endpoint_file;
    return bert::kExitCoordinatorLost;
  }
  // After the endpoint: the coordinator writes its keys before it.
  if (!args.insecure) {
    bert::Result<bert::WorkerKeys> keys = bert::LoadWorkerKeys(args.keys_dir);
    if (!keys.ok()) {
      LOG(ERROR) << tag << "--keys: " << keys.status().message();
      return bert::kExitUsage;
    }
    args.client.keys = *keys;
  }
  bert::CoordinatorClient client(args.client);
  bert::Result<bert::RunInfo> run = client.Register();
  if (!run.ok()) {
    LOG(ERROR) << tag << run.status().message();
    return bert::ExitCodeFor(client.end_reason());
  }
  LOG(INFO) << tag << "registered with " << args.client.endpoint << ": steps " << run->start_step << ".."
            << run->total_steps << ", " << run->micro_batches_per_step << " micro-batches of "
            << run->micro_batch_size << ", prefetch " << run->prefetch;
  std::ofstream record;
  if (!args.record.empty()) record.open(args.record, std::ios::app);
  uint64_t batches = 0;
  while (true) {
    bert::Result<std::optional<bert::WorkerBatch>> next = client.NextBatch();
    if (!next.ok()) {
      LOG(ERROR) << tag << next.status().message() << " (" << bert::EndReasonName(client.end_reason()) << " after "
                 << batches << " batches)";
      return bert::ExitCodeFor(client.end_reason());
    }
    if (!next->has_value()) break;
    const bert::WorkerBatch& b = **next;
    if (record.is_open()) {
      record << "{\"step\":" << b.step << ",\"micro\":" << b.micro << ",\"rank\":" << args.client.rank
             << ",\"epoch\":" << b.epoch << ",\"begin\":" << b.sample_begin << ",\"end\":" << b.sample_end
             << ",\"samples\":" << b.batch.samples.size() << ",\"checksum\":\"" << bert::Hex64(b.checksum)
             << "\",\"indices_ok\":" << (IndicesMatch(b) ? "true" : "false") << "}" << std::endl;
    }
    if (args.step_time_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(args.step_time_ms));
    client.Ack(b.step, b.micro, 10.0f / (1 + b.step), static_cast<float>(args.step_time_ms),
               static_cast<float>(b.wait_ms));
    ++batches;
  }
  LOG(INFO) << tag << "run complete after " << batches << " batches";
  return bert::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  bert::InitLogging(argv[0]);
  CLI::App app{"bert-fake-worker: a model-less worker for coordinator tests"};
  Args args;
  app.add_option("--endpoint", args.client.endpoint, "Coordinator endpoint");
  app.add_option("--endpoint-file", args.endpoint_file, "Read the endpoint from this file (RUN_DIR/coordinator/endpoint)");
  app.add_option("--run-id", args.client.run_id, "Run id")->required();
  app.add_option("--rank", args.client.rank, "Rank")->required();
  app.add_option("--world-size", args.client.world_size, "World size")->required();
  app.add_option("--generation", args.client.generation, "Launcher generation");
  app.add_option("--host", args.client.host, "Host name to report");
  app.add_option("--register-timeout-ms", args.client.register_timeout_ms, "Register timeout");
  app.add_option("--step-time-ms", args.step_time_ms, "Sleep per micro-batch (pretend training)");
  app.add_option("--record", args.record, "Append one JSON line per batch received");
  app.add_option("--keys", args.keys_dir, "CURVE key directory of the run (RUN_DIR/keys)");
  app.add_flag("--insecure", args.insecure, "Connect without CURVE (the coordinator must run --insecure)");
  CLI11_PARSE(app, argc, argv);
  if (args.insecure != args.keys_dir.empty()) {
    LOG(ERROR) << "[worker r" << args.client.rank << "] exactly one of --keys DIR and --insecure is required";
    return bert::kExitUsage;
  }
  return Run(args);
}
