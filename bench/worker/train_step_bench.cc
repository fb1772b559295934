// Train-step benchmark: samples/s and MFU of BertForPreTraining training
// steps (forward, backward, AdamW update; MLM on masked positions only) at
// seq 128 on the CPU, beside the fp32 GEMM peak measured in the same run
// (torch::mm n^3, best of several) for each intra-op thread count.
//
// Model FLOPs are worker/model/flops.h's (6N + 12LHT per token, plus the heads at
// their real counts). Full-length rows with 20 masked positions each
// (BERT's max_predictions_per_seq at 128). Times are the fastest of the
// timed steps, like the GEMM peak's best of several, measured before and
// after the models (the machine may be shared; the median step is printed
// too), split into forward, backward and optimizer (clip + update + zeroing)
// by the Trainer's own timers. MFU is against the higher peak.
//
// Peer, measured in the same run: PyTorch eager in Python on the same
// LibTorch, same model, batch, sequence length and threads
// (bench/worker/train_step_peer.py). Goals: bert-tiny batch 32 >= 1.5x the
// peer's samples/s, bert-base batch 8 >= 1.1x.
//
//   train_step_bench [--smoke] [--models tiny,small,base] [--threads 1,2] [--steps N]
//                    [--batch B] [--accumulate K] [--optimizer adamw|lamb]
//                    [--profile MODEL [--profile-threads T]]
// --accumulate K makes each step K micro-batches of B rows (gradient
// accumulation; "batch" in the table is then B x K).
// --profile runs one more step of MODEL under the autograd profiler and
// prints where the time goes (self time per op).
#include <torch/csrc/autograd/profiler_legacy.h>
#include "worker/torch.h"

#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/logging.h"
#include "worker/model/bert_heads.h"
#include "worker/train/runtime_setup.h"
#include "worker/model/flops.h"
#include "worker/train/train_step.h"

namespace {

using namespace bert;  // NOLINT: a benchmark's main file

struct Args {
  bool smoke = false;
  std::vector<std::string> models = {"tiny", "small", "base"};
  std::vector<int> threads = {1, 2};
  int steps = 0;  // 0: per-model default
  int64_t batch = 0;     // rows per micro-batch; 0: per-model default
  int accumulate = 1;    // micro-batches per optimizer step
  std::string optimizer = "adamw";
  std::string profile;  // model to profile, empty: none
  int profile_threads = 1;
};

std::vector<std::string> Split(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, ',');) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

bool ParseArgs(int argc, char** argv, Args* args) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--smoke") {
      args->smoke = true;
    } else if (arg == "--models") {
      args->models = Split(value());
    } else if (arg == "--threads") {
      args->threads.clear();
      for (const std::string& t : Split(value())) args->threads.push_back(std::stoi(t));
    } else if (arg == "--steps") {
      args->steps = std::stoi(value());
    } else if (arg == "--batch") {
      args->batch = std::stoll(value());
    } else if (arg == "--accumulate") {
      args->accumulate = std::max(1, std::stoi(value()));
    } else if (arg == "--optimizer") {
      args->optimizer = value();
    } else if (arg == "--profile") {
      args->profile = value();
    } else if (arg == "--profile-threads") {
      args->profile_threads = std::stoi(value());
    } else {
      std::fprintf(stderr, "train_step_bench: unknown argument %s\n", arg.c_str());
      return false;
    }
  }
  return true;
}

struct Workload {
  std::string model;  // tiny, small, base, ...: configs/models/bert-MODEL.json
  int64_t batch_size = 8;
  int64_t seq_len = 128;
  int64_t masked_per_row = 20;
  int accumulate = 1;  // micro-batches (of batch_size rows) per optimizer step
  int steps = 3;
};

Workload DefaultWorkload(const std::string& model, const Args& args) {
  Workload w;
  w.model = model;
  if (model == "tiny") {
    w.batch_size = 32;
    w.steps = 20;
  } else if (model == "mini" || model == "small") {
    w.batch_size = 16;
    w.steps = 6;
  } else {
    w.batch_size = 8;
    w.steps = 4;
  }
  if (args.smoke) {
    w.batch_size = 4;
    w.seq_len = 32;
    w.masked_per_row = 5;
    w.steps = 2;
  }
  if (args.steps > 0) w.steps = args.steps;
  if (args.batch > 0) w.batch_size = args.batch;
  w.accumulate = args.accumulate;
  return w;
}

