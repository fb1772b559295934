// bert-worker: one training process per GPU (or CPU slot).
//
//   mpirun -np N bert-worker --config RUN_DIR/config.yaml [--coordinator tcp://HOST:PORT]
//     trains data-parallel: rank and world size come from MPI (mpirun, or
//     srun --mpi=pmix), batches from bert-coordinator, gradients are summed
//     with MPI all-reduce (NCCL on CUDA builds). `bertctl pretrain` starts
//     the coordinator and the workers together.
//   bert-worker --local --config RUN.yaml [--db DIR...] [--steps N]
//     trains in this one process straight from the sample plan.
#include <CLI/CLI.hpp>

#include <iostream>

#include "common/logging.h"
#include "common/protocol.h"
#include "common/run_config.h"
#include "worker/distributed_pretrain.h"
#include "worker/local_pretrain.h"
#include "worker/mpi_communicator.h"
#include "worker/runtime_setup.h"

namespace {

int RunLocal(const bert::RunConfig& config) {
  bert::Result<bert::LocalPretrainResult> result = bert::RunLocalPretraining(config);
  if (!result.ok()) {
    LOG(ERROR) << "[worker] " << result.status().message();
    return result.status().code() == bert::Status::Code::kInvalidArgument ? bert::kExitUsage : bert::kExitError;
  }
  std::printf("trained %lld steps: loss %.4f, MLM accuracy %.3f, %.1f samples/s, MFU %.1f%%\n",
              (long long)result->steps, result->final_loss, result->final_mlm_accuracy, result->samples_per_second,
              100 * result->mfu);
  return bert::kExitOk;
}

int RunDistributed(const bert::RunConfig& config, const bert::DistributedOptions& options) {
  bert::Result<std::unique_ptr<bert::Communicator>> comm = bert::MpiCommunicator::Create();
  if (!comm.ok()) {
    LOG(ERROR) << "[worker] " << comm.status().message();
    return bert::kExitError;
  }
  bert::DistributedOutcome outcome = bert::RunDistributedPretraining(config, comm->get(), options);
  if (!outcome.status.ok()) {
    LOG(ERROR) << "[worker r" << (*comm)->rank() << "] " << outcome.status.message();
    return outcome.exit_code;
  }
  return bert::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  bert::ReexecWithTunedEnvironment(argv);  // first: OpenBLAS and OpenMP read these at load time
  bert::KeepLargeAllocationsOnHeap();
  bert::InitLogging(argv[0]);
  CLI::App app{
      "bert-worker: trains BERT (LibTorch).\n"
      "Under mpirun/srun it is one rank of a data-parallel run fed by bert-coordinator;\n"
      "with --local it trains alone, reading the corpus directly."};
  app.footer(
      "Examples:\n"
      "  bertctl pretrain --config configs/runs/tiny.yaml --workers 2     (starts coordinator and workers)\n"
      "  mpirun -np 2 bert-worker --config runs/tiny/config.yaml           (coordinator already running)\n"
      "  bert-worker --local --config configs/runs/tiny.yaml --steps 100\n"
      "Exit codes: 0 done, 1 error, 2 bad flag or config, 3 aborted by the coordinator (a peer died),\n"
      "4 coordinator lost, 5 registration refused or timed out.");
  bool local = false;
  std::string config_path;
  std::vector<std::string> dbs;
  int64_t steps = 0;
  bert::DistributedOptions dist;
  int bucket_mb = 25;
  app.add_flag("--local", local, "Train in this single process, reading the sample plan directly");
  app.add_option("--config", config_path, "Run config (YAML), see configs/runs/")->required()->check(CLI::ExistingFile);
  app.add_option("--db", dbs, "--local: corpus databases (override data.db of the config)");
  app.add_option("--steps", steps, "--local: optimizer steps (override train.steps)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  app.add_option("--coordinator", dist.endpoint,
                 "Coordinator endpoint, e.g. tcp://node1:5555 (default: read RUN_DIR/coordinator/endpoint)");
  app.add_option("--run-id", dist.run_id, "Run id to register with (default: the config's name)");
  app.add_option("--generation", dist.generation, "Launcher restart count (logged by the coordinator)");
  app.add_option("--register-timeout-ms", dist.register_timeout_ms, "Give up when the coordinator does not answer")
      ->capture_default_str()
      ->check(CLI::Range(100, 3600000));
  app.add_option("--checksum-every", dist.checksum_every,
                 "Steps between cross-rank parameter checks (0: only at the end)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--bucket-mb", bucket_mb, "All-reduce bucket size (MiB)")->capture_default_str()->check(CLI::Range(1, 4096));
  app.add_option("--save-params", dist.save_params,
                 "Rank 0 writes the final parameters here (raw fp32, the flat layout's order)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? bert::kExitOk : bert::kExitUsage;
  }
  dist.bucket_bytes = static_cast<size_t>(bucket_mb) << 20;

  bert::Result<bert::RunConfig> config = bert::LoadRunConfig(config_path);
  if (!config.ok()) {
    LOG(ERROR) << "[worker] " << config.status().message();
    return bert::kExitUsage;
  }
  if (!local && (!dbs.empty() || steps > 0)) {
    LOG(ERROR) << "[worker] --db and --steps apply to --local; a distributed run takes them from its config";
    return bert::kExitUsage;
  }
  if (!dbs.empty()) config->data.db = dbs;
  if (steps > 0) {
    config->train.steps = steps;
    config->train.warmup_steps = std::min(config->train.warmup_steps, steps);
  }
  bert::Status valid = config->Validate();
  if (!valid.ok()) {
    LOG(ERROR) << "[worker] " << config_path << ": " << valid.message();
    return bert::kExitUsage;
  }
  if (local) return RunLocal(*config);
  bert::MpiEnvironment mpi(&argc, &argv);
  return RunDistributed(*config, dist);
}
