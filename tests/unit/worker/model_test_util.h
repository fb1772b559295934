// Helpers shared by the worker tests: tiny configs and synthetic batches.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "worker/torch.h"

#include "datapipe/training_sample.h"
#include "worker/model/bert_config.h"
#include "worker/train/pretrain_batch.h"

namespace bert::testing {

// A BERT small enough for finite differences: 2 layers, H 8, 2 heads.
inline BertConfig MicroConfig() {
  BertConfig config;
  config.vocab_size = 23;
  config.hidden_size = 8;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 2;
  config.intermediate_size = 12;
  config.max_position_embeddings = 16;
  config.hidden_dropout_prob = 0.0;
  config.attention_probs_dropout_prob = 0.0;
  return config;
}

// bert-tiny's shape with a small vocabulary: fast enough to train in tests.
inline BertConfig TinyConfig(double dropout = 0.0) {
  BertConfig config;
  config.vocab_size = 100;
  config.hidden_size = 32;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 2;
  config.intermediate_size = 64;
  config.max_position_embeddings = 64;
  config.hidden_dropout_prob = dropout;
  config.attention_probs_dropout_prob = dropout;
  return config;
}

// A sample of `length` tokens: [CLS]=2, random ids >= 5, [SEP]=3 after A and
// at the end; `num_masked` distinct positions (not special) with labels.
inline TrainingSample RandomSample(std::mt19937_64* rng, int64_t vocab_size, int length, int num_masked) {
  TrainingSample sample;
  const int a_length = 1 + static_cast<int>((*rng)() % static_cast<uint64_t>(length - 4));
  sample.input_ids.push_back(2);
  for (int i = 0; i < length - 2; ++i) {
    sample.input_ids.push_back(5 + static_cast<int32_t>((*rng)() % static_cast<uint64_t>(vocab_size - 5)));
  }
  sample.input_ids.push_back(3);
  sample.input_ids[static_cast<size_t>(a_length + 1)] = 3;
  sample.segment_b_start = static_cast<uint32_t>(a_length + 2);
  std::vector<uint16_t> candidates;
  for (int t = 1; t < length - 1; ++t) {
    if (t != a_length + 1) candidates.push_back(static_cast<uint16_t>(t));
  }
  std::shuffle(candidates.begin(), candidates.end(), *rng);
  candidates.resize(static_cast<size_t>(std::min<int>(num_masked, static_cast<int>(candidates.size()))));
  std::sort(candidates.begin(), candidates.end());
  for (uint16_t position : candidates) {
    sample.masked_positions.push_back(position);
    sample.masked_labels.push_back(sample.input_ids[position]);
    sample.input_ids[position] = 4;  // [MASK]
  }
  sample.is_random_next = ((*rng)() & 1) != 0;
  return sample;
}

inline PretrainBatch RandomBatch(uint64_t seed, int64_t vocab_size, const std::vector<int>& lengths, int num_masked) {
  std::mt19937_64 rng(seed);
  std::vector<TrainingSample> samples;
  for (size_t i = 0; i < lengths.size(); ++i) {
    samples.push_back(RandomSample(&rng, vocab_size, lengths[i], num_masked));
    samples.back().index = i;
  }
  Result<PretrainBatch> batch = CollateSamples(samples);
  if (!batch.ok()) throw std::runtime_error(batch.status().ToString());
  return std::move(batch).value();
}

}  // namespace bert::testing
