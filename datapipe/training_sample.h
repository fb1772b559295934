// TrainingSample: one MLM/NSP pretraining example, as produced by the sample
// plan (sample_plan.h) and carried by the batch codec (batch_codec.h).
//
// Layout (Devlin et al. 2019, section 3.1): [CLS] A [SEP] B [SEP], with
// token_type_ids 0 for [CLS] A [SEP] and 1 for B [SEP]. A value type.
#pragma once

#include <cstdint>
#include <vector>

namespace bert {

struct TrainingSample {
  uint64_t index = 0;                     // global sample index within its epoch
  std::vector<int32_t> input_ids;         // [CLS] A [SEP] B [SEP], with masking applied; no padding
  uint32_t segment_b_start = 0;           // first position of B: token_type_ids are 1 from here on
  std::vector<uint16_t> masked_positions; // strictly increasing positions chosen for masked-LM
  std::vector<int32_t> masked_labels;     // original ids at masked_positions
  bool is_random_next = false;            // NSP label: B is a span of a random document

  std::vector<int32_t> TokenTypeIds() const {
    std::vector<int32_t> types(input_ids.size(), 0);
    for (size_t i = segment_b_start; i < types.size(); ++i) types[i] = 1;
    return types;
  }
  bool operator==(const TrainingSample& other) const {
    return index == other.index && input_ids == other.input_ids && segment_b_start == other.segment_b_start &&
           masked_positions == other.masked_positions && masked_labels == other.masked_labels &&
           is_random_next == other.is_random_next;
  }
  bool operator!=(const TrainingSample& other) const { return !(*this == other); }
};

}  // namespace bert