// Full-length rows: [CLS] A [SEP] B [SEP] of random ids, `masked_per_row` positions masked.
PretrainBatch MakeBatch(const Workload& w, int64_t vocab_size, uint64_t seed) {
  torch::manual_seed(static_cast<int64_t>(seed));
  const int64_t b = w.batch_size, t = w.seq_len, m = w.masked_per_row;
  PretrainBatch batch;
  batch.input_ids = torch::randint(1000, vocab_size, {b, t}, torch::kLong);
  batch.token_type_ids = torch::zeros({b, t}, torch::kLong);
  batch.token_type_ids.narrow(1, t / 2, t - t / 2).fill_(1);
  batch.lengths = torch::full({b}, t, torch::kLong);
  // Positions 1, 1 + stride, ... in every row (never [CLS]).
  const int64_t stride = (t - 2) / m;
  torch::Tensor rows = torch::arange(b, torch::kLong).unsqueeze(1) * t;
  torch::Tensor columns = 1 + torch::arange(m, torch::kLong) * stride;
  batch.masked_positions = (rows + columns.unsqueeze(0)).reshape({-1});
  batch.masked_labels = torch::randint(1000, vocab_size, {b * m}, torch::kLong);
  batch.nsp_labels = torch::randint(0, 2, {b}, torch::kLong);
  return batch;
}

struct Result_ {
  double step_s = 0, forward_s = 0, backward_s = 0, optimizer_s = 0;  // of the fastest step
  double median_step_s = 0;
  double flops = 0;
};

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

TrainerOptions BenchTrainerOptions(const std::string& optimizer) {
  TrainerOptions options;
  options.optimizer.kind = ParseOptimizerKind(optimizer).value();
  options.schedule.peak_lr = 1e-4;
  options.schedule.warmup_steps = 100;
  options.schedule.total_steps = 1000;
  return options;
}

Result_ RunWorkload(const Workload& w, const BertConfig& config, const std::string& optimizer) {
  BertForPreTraining model(config);
  Trainer trainer(&model, BenchTrainerOptions(optimizer));
  std::vector<PretrainBatch> micro_batches;
  for (int k = 0; k < w.accumulate; ++k) micro_batches.push_back(MakeBatch(w, config.vocab_size, 1 + k));
  trainer.TrainStep(micro_batches);  // warm-up: first-touch allocations
  std::vector<double> step, forward, backward, update;
  for (int i = 0; i < w.steps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    StepMetrics metrics = trainer.TrainStep(micro_batches);
    step.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    forward.push_back(metrics.forward_seconds);
    backward.push_back(metrics.backward_seconds);
    update.push_back(metrics.optimizer_seconds);
  }
  Result_ r;
  const size_t best = static_cast<size_t>(std::min_element(step.begin(), step.end()) - step.begin());
  r.step_s = step[best];
  r.forward_s = forward[best];
  r.backward_s = backward[best];
  r.optimizer_s = update[best];
  r.median_step_s = Median(step);
  r.flops = w.accumulate * PreTrainingFlops(config, w.batch_size, w.seq_len, micro_batches[0].num_masked());
  return r;
}

