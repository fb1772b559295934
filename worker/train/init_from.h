// Continued (domain-adaptive) pretraining: a pretraining model's starting
// weights from a run, checkpoint or HuggingFace directory (train.init_from;
// interop/pretrained.h reads all three) instead of train.init_seed's draw.
//
// Every tensor of the encoder must be there with the model's shape (an
// error names the first one that is missing or has another shape); the
// pooler and the pretraining heads (cls.*) are copied when present and keep
// their init_seed weights otherwise (a BertModel-only HF directory), with a
// warning that names them. Classifier tensors of a fine-tuned directory are
// ignored. The optimizer state and step are not touched: the run starts at
// step 0 with its own schedule. That the vocabulary is the corpus's is the
// coordinator's check (coordinator/main.cc), which knows the corpus.
#pragma once

#include <string>

#include <vector>

#include "common/status.h"
#include "interop/pretrained.h"
#include "worker/model/bert_heads.h"

namespace bert {

Status InitializeFromPretrained(const std::string& path, BertForPreTraining* model);

// The copy itself: `pretrained`'s tensors into `model` by name (classifier.*
// ignored, names the model lacks warned about). Fails naming a tensor of
// another shape or a missing encoder tensor; `kept` gets the model's tensors
// the directory does not have (the pooler, heads), which keep their values.
Status CopyPretrainedWeights(const PretrainedModel& pretrained, BertForPreTraining* model,
                             std::vector<std::string>* kept);

}  // namespace bert
