// Fill-mask: the masked-LM head's top-k tokens for each [MASK] of a text, from
// a pretraining run, checkpoint or HuggingFace directory (interop/pretrained.h
// reads all three). The first look at what a pretrained model learned, and a
// way to compare a checkpoint's MLM logits with other implementations
// (`transformers`' BertForMaskedLM: tests/integration/worker/fill_mask_test.cc).
//
// Text: "[MASK]" (exactly so written) marks a position to fill; the pieces
// between are tokenized as BERT's tokenizer does, and the sequence is
// [CLS] text [SEP] with token types 0. A text without [MASK], or longer than
// the model's max_position_embeddings, is an error naming it; so is a model
// without the MLM head (a fine-tuned classifier, a BertModel directory).
// Probabilities are the softmax over the whole vocabulary, in fp32.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace bert {

struct FillMaskCandidate {
  std::string token;
  int32_t id = 0;
  double probability = 0;
};

struct FillMaskResult {
  std::string text;
  std::vector<std::string> tokens;                       // the tokens the model saw, [CLS] and [SEP] included
  std::vector<int32_t> mask_positions;                   // in `tokens`
  std::vector<std::vector<FillMaskCandidate>> candidates;  // per mask: the top k, most probable first
};

// Loads `model_path` once and fills every text's masks.
Result<std::vector<FillMaskResult>> FillMask(const std::string& model_path, const std::vector<std::string>& texts,
                                             int32_t top_k);

}  // namespace bert
