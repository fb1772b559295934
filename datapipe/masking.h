// Masked-LM masking (Devlin et al. 2019, section 3.1 "Task #1: Masked LM";
// Google BERT's create_pretraining_data.py, create_masked_lm_predictions).
//
// Rule, as in the reference script:
//   - candidates are all positions except special tokens ([CLS], [SEP]; and
//     [PAD] or [MASK], should a corpus ever hold them); with whole-word
//     masking a "##" piece joins the candidate of the piece before it, so a
//     word is masked with all its pieces or not at all;
//   - num_to_predict = min(max_predictions, max(1, round(length * masked_lm_prob)))
//     where length counts [CLS] and [SEP] and round() is Python's (half to even);
//   - candidates are visited in a uniformly random order; one that would
//     exceed num_to_predict is skipped (with whole words), the rest are taken
//     until num_to_predict positions are chosen (without whole words this is
//     a uniformly random subset, drawn by rejection when it is at most half
//     the candidates: the same distribution, fewer draws);
//   - a chosen position becomes [MASK] with probability 0.8, keeps its token
//     with 0.1, and becomes a uniformly random vocabulary id with 0.1 (any id,
//     as in the reference; decided per position in position order); its
//     label is the original id.
// Chinese whole-word masking (options.chinese_words): a Chinese character
// that continues the word of the one before it (chinese_words.h) joins that
// word's candidate as a "##" piece does.
// Deviation: the reference lets a "##" piece right after [SEP] join the last
// word before [SEP]; here a special token ends a word.
//
// Dynamic masking (Liu et al. 2019, RoBERTa, section 4.1): the draws come from
// a generator seeded by `key` = rnd::Hash(seed, kStreamMasking, epoch, index),
// so each epoch re-draws the masks and any sample is reproducible on its own.
// ApplyMasking is a pure function of its arguments; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "datapipe/training_sample.h"
#include "datapipe/vocab.h"

namespace bert {

struct MaskingOptions {
  double masked_lm_prob = 0.15;  // share of positions to predict (default 15%, as in BERT)
  int32_t max_predictions = 20;  // max_predictions_per_seq (20 for seq 128, 80 for seq 512 in BERT)
  bool whole_word = false;       // mask all WordPieces of a word together
  // With whole_word: Chinese characters of one word (chinese_words.h: ICU's
  // segmenter) are one word too (data.chinese_whole_word).
  bool chinese_words = false;
  // Names the bad option, e.g. "--masked-lm-prob: must be in (0, 1]".
  Status Validate() const;
};

// What masking needs to know about the vocabulary.
struct MaskingVocab {
  int32_t vocab_size = 0;
  int32_t cls_id = -1, sep_id = -1, mask_id = -1, pad_id = -1;
  std::vector<uint8_t> is_continuation;  // per id: 1 for "##" pieces (whole-word masking)
  std::vector<char32_t> chinese_char;    // per id: the code point of a one-Chinese-character token, else 0

  // Fails, naming the missing token, when the vocabulary lacks [CLS], [SEP],
  // [MASK] or [PAD].
  static Result<MaskingVocab> FromVocab(const Vocab& vocab);
  bool IsSpecial(int32_t id) const { return id == cls_id || id == sep_id || id == mask_id || id == pad_id; }
};

// num_to_predict for a sequence of `length` tokens (see the rule above).
int32_t NumToPredict(const MaskingOptions& options, int32_t length);

// Masks sample->input_ids in place and sets masked_positions (sorted) and
// masked_labels. input_ids must hold at most 65535 tokens, all < vocab_size.
void ApplyMasking(const MaskingOptions& options, const MaskingVocab& vocab, uint64_t key, TrainingSample* sample);

}  // namespace bert
