// The fine-tuning configuration: a YAML file (--config) with defaults for
// every key, overridden by bertctl's flags, validated at startup and saved
// resolved (absolute paths, every key) as OUTPUT_DIR/finetune.yaml. That
// resolved file is what bert-worker --finetune reads, on every rank.
//
// YAML layout (every key optional in the user's file; defaults below):
//   init: none | RUN_DIR | CHECKPOINT_DIR | HF_DIR
//   model: path to an HF config.json (only for init: none; default: the
//          bundled bert-tiny)            vocab: vocab.txt (only for init: none)
//   lower_case: true                     (only for init: none)
//   data: {train, dev, test, format: auto, text_field: text,
//          text_pair_field: "", label_field: label}
//   labels: [..]                          (resolved file only: LabelMap order)
//   output: OUTPUT_DIR
//   train: {max_seq_len: 128, batch_size: 32, epochs: 3, lr: 2e-5,
//           warmup_ratio: 0.1, weight_decay: 0.01, max_grad_norm: 1.0,
//           seed: 42, intra_op_threads: 1, device: auto, eval_every_steps: 0,
//           layer_lr_decay: 1.0, freeze_embeddings: false, freeze_layers: 0}
//   loss: {type: cross_entropy | focal, label_smoothing: 0.0,
//          focal_gamma: 2.0, class_weights: [] | balanced}
//   regularization: {rdrop_alpha: 0.0, fgm_epsilon: 0.0}
//   early_stopping: {metric: macro_f1, patience: 0}
//   distill: {teacher: "", temperature: 2.0, alpha: 0.5, transfer: "",
//             teacher_logits: ""}   (bertctl distill; teacher "" = off)
// Errors name the file and the key, e.g.
//   "ft.yaml: train.lr: must be > 0, got -1".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "finetune/classification_data.h"

namespace bert::finetune {

struct FinetuneConfig {
  std::string source;       // the file it was read from (for messages)
  std::string init = "none";  // none | a run dir | a checkpoint dir | an HF dir
  std::string model;        // HF config.json for init none ("" = configs/models/bert-tiny.json)
  std::string vocab;        // vocab.txt for init none
  bool lower_case = true;   // tokenizer casing for init none (else the init's)
  std::string output;       // the output directory

  // data
  std::string train_file, dev_file, test_file;  // test optional ("")
  FileFormat format = FileFormat::kAuto;
  FieldNames fields;
  std::vector<std::string> labels;  // resolved: LabelMap order ("" in user files)

  // train
  int32_t max_seq_len = 128;    // tokens per example incl. [CLS]/[SEP]
  int32_t batch_size = 32;      // global batch (split across workers)
  int32_t epochs = 3;
  double lr = 2e-5;             // peak learning rate (top layer and head)
  double warmup_ratio = 0.1;    // linear warmup over this share of all steps, then linear decay to 0
  double weight_decay = 0.01;   // AdamW, not on biases and LayerNorm
  double max_grad_norm = 1.0;   // global clip; 0 = off
  uint64_t seed = 42;           // head init, shuffling, dropout
  int32_t intra_op_threads = 1;
  std::string device = "auto";  // auto | cpu | cuda (worker/train/device.h: the local rank's GPU)
  int64_t eval_every_steps = 0; // 0 = evaluate on dev after each epoch
  double layer_lr_decay = 1.0;  // layer l (0-based) of L gets lr * decay^(L - l), the embeddings lr * decay^(L + 1), pooler and head lr; 1 = off
  bool freeze_embeddings = false;
  int32_t freeze_layers = 0;    // freeze the bottom k encoder layers

  // loss
  std::string loss = "cross_entropy";  // cross_entropy | focal
  double label_smoothing = 0.0;        // in [0, 1)
  double focal_gamma = 2.0;            // >= 0 (focal only)
  std::string class_weights_mode;      // "" (none) | "balanced" (n / (k * count_c)) | "explicit"
  std::vector<double> class_weights;   // explicit weights in label order (resolved: always explicit or empty)

  // regularization
  double rdrop_alpha = 0.0;   // R-Drop (Liang et al. 2021) KL weight; 0 = off
  double fgm_epsilon = 0.0;   // FGM (Miyato et al. 2017) on word embeddings; 0 = off

  // early stopping: keep the best dev checkpoint by `metric`; stop after
  // `patience` evaluations without improvement (0 = never stop early).
  std::string early_stopping_metric = "macro_f1";  // accuracy | macro_f1 | loss
  int32_t patience = 0;

  // distillation (Hinton et al. 2015, "Distilling the Knowledge in a Neural
  // Network"): the loss is alpha * T^2 * KL(teacher_T || student_T) +
  // (1 - alpha) * the hard-label loss above, with both distributions taken
  // at temperature T. The teacher's logits are computed once before training.
  std::string distill_teacher;          // a fine-tuned HF directory with the same labels; "" = no distillation
  double distill_temperature = 2.0;     // T > 0
  double distill_alpha = 0.5;           // weight of the soft loss, in [0, 1]
  std::string distill_transfer_file;    // extra examples (labels optional), trained on with the soft loss only; "" = none
  std::string distill_teacher_logits;   // cache of the teacher's logits; "" = OUTPUT/teacher_logits.safetensors

  // Every range and enum; errors name source and key.
  Status Validate() const;
};

Result<FinetuneConfig> LoadFinetuneConfig(const std::string& path);
// Reads YAML text; `source` names it in errors.
Result<FinetuneConfig> ParseFinetuneConfig(const std::string& yaml_text, const std::string& source);
// Every key, in the layout above (round-trips through ParseFinetuneConfig).
std::string FinetuneConfigToYaml(const FinetuneConfig& config);

}  // namespace bert::finetune
