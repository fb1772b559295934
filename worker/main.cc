// bert-worker: one training process per GPU (or CPU slot).
//
//   mpirun -np N bert-worker --config RUN_DIR/config.yaml [--coordinator tcp://HOST:PORT]
//     trains data-parallel: rank and world size come from MPI (mpirun, or
//     srun --mpi=pmix), batches from bert-coordinator, gradients are summed
//     with MPI all-reduce (NCCL on CUDA builds). `bertctl pretrain` starts
//     the coordinator and the workers together.
//   bert-worker --local --config RUN.yaml [--db DIR...] [--steps N]
//     trains in this one process straight from the sample plan.
//   [mpirun -np N] bert-worker --finetune OUTPUT/finetune.yaml
//     fine-tunes a classifier (worker/finetune/finetune_trainer.h); `bertctl finetune`
//     writes that resolved config and starts it.
//   bert-worker --predict --model DIR --input FILE --output FILE
//     labels texts with a fine-tuned HF directory (worker/finetune/finetune_predict.h).
//   bert-worker --quantize --model DIR --output DIR [--calibration FILE]
//     an int8 copy of a fine-tuned classifier (worker/compress/quantize.h).
//   bert-worker --fill-mask --model DIR --text "a [MASK] b" [--top-k K] [--json]
//     the MLM head's top tokens for each [MASK] (worker/train/fill_mask.h).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "common/logging.h"
#include "common/protocol.h"
#include "common/run_config.h"
#include "finetune/finetune_config.h"
#include "worker/train/distributed_pretrain.h"
#include "worker/compress/quantize.h"
#include "worker/finetune/finetune_predict.h"
#include "worker/compress/pruning.h"
#include "worker/train/fill_mask.h"
#include "worker/finetune/finetune_trainer.h"
#include "worker/train/local_pretrain.h"
#include "worker/comm/mpi_communicator.h"
#include "worker/train/device.h"
#include "worker/train/runtime_setup.h"
#if defined(BERT_WITH_NCCL)
#include "worker/comm/nccl_communicator.h"
#endif

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

// The communicator for the model's flat buffers when they live on a GPU:
// NCCL over the MPI bootstrap. Null on the CPU (MPI carries everything).
bert::Result<std::unique_ptr<bert::Communicator>> MakeBufferComm(bert::Communicator* mpi, const torch::Device& device) {
  if (!device.is_cuda()) return std::unique_ptr<bert::Communicator>();
#if defined(BERT_WITH_NCCL)
  bert::Result<std::unique_ptr<bert::NcclCommunicator>> nccl =
      bert::NcclCommunicator::Create(mpi, device.index(), bert::CurrentDeviceStream(device));
  if (!nccl.ok()) return nccl.status();
  return std::unique_ptr<bert::Communicator>(std::move(nccl).value());
#else
  if (mpi->world_size() > 1) {
    return bert::Status::InvalidArgument(
        "train.device: cuda with " + std::to_string(mpi->world_size()) +
        " ranks needs the NCCL communicator, and this bert-worker was built without NCCL (cmake "
        "-DBERT_WITH_NCCL=ON says why)");
  }
  return std::unique_ptr<bert::Communicator>();
#endif
}

int RunDistributed(const bert::RunConfig& config, bert::DistributedOptions options) {
  bert::Result<std::unique_ptr<bert::Communicator>> comm = bert::MpiCommunicator::Create();
  if (!comm.ok()) {
    LOG(ERROR) << "[worker] " << comm.status().message();
    return bert::kExitError;
  }
  const std::string tag = "[worker r" + std::to_string((*comm)->rank()) + "]";
  bert::Result<bert::DeviceChoice> device =
      bert::ChooseDeviceForThisProcess(config.train.device, "train.device", config.train.tf32);
  if (!device.ok()) {
    LOG(ERROR) << tag << " " << device.status().message();
    return bert::kExitUsage;
  }
  LOG(INFO) << tag << " device " << device->description;
  options.device = device->device.str();
  // On a GPU, NCCL carries the gradients and parameters; MPI the rest.
  bert::Result<std::unique_ptr<bert::Communicator>> buffers = MakeBufferComm(comm->get(), device->device);
  if (!buffers.ok()) {
    LOG(ERROR) << tag << " " << buffers.status().message();
    return buffers.status().code() == bert::Status::Code::kInvalidArgument ? bert::kExitUsage : bert::kExitError;
  }
  options.buffer_comm = buffers->get();
  bert::DistributedOutcome outcome = bert::RunDistributedPretraining(config, comm->get(), options);
  if (outcome.exit_code == bert::kExitRollback) {  // not a failure: the launcher goes on from the checkpoint
    if ((*comm)->rank() == 0) LOG(WARNING) << tag << " " << outcome.status.message();
    return outcome.exit_code;
  }
  if (!outcome.status.ok()) {
    LOG(ERROR) << tag << " " << outcome.status.message();
    return outcome.exit_code;
  }
  return bert::kExitOk;
}

