// Knowledge distillation for fine-tuning (`bertctl distill`; the distill.*
// keys of finetune/finetune_config.h): a student classifier learns from a
// fine-tuned teacher's output distribution as well as from the labels
// (Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural
// Network", section 2):
//   loss = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * hard loss
// The T^2 keeps the soft term's gradients on the scale of the hard term's
// as T changes (their section 2.1). Examples without a label (a transfer
// set) contribute the soft term only.
//
// The teacher runs once, before training: its log-probabilities over the
// student's training examples (train, then transfer) are computed with the
// teacher's own tokenizer and vocabulary (they may differ from the
// student's) and kept in memory, and in a cache file that later runs with
// the same teacher and data read instead (several seeds of one student).
// Log-probabilities serve as logits: softmax(log p / T) = softmax(z / T).
// Not thread-safe (one model, one thread).
#pragma once

#include "worker/torch.h"

#include <string>
#include <vector>

#include "common/status.h"
#include "finetune/classification_data.h"
#include "finetune/finetune_config.h"
#include "worker/comm/communicator.h"

namespace bert {

// alpha-free soft term: T^2 * sum over rows of KL(softmax(teacher / T) ||
// softmax(student / T)), / normalizer. student_logits [B, C] (differentiable),
// teacher_logits [B, C] (constant; logits or log-probabilities). Pure.
torch::Tensor DistillationLoss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                               double temperature, double normalizer);

// The teacher's log-probabilities [N, C] (float32, CPU) for `examples`,
// columns in `student_labels` order. The teacher (config.distill_teacher, a
// fine-tuned HF directory) must know exactly the student's labels (any
// order); it reads the texts at min(config.max_seq_len, its
// max_position_embeddings) tokens. `cache` ("" = none): read when it holds
// the log-probabilities of this teacher (the bytes of its files), these
// examples, labels and length, else computed and written there (atomically).
// With `comm`, the ranks share the teacher's work (and the decision to read
// the cache) and all return the whole result. The teacher runs on `device`.
// Errors name the teacher directory, the cache or the file.
Result<torch::Tensor> TeacherLogProbs(const finetune::FinetuneConfig& config,
                                      const std::vector<finetune::Example>& examples,
                                      const std::vector<std::string>& student_labels, const std::string& cache,
                                      Communicator* comm, torch::Device device = torch::kCPU);

}  // namespace bert