// One step under the legacy autograd profiler: self time per op name.
void Profile(const Workload& w, const BertConfig& config, const std::string& optimizer) {
  BertForPreTraining model(config);
  Trainer trainer(&model, BenchTrainerOptions(optimizer));
  const PretrainBatch batch = MakeBatch(w, config.vocab_size, 1);
  trainer.TrainStep({batch});
  namespace prof = torch::autograd::profiler;
  prof::enableProfilerLegacy(torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU));
  const auto start = std::chrono::steady_clock::now();
  StepMetrics metrics = trainer.TrainStep({batch});
  const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  prof::thread_event_lists lists = prof::disableProfilerLegacy();
  std::map<std::string, std::pair<double, int>> self_us;  // name -> (self time, calls)
  for (const auto& events : lists) {
    struct Open {
      const prof::LegacyEvent* event;
      double child_us;
    };
    std::vector<Open> stack;
    for (const prof::LegacyEvent& event : events) {
      if (event.kind() == prof::EventKind::PushRange) {
        stack.push_back({&event, 0.0});
      } else if (event.kind() == prof::EventKind::PopRange && !stack.empty()) {
        Open open = stack.back();
        stack.pop_back();
        const double elapsed = open.event->cpuElapsedUs(event);
        auto& entry = self_us[open.event->name()];
        entry.first += elapsed - open.child_us;
        entry.second += 1;
        if (!stack.empty()) stack.back().child_us += elapsed;
      }
    }
  }
  std::vector<std::pair<double, std::string>> ranked;
  double total_us = 0;
  for (const auto& [name, entry] : self_us) {
    ranked.push_back({entry.first, name});
    total_us += entry.first;
  }
  std::sort(ranked.rbegin(), ranked.rend());
  std::printf("\nprofile: bert-%s batch %lld seq %lld, threads %d: step %.0f ms (forward %.0f, backward %.0f, "
              "optimizer %.0f); ops' self time %.0f ms\n",
              w.model.c_str(), static_cast<long long>(w.batch_size), static_cast<long long>(w.seq_len),
              torch::get_num_threads(), wall_s * 1e3, metrics.forward_seconds * 1e3, metrics.backward_seconds * 1e3,
              metrics.optimizer_seconds * 1e3, total_us / 1e3);
  std::printf("  %-48s %9s %6s %6s\n", "op (self time)", "ms", "%", "calls");
  for (size_t i = 0; i < ranked.size() && i < 22; ++i) {
    std::printf("  %-48s %9.1f %5.1f%% %6d\n", ranked[i].second.c_str(), ranked[i].first / 1e3,
                100.0 * ranked[i].first / total_us, self_us[ranked[i].second].second);
  }
}

// The peer (bench/worker/train_step_peer.py): the same step in PyTorch eager,
// Python, the same LibTorch, model, batch, sequence length and thread count.
// Its samples/s, or 0 when it could not run (the reason is on stderr).
double PeerSamplesPerSecond(const Workload& w, int threads) {
  if (w.accumulate != 1) return 0;  // the peer runs one micro-batch per step
  const std::string command = std::string(BERT_PYTHON) + " " + BERT_SOURCE_DIR +
                              "/bench/worker/train_step_peer.py --config " + BERT_SOURCE_DIR + "/configs/models/bert-" +
                              w.model + ".json --batch " + std::to_string(w.batch_size) + " --seq " +
                              std::to_string(w.seq_len) + " --masked " + std::to_string(w.masked_per_row) +
                              " --threads " + std::to_string(threads) + " --steps " + std::to_string(w.steps);
  double step_s = 0, samples_per_s = 0;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    if (std::fscanf(pipe, "%lf %lf", &step_s, &samples_per_s) != 2) samples_per_s = 0;
    ::pclose(pipe);
  }
  if (samples_per_s <= 0) std::fprintf(stderr, "train_step_bench: the PyTorch eager peer failed: %s\n", command.c_str());
  return samples_per_s;
}

}  // namespace