int RunFinetuneMode(const std::string& path) {
  bert::Result<bert::finetune::FinetuneConfig> config = bert::finetune::LoadFinetuneConfig(path);
  if (!config.ok()) {
    LOG(ERROR) << "[worker] " << config.status().message();
    return bert::kExitUsage;
  }
  bert::Result<std::unique_ptr<bert::Communicator>> comm = bert::MpiCommunicator::Create();
  if (!comm.ok()) {
    LOG(ERROR) << "[worker] " << comm.status().message();
    return bert::kExitError;
  }
  // The trainer resolves and logs the device itself; here it decides the gradients' communicator.
  std::unique_ptr<bert::Communicator> buffers;
  bert::Result<bert::DeviceChoice> device = bert::ChooseDeviceForThisProcess(config->device, "train.device");
  if (device.ok() && (*comm)->world_size() > 1) {
    bert::Result<std::unique_ptr<bert::Communicator>> made = MakeBufferComm(comm->get(), device->device);
    if (!made.ok()) {
      LOG(ERROR) << "[worker r" << (*comm)->rank() << "] " << made.status().message();
      return bert::kExitError;
    }
    buffers = std::move(made).value();
  }
  bert::FinetuneOutcome outcome = bert::RunFinetune(*config, comm->get(), buffers.get());
  if (!outcome.status.ok()) {
    LOG(ERROR) << "[worker r" << (*comm)->rank() << "] " << outcome.status.message();
    // A rank that fails alone would leave the others in a collective.
    if ((*comm)->world_size() > 1) (*comm)->Abort(outcome.exit_code);
    return outcome.exit_code;
  }
  return bert::kExitOk;
}

// Prints each text, then per [MASK] its top candidates ("--json": one JSON
// line per text).
int RunFillMaskMode(const std::string& model, const std::vector<std::string>& texts, int32_t top_k, bool json) {
  bert::Result<std::vector<bert::FillMaskResult>> filled = bert::FillMask(model, texts, top_k);
  if (!filled.ok()) {
    LOG(ERROR) << "[fill-mask] " << filled.status().message();
    return bert::kExitUsage;
  }
  for (const bert::FillMaskResult& result : *filled) {
    if (json) {
      nlohmann::json masks = nlohmann::json::array();
      for (size_t m = 0; m < result.candidates.size(); ++m) {
        nlohmann::json candidates = nlohmann::json::array();
        for (const bert::FillMaskCandidate& c : result.candidates[m]) {
          candidates.push_back({{"token", c.token}, {"id", c.id}, {"probability", c.probability}});
        }
        masks.push_back({{"position", result.mask_positions[m]}, {"candidates", candidates}});
      }
      std::printf("%s\n", nlohmann::json({{"text", result.text}, {"tokens", result.tokens}, {"masks", masks}})
                              .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                              .c_str());
      continue;
    }
    std::printf("%s\n", result.text.c_str());
    for (size_t m = 0; m < result.candidates.size(); ++m) {
      std::printf("  [MASK] %zu (token %d):", m + 1, result.mask_positions[m]);
      for (const bert::FillMaskCandidate& c : result.candidates[m]) {
        std::printf("  %s %.4f", c.token.c_str(), c.probability);
      }
      std::printf("\n");
    }
  }
  std::fflush(stdout);
  return bert::kExitOk;
}

int RunPruneMode(const bert::PruneOptions& options) {
  bert::PruneOutcome outcome = bert::RunPrune(options);
  if (!outcome.status.ok()) {
    LOG(ERROR) << "[prune] " << outcome.status.message();
    return outcome.exit_code;
  }
  return bert::kExitOk;
}

int RunPredictMode(const bert::PredictOptions& options) {
  bert::PredictOutcome outcome = bert::RunPredict(options);
  if (!outcome.status.ok()) {
    LOG(ERROR) << "[predict] " << outcome.status.message();
    return outcome.exit_code;
  }
  return bert::kExitOk;
}

