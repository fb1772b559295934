// RunConfig: the run configuration (YAML), shared by bertctl, the
// coordinator and the workers.
//
// Loading validates every value and rejects unknown keys, so a typo is an
// error rather than a silently ignored setting; each error is one line that
// names the file and the key, e.g.
//   "run.yaml: train.lr: must be > 0, got -1".
// Relative paths in the file are resolved against the file's directory.
// ToYaml() writes the resolved config (every key, defaults included), which
// is frozen into the run directory and saved with every checkpoint.
// A value type; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace bert {

struct DataConfig {
  std::vector<std::string> db;   // corpus databases (shards or separate corpora), in order
  uint64_t seed = 12345;         // sample plan seed
  int32_t max_seq_len = 128;     // tokens per sample, [CLS] and [SEP]s included
  int32_t max_predictions = 20;  // masked positions per sample at most
  double masked_lm_prob = 0.15;  // fraction of tokens masked
  double short_seq_prob = 0.1;   // chance of a shorter target length (reference: 0.1)
  bool whole_word_masking = false;
  bool chinese_whole_word = false;  // with whole_word_masking: the Chinese characters of a word (ICU's
                                    // segmenter, datapipe/chinese_words.h) are masked together
  // Pretraining objective: mlm_nsp (BERT: masked LM + next-sentence prediction),
  // mlm (masked LM only; one segment per sample) or mlm_sop (masked LM + ALBERT's
  // sentence-order prediction).
  std::string objective = "mlm_nsp";
  bool packing = false;          // objective mlm only: samples are full max_seq_len windows of the corpus,
                                 // documents joined by [SEP], no padding (datapipe/sample_plan.h)
};

// train.anomaly: loss spikes and non-finite steps (worker/train/anomaly.h).
struct AnomalyConfig {
  // rollback: a step whose loss or gradient norm is not finite, or spikes,
  // is not applied; the run goes back to the last committed checkpoint and
  // never trains on that step's batches (a recorded skip). off: a
  // non-finite gradient only skips that update, in place, and spikes are
  // not looked for.
  std::string action = "rollback";
  double loss_spike = 0;          // a loss above K x the median of the recent steps is a spike (0: not checked)
  double grad_norm_spike = 0;     // likewise the gradient norm before clipping (0: not checked)
  int64_t median_window = 100;    // the recent steps the medians are over (checked once 10 are there)
  int64_t max_skips = 3;          // anomalies allowed within skip_window steps; one more stops the run
  int64_t skip_window = 1000;
  std::vector<int64_t> skip_steps;  // steps whose batches are never trained on, from the start (an
                                    // operator's list; the run's own skips add to it)
};

struct TrainConfig {
  int64_t global_batch_size = 32;  // samples per optimizer step, all ranks and micro-batches together
  int64_t micro_batch_size = 0;    // samples per forward pass per rank; 0 = global / world size
  int64_t steps = 1000;            // optimizer steps in the run (with time_budget_s: at most)
  // Wall-clock training budget in seconds (YAML: train.time_budget, e.g. 30m,
  // 1h30m, 90s; empty: none). The learning rate decays over the budget's
  // time instead of over train.steps (warmup stays in steps), and the run
  // ends with a final checkpoint once the budget is spent. Seconds are summed
  // over the run's sessions, so a resumed run spends only what is left.
  int64_t time_budget_s = 0;
  std::string optimizer = "adamw"; // adamw | lamb
  double lr = 1e-4;                // peak learning rate
  double weight_decay = 0.01;      // decoupled; biases and LayerNorm are exempt
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-6;
  int64_t warmup_steps = 100;      // linear warmup from 0 to lr
  std::string schedule = "linear"; // after warmup: linear | polynomial | cosine | constant
  double end_lr_ratio = 0.0;       // lr at the last step, as a fraction of lr
  double poly_power = 1.0;         // for schedule: polynomial
  double max_grad_norm = 1.0;      // global-norm clipping; 0 disables
  uint64_t init_seed = 42;         // parameter initialisation seed
  int32_t intra_op_threads = 1;    // LibTorch intra-op threads per worker
  std::string device = "auto";     // auto (CUDA when a GPU is visible, else CPU) | cpu | cuda; each rank
                                   // takes the GPU of its local rank (worker/train/device.h)
  std::string precision = "fp32";  // fp32 | bf16 (bf16 autocast on CUDA; fp32 master weights,
                                   // optimizer state and loss)
  bool tf32 = false;               // fp32 GEMMs and convolutions in TF32 on CUDA (Ampere and later)
  bool activation_checkpointing = false;  // recompute each encoder layer in the backward pass:
                                          // less activation memory for about one more forward
  bool dropout = true;             // false: no dropout while pretraining (the model config's rates are kept
                                   // for export and fine-tuning)
  std::string init_from;           // start from these weights instead of init_seed's: a run, checkpoint or
                                   // HuggingFace directory with the same model shape and vocabulary
                                   // (continued, domain-adaptive pretraining); the optimizer starts fresh
  AnomalyConfig anomaly;
};

struct LogConfig {
  int64_t every_steps = 10;  // metrics to the terminal and metrics.jsonl every K steps
};

struct CheckpointConfig {
  int64_t every_steps = 1000;  // a checkpoint after every K steps, and after the last; 0: only after the last
  int32_t keep_last = 3;       // retention: the newest K committed checkpoints ...
  int64_t keep_every = 0;      // ... plus every one whose step is a multiple of M (0: none)
};

struct RunConfig {
  std::string name = "default";  // run name: runs/NAME
  std::string run_dir;           // where the run writes; relative to the config file's directory, like every
                                 // path in it; without it, runs/NAME under the current directory
  std::string model;             // HF config.json of the model (configs/models/...)
  std::string vocab;             // optional: check the corpus was prepared with this vocab.txt
  bool lower_case = true;        // uncased model
  DataConfig data;
  TrainConfig train;
  LogConfig log;
  CheckpointConfig checkpoint;

  // Checks values that do not depend on the world size. Errors name the key.
  Status Validate() const;
  std::string ToYaml() const;
};

// "30m", "1h30m", "90s", "2d", "45" (seconds) -> seconds; "" -> 0. Errors
// say what a duration looks like.
Result<int64_t> ParseTimeBudget(const std::string& text);
// The inverse for budgets >= 0: 5400 -> "1h30m", 45 -> "45s", 0 -> "".
std::string FormatTimeBudget(int64_t seconds);

// Loads and validates a YAML run config. Errors name the file and the key.
Result<RunConfig> LoadRunConfig(const std::string& path);
// Same, from YAML text; `where` names the source in errors and `base_dir`
// resolves relative paths.
Result<RunConfig> ParseRunConfig(const std::string& yaml_text, const std::string& where,
                                 const std::string& base_dir);

}  // namespace bert