int main(int argc, char** argv) {
  // OpenBLAS 0.3.21 does not recognise this CPU and would run generic SSE3
  // kernels; OpenMP's spinning fights OpenBLAS's threads (runtime_setup.h).
  // Setting OPENBLAS_CORETYPE=Prescott or OMP_WAIT_POLICY=ACTIVE by hand
  // measures the untuned behaviour.
  ReexecWithTunedEnvironment(argv);
  KeepLargeAllocationsOnHeap();
  InitLogging(argv[0]);
  Args args;
  if (!ParseArgs(argc, argv, &args)) return 2;
  if (!ParseOptimizerKind(args.optimizer).ok()) {
    std::fprintf(stderr, "train_step_bench: --optimizer must be adamw or lamb\n");
    return 2;
  }
  if (args.smoke) {
    args.models = {"tiny"};
    args.threads = {1};
  }
  const int64_t gemm_n = args.smoke ? 256 : 2048;
  bool peer_failed = false;
  const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
  const std::string blas_core = BlasCoreName();
  std::printf("train_step_bench: BertForPreTraining training steps (%s), fp32, CPU; LibTorch %s, BLAS %s; "
              "OMP_WAIT_POLICY=%s\n",
              args.optimizer.c_str(), (std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR)).c_str(), blas_core.empty() ? "MKL or other" : ("OpenBLAS " + blas_core).c_str(),
              wait_policy != nullptr ? wait_policy : "(unset)");
  for (int threads : args.threads) {
    torch::set_num_threads(threads);
    // The peak is measured before and after the models and the higher kept:
    // on a shared machine, one of the two may have been slowed down.
    const int repeats = args.smoke ? 2 : 5;
    const double peak_before = MeasureGemmGflops(gemm_n, repeats);
    std::vector<std::pair<Workload, Result_>> results;
    for (const std::string& name : args.models) {
      Result<BertConfig> config =
          LoadBertConfig(std::string(BERT_SOURCE_DIR) + "/configs/models/bert-" + name + ".json");
      if (!config.ok()) {
        std::fprintf(stderr, "train_step_bench: %s\n", config.status().message().c_str());
        return 1;
      }
      const Workload w = DefaultWorkload(name, args);
      results.emplace_back(w, RunWorkload(w, *config, args.optimizer));
    }
    const double peak_after = MeasureGemmGflops(gemm_n, repeats);
    const double peak = std::max(peak_before, peak_after);
    std::printf("\nintra-op threads %d: fp32 GEMM peak (torch::mm %lld^3, best of %d, before/after) = %.1f / %.1f "
                "GFLOP/s\n",
                threads, static_cast<long long>(gemm_n), repeats, peak_before, peak_after);
    std::printf("  %-12s %5s %4s %9s %8s %8s %8s %10s %10s %8s %6s %10s %11s %8s\n", "model", "batch", "seq", "step_ms",
                "fwd_ms", "bwd_ms", "opt_ms", "samples/s", "tokens/s", "GFLOP/s", "MFU", "median_ms", "eager s/s",
                "ours/eager");
    for (const auto& [w, r] : results) {
      const double achieved = r.flops / r.step_s / 1e9;
      const double ours = static_cast<double>(w.batch_size * w.accumulate) / r.step_s;
      const double peer = PeerSamplesPerSecond(w, threads);
      if (peer <= 0 && w.accumulate == 1) peer_failed = true;
      std::printf("  %-12s %5lld %4lld %9.1f %8.1f %8.1f %8.1f %10.1f %10.0f %8.1f %5.1f%% %10.1f %11.1f %7.2fx\n",
                  ("bert-" + w.model).c_str(), static_cast<long long>(w.batch_size * w.accumulate),
                  static_cast<long long>(w.seq_len), r.step_s * 1e3, r.forward_s * 1e3, r.backward_s * 1e3,
                  r.optimizer_s * 1e3, static_cast<double>(w.batch_size * w.accumulate) / r.step_s,
                  static_cast<double>(w.batch_size * w.accumulate * w.seq_len) / r.step_s, achieved,
                  100.0 * achieved / peak, r.median_step_s * 1e3, peer, peer > 0 ? ours / peer : 0.0);
    }
  }
  if (!args.smoke) {
    std::printf("\neager: PyTorch eager in Python on the same LibTorch (bench/worker/train_step_peer.py), measured "
                "above; goals: bert-tiny b32 >= 1.5x, bert-base b8 >= 1.1x\n");
  }
  if (!args.profile.empty()) {
    Result<BertConfig> config =
        LoadBertConfig(std::string(BERT_SOURCE_DIR) + "/configs/models/bert-" + args.profile + ".json");
    if (!config.ok()) {
      std::fprintf(stderr, "train_step_bench: %s\n", config.status().message().c_str());
      return 1;
    }
    torch::set_num_threads(args.profile_threads);
    Profile(DefaultWorkload(args.profile, args), *config, args.optimizer);
  }
  return peer_failed ? 1 : 0;
}