int RunQuantizeMode(const bert::QuantizeOptions& options) {
  bert::QuantizeOutcome outcome = bert::RunQuantize(options);
  if (!outcome.status.ok()) {
    LOG(ERROR) << "[quantize] " << outcome.status.message();
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
  app.add_option("--config", config_path, "Run config (YAML), see configs/runs/")->check(CLI::ExistingFile);
  std::string finetune_path;
  app.add_option("--finetune", finetune_path, "Fine-tune per this resolved config (bertctl finetune writes it)")
      ->check(CLI::ExistingFile);
  bool predict = false;
  bert::PredictOptions predict_options;
  std::string predict_format = "auto";
  app.add_flag("--predict", predict, "Label --input with the fine-tuned model --model into --output (JSON lines)");
  bool prune = false;
  bert::PruneOptions prune_options;
  std::string label_field = "label";
  app.add_flag("--prune", prune,
               "Remove --heads attention heads and keep --ffn-keep of the FFN neurons of the fine-tuned --model, by "
               "their importance on --input (labelled), into --output");
  app.add_option("--heads", prune_options.heads, "--prune: attention heads to remove, over all layers")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  app.add_option("--ffn-keep", prune_options.ffn_keep, "--prune: share of each layer's FFN neurons kept, in (0, 1]")
      ->capture_default_str();
  app.add_option("--label-field", label_field, "--prune: label field")->capture_default_str();
  bool quantize = false;
  bert::QuantizeOptions quantize_options;
  app.add_flag("--quantize", quantize, "Write an int8 copy of the fine-tuned model --model into --output");
  app.add_option("--calibration", quantize_options.calibration,
                 "--quantize: texts for static activation ranges (JSONL, CSV or TSV); none: dynamic");
  app.add_option("--calibration-samples", quantize_options.calibration_samples,
                 "--quantize: calibration texts used (the first ones)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 24));
  app.add_flag("--overwrite", quantize_options.overwrite, "--quantize: replace a non-empty --output");
  bool fill_mask = false, fill_mask_json = false;
  std::vector<std::string> fill_mask_texts;
  int32_t top_k = 5;
  app.add_flag("--fill-mask", fill_mask, "Print the top tokens for each [MASK] of --text with the model --model");
  app.add_option("--text", fill_mask_texts, "--fill-mask: a text with [MASK] (repeatable)");
  app.add_option("--top-k", top_k, "--fill-mask: candidates per [MASK]")->capture_default_str();
  app.add_flag("--json", fill_mask_json, "--fill-mask: one JSON line per text");
  app.add_option("--model", predict_options.model_dir,
                 "--predict: fine-tuned HF directory; --fill-mask: run, checkpoint or HF directory");
  app.add_option("--input", predict_options.input, "--predict: examples (JSONL, CSV or TSV)");
  app.add_option("--output", predict_options.output, "--predict: predictions, one JSON line per example");
  app.add_option("--format", predict_format, "--predict: auto, jsonl, csv or tsv")->capture_default_str();
  app.add_option("--text-field", predict_options.text_field, "--predict: text field")->capture_default_str();
  app.add_option("--text-pair-field", predict_options.text_pair_field, "--predict: second text field of pairs");
  app.add_option("--batch-size", predict_options.batch_size, "--predict: examples per forward pass")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--device", predict_options.device, "--predict: auto (a GPU when one is visible), cpu or cuda")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--max-seq-len", predict_options.max_seq_len,
                 "--predict: tokens per example (default: the model's tokenizer_config model_max_length)")
      ->check(CLI::Range(3, 1 << 20));
  app.add_option("--db", dbs, "--local: corpus databases (override data.db of the config)");
  app.add_option("--steps", steps, "--local: optimizer steps (override train.steps)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  app.add_option("--coordinator", dist.endpoint,
                 "Coordinator endpoint, e.g. tcp://node1:5555 (default: read RUN_DIR/coordinator/endpoint)");
  app.add_option("--keys", dist.keys_dir, "The run's CURVE keys (server.pub, worker.secret); default RUN_DIR/keys");
  app.add_flag("--insecure", dist.insecure, "Connect without CURVE (the coordinator must run --insecure too)");
  app.add_option("--run-id", dist.run_id, "Run id to register with (default: the config's name)");
  app.add_option("--generation", dist.generation, "Launcher restart count (logged by the coordinator)");
  app.add_option("--register-timeout-ms", dist.register_timeout_ms, "Give up when the coordinator does not answer")
      ->capture_default_str()
      ->check(CLI::Range(100, 3600000));
  app.add_option("--checksum-every", dist.checksum_every,
                 "Steps between cross-rank parameter checks (0: only at the end)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  bool replicate_optimizer = false;
  app.add_flag("--replicate-optimizer", replicate_optimizer,
               "Keep the whole optimizer state on every rank and all-reduce the gradients (default: ZeRO-1, each "
               "rank keeps and updates 1/W of it: reduce-scatter, update, all-gather)");
  app.add_option("--bucket-mb", bucket_mb, "All-reduce bucket size (MiB), with --replicate-optimizer")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--save-params", dist.save_params,
                 "Rank 0 writes the final parameters here (raw fp32, the flat layout's order)");
  std::vector<uint64_t> fault_nan_steps;
  app.add_option("--fault-nan-steps", fault_nan_steps,
                 "Testing: rank 0 puts a NaN into the gradient of these steps (train.anomaly's rollback)")
      ->delimiter(',');
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? bert::kExitOk : bert::kExitUsage;
  }
  dist.bucket_bytes = static_cast<size_t>(bucket_mb) << 20;
  dist.shard_optimizer = !replicate_optimizer;
  dist.fault_nan_steps.insert(fault_nan_steps.begin(), fault_nan_steps.end());
  if (!finetune_path.empty()) {
    bert::MpiEnvironment mpi(&argc, &argv);
    return RunFinetuneMode(finetune_path);
  }
  if (fill_mask) {
    if (predict_options.model_dir.empty()) {
      LOG(ERROR) << "[fill-mask] --model is required";
      return bert::kExitUsage;
    }
    return RunFillMaskMode(predict_options.model_dir, fill_mask_texts, top_k, fill_mask_json);
  }
  if (prune) {
    bert::Result<bert::finetune::FileFormat> format = bert::finetune::ParseFileFormat(predict_format);
    if (!format.ok() || predict_options.model_dir.empty() || predict_options.input.empty() ||
        predict_options.output.empty()) {
      LOG(ERROR) << "[prune] " << (format.ok() ? "--model, --input and --output are required" : format.status().message());
      return bert::kExitUsage;
    }
    prune_options.model_dir = predict_options.model_dir;
    prune_options.data = predict_options.input;
    prune_options.output = predict_options.output;
    prune_options.format = *format;
    prune_options.fields.text = predict_options.text_field;
    prune_options.fields.text_pair = predict_options.text_pair_field;
    prune_options.fields.label = label_field;
    prune_options.batch_size = predict_options.batch_size;
    prune_options.max_seq_len = predict_options.max_seq_len;
    prune_options.intra_op_threads = predict_options.intra_op_threads;
    return RunPruneMode(prune_options);
  }
  if (quantize) {
    bert::Result<bert::finetune::FileFormat> format = bert::finetune::ParseFileFormat(predict_format);
    if (!format.ok() || predict_options.model_dir.empty() || predict_options.output.empty()) {
      LOG(ERROR) << "[quantize] " << (format.ok() ? "--model and --output are required" : format.status().message());
      return bert::kExitUsage;
    }
    quantize_options.model_dir = predict_options.model_dir;
    quantize_options.output = predict_options.output;
    quantize_options.format = *format;
    quantize_options.text_field = predict_options.text_field;
    quantize_options.text_pair_field = predict_options.text_pair_field;
    quantize_options.max_seq_len = predict_options.max_seq_len;
    return RunQuantizeMode(quantize_options);
  }
  if (predict) {
    bert::Result<bert::finetune::FileFormat> format = bert::finetune::ParseFileFormat(predict_format);
    if (!format.ok() || predict_options.model_dir.empty() || predict_options.input.empty() ||
        predict_options.output.empty()) {
      LOG(ERROR) << "[predict] "
                 << (format.ok() ? "--model, --input and --output are required" : format.status().message());
      return bert::kExitUsage;
    }
    predict_options.format = *format;
    return RunPredictMode(predict_options);
  }
  if (config_path.empty()) {
    LOG(ERROR) << "[worker] --config is required (or --finetune FILE, or --predict)";
    return bert::kExitUsage;
  }

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
