// Activation checkpointing (train.activation_checkpointing): the memory it
// saves and the step time it costs, beside the plain step in the same run.
// Each configuration runs in its own child process (this binary re-executed
// with --child), which reports its step time and how much its peak resident
// memory grew over the training steps beyond what the model and optimizer
// took before them: the activations alive at the peak. glibc is told to
// keep freed blocks (runtime_setup.h), so the peak stays visible to
// getrusage. Defaults: bert-base at sequence 512, batch 4, 2 timed steps.
//
//   activation_checkpointing_bench [--smoke] [--model base] [--seq 512] [--batch 4] [--steps 2] [--threads 1]
// --smoke: bert-tiny, seq 32, batch 2, one step (proves it runs).
#include "worker/torch.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/logging.h"
#include "worker/model/bert_heads.h"
#include "worker/train/runtime_setup.h"
#include "worker/train/train_step.h"

namespace {

using namespace bert;  // NOLINT: a benchmark's main file

struct Args {
  std::string model = "base";
  int64_t seq = 512, batch = 4;
  int steps = 2, threads = 1;
  std::string child;  // "", "plain" or "checkpointed"
};

double PeakRssMb() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // KiB on Linux
}

PretrainBatch MakeBatch(int64_t b, int64_t t, int64_t vocab_size) {
  torch::manual_seed(1);
  const int64_t m = std::max<int64_t>(1, t * 15 / 100);
  PretrainBatch batch;
  batch.input_ids = torch::randint(1000, vocab_size, {b, t}, torch::kLong);
  batch.token_type_ids = torch::zeros({b, t}, torch::kLong);
  batch.token_type_ids.narrow(1, t / 2, t - t / 2).fill_(1);
  batch.lengths = torch::full({b}, t, torch::kLong);
  const int64_t stride = std::max<int64_t>(1, (t - 2) / m);
  batch.masked_positions = (torch::arange(b, torch::kLong).unsqueeze(1) * t +
                            (1 + torch::arange(m, torch::kLong) * stride).unsqueeze(0))
                               .reshape({-1});
  batch.masked_labels = torch::randint(1000, vocab_size, {b * m}, torch::kLong);
  batch.nsp_labels = torch::randint(0, 2, {b}, torch::kLong);
  return batch;
}

// The child: one configuration; prints "step_seconds activation_mb".
int RunChild(const Args& args) {
  torch::set_num_threads(args.threads);
  Result<std::unique_ptr<BertForPreTraining>> model = BertForPreTraining::FromConfigFile(
      std::string(BERT_SOURCE_DIR) + "/configs/models/bert-" + args.model + ".json");
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  (*model)->set_activation_checkpointing(args.child == "checkpointed");
  TrainerOptions options;
  options.schedule.peak_lr = 1e-4;
  options.schedule.warmup_steps = 1;
  options.schedule.total_steps = 100;
  Trainer trainer(model->get(), options);
  const PretrainBatch batch = MakeBatch(args.batch, args.seq, (*model)->config().vocab_size);
  // The optimizer state exists after the first step; measure growth beyond a
  // state with it allocated but no activations yet.
  trainer.optimizer().exp_avg().fill_(0);
  const double before_mb = PeakRssMb();
  double best = 1e30;
  for (int i = 0; i < args.steps + 1; ++i) {  // the first is warm-up
    const auto start = std::chrono::steady_clock::now();
    trainer.TrainStep({batch});
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (i > 0) best = std::min(best, seconds);
  }
  std::printf("%.4f %.1f\n", best, PeakRssMb() - before_mb);
  return 0;
}

bool RunParent(const Args& args, const char* self, const std::string& mode, double* seconds, double* mb) {
  const std::string command = std::string(self) + " --child " + mode + " --model " + args.model + " --seq " +
                              std::to_string(args.seq) + " --batch " + std::to_string(args.batch) + " --steps " +
                              std::to_string(args.steps) + " --threads " + std::to_string(args.threads);
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return false;
  const int read = std::fscanf(pipe, "%lf %lf", seconds, mb);
  return pclose(pipe) == 0 && read == 2;
}

}  // namespace

int main(int argc, char** argv) {
  ReexecWithTunedEnvironment(argv);
  KeepLargeAllocationsOnHeap();
  InitLogging(argv[0]);
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : "";
    if (arg == "--smoke") {
      args.model = "tiny";
      args.seq = 32;
      args.batch = 2;
      args.steps = 1;
      continue;
    }
    if (arg == "--model") {
      args.model = value;
    } else if (arg == "--seq") {
      args.seq = std::atoll(value);
    } else if (arg == "--batch") {
      args.batch = std::atoll(value);
    } else if (arg == "--steps") {
      args.steps = std::max(1, std::atoi(value));
    } else if (arg == "--threads") {
      args.threads = std::max(1, std::atoi(value));
    } else if (arg == "--child") {
      args.child = value;
    } else {
      std::fprintf(stderr, "activation_checkpointing_bench: unknown argument %s\n", arg.c_str());
      return 2;
    }
    ++i;
  }
  if (!args.child.empty()) return RunChild(args);
  std::printf("activation_checkpointing_bench: bert-%s, batch %lld, seq %lld, %d intra-op thread(s), fp32, CPU\n",
              args.model.c_str(), static_cast<long long>(args.batch), static_cast<long long>(args.seq), args.threads);
  double plain_s = 0, plain_mb = 0, ckpt_s = 0, ckpt_mb = 0;
  if (!RunParent(args, argv[0], "plain", &plain_s, &plain_mb) ||
      !RunParent(args, argv[0], "checkpointed", &ckpt_s, &ckpt_mb)) {
    std::fprintf(stderr, "activation_checkpointing_bench: a child run failed\n");
    return 1;
  }
  std::printf("  %-14s %10s %16s\n", "", "step_s", "activation_MB");
  std::printf("  %-14s %10.3f %16.1f\n", "plain", plain_s, plain_mb);
  std::printf("  %-14s %10.3f %16.1f\n", "checkpointed", ckpt_s, ckpt_mb);
  std::printf("checkpointing: %.1f%% of the plain step's activation memory, step time x%.2f\n",
              plain_mb > 0 ? 100.0 * ckpt_mb / plain_mb : 0.0, plain_s > 0 ? ckpt_s / plain_s : 0.0);
  return 0;
}
