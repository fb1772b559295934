// PretrainBatch: the tensors of one MLM/NSP micro-batch as the model takes
// them, and the collation of the data pipeline's TrainingSample values
// (datapipe/training_sample.h) into one.
//
// Rows are padded to one length T (the batch's longest sample, or more);
// the model builds its attention mask from `lengths` ("lengths instead of
// masks", as the batch codec sends them). Masked-LM targets are a flat list
// over the whole batch, so the MLM head runs only on those rows.
//
// CollateSamples fails (InvalidArgument naming the sample) on an
// inconsistent sample; CheckBatchFitsModel fails when ids, token types or
// the length exceed what a model config covers. Pure; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "worker/torch.h"

#include "common/status.h"
#include "datapipe/batch_codec.h"
#include "datapipe/training_sample.h"
#include "worker/model/bert_config.h"

namespace bert {

struct PretrainBatch {
  torch::Tensor input_ids;         // [B, T] int64, padded with pad_id
  torch::Tensor token_type_ids;    // [B, T] int64: 1 for B [SEP], 0 elsewhere (padding too)
  torch::Tensor lengths;           // [B] int64: real tokens of each row, >= 1
  torch::Tensor masked_positions;  // [M] int64: flat row-major positions b * T + t, increasing
  torch::Tensor masked_labels;     // [M] int64: original token ids at masked_positions
  torch::Tensor nsp_labels;        // [B] int64: 0 = B follows A, 1 = B is random (HF's next_sentence_label)

  int64_t batch_size() const { return input_ids.size(0); }
  int64_t seq_len() const { return input_ids.size(1); }
  int64_t num_masked() const { return masked_positions.numel(); }
  // Real (unpadded) tokens in the batch.
  int64_t num_tokens() const { return lengths.sum().item<int64_t>(); }
  // The same batch with every tensor on `device`.
  PretrainBatch To(torch::Device device) const;
};

struct CollateOptions {
  int32_t pad_id = 0;   // [PAD]; padded positions get token type 0
  int64_t pad_to = 0;   // pad rows to this length (>= the longest sample); 0: to the longest sample
};

Result<PretrainBatch> CollateSamples(const std::vector<TrainingSample>& samples,
                                     const CollateOptions& options = CollateOptions());
// A decoded coordinator batch (batch_codec.h), padded to its seq_len.
Result<PretrainBatch> CollateBatch(const Batch& batch);

// Ids and labels below vocab_size, token types below type_vocab_size, T at
// most max_position_embeddings, shapes consistent.
Status CheckBatchFitsModel(const PretrainBatch& batch, const BertConfig& config);

}  // namespace bert
