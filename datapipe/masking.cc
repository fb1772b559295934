#include "datapipe/masking.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "common/logging.h"
#include "datapipe/chinese_words.h"
#include "datapipe/random.h"

namespace bert {

Status MaskingOptions::Validate() const {
  if (!(masked_lm_prob > 0 && masked_lm_prob <= 1)) {
    return Status::InvalidArgument("--masked-lm-prob: must be in (0, 1], got " + std::to_string(masked_lm_prob));
  }
  if (max_predictions < 1 || max_predictions > 8192) {
    return Status::InvalidArgument("--max-predictions: must be between 1 and 8192, got " +
                                   std::to_string(max_predictions));
  }
  return Status::Ok();
}

Result<MaskingVocab> MaskingVocab::FromVocab(const Vocab& vocab) {
  MaskingVocab result;
  result.vocab_size = vocab.size();
  result.cls_id = vocab.cls_id();
  result.sep_id = vocab.sep_id();
  result.mask_id = vocab.mask_id();
  result.pad_id = vocab.pad_id();
  for (auto [id, name] : {std::pair{result.cls_id, "[CLS]"}, std::pair{result.sep_id, "[SEP]"},
                          std::pair{result.mask_id, "[MASK]"}, std::pair{result.pad_id, "[PAD]"}}) {
    if (id < 0) return Status::InvalidArgument(std::string("--vocab: the vocabulary has no ") + name + " token");
  }
  result.is_continuation.resize(static_cast<size_t>(vocab.size()));
  for (int32_t id = 0; id < vocab.size(); ++id) {
    const std::string& token = vocab.Token(id);
    result.is_continuation[id] = token.size() > 2 && token[0] == '#' && token[1] == '#';
  }
  result.chinese_char = ChineseCharacterTable(vocab);
  return result;
}

int32_t NumToPredict(const MaskingOptions& options, int32_t length) {
  // Python's round() rounds half to even, as std::nearbyint does in the
  // default rounding mode; the product is the same IEEE double in both.
  double wanted = std::nearbyint(static_cast<double>(length) * options.masked_lm_prob);
  return std::min<int32_t>(options.max_predictions, std::max<int32_t>(1, static_cast<int32_t>(wanted)));
}

namespace {

// Per-thread scratch, sized for the longest sequence seen: no allocation per sample.
struct Scratch {
  std::vector<uint64_t> chosen;  // bitmap of chosen positions
  std::vector<uint16_t> word_begin, word_end;
  std::vector<uint8_t> chinese_continues;  // MarkChineseWordContinuations of the sample
  void Reset(size_t length) {
    chosen.assign((length + 63) / 64, 0);
    if (word_begin.size() < length) {
      word_begin.resize(length);
      word_end.resize(length);
    }
  }
  bool IsChosen(size_t pos) const { return (chosen[pos >> 6] >> (pos & 63)) & 1; }
  void Choose(size_t pos) { chosen[pos >> 6] |= uint64_t{1} << (pos & 63); }
};

// Chooses positions as the reference does: candidate words in a uniformly
// random order (Fisher-Yates, drawn lazily so it stops once enough are
// taken), skipping a word that would exceed num_to_predict. Returns the
// number of positions chosen.
size_t ChooseWords(const MaskingOptions& options, const MaskingVocab& vocab, const std::vector<int32_t>& ids,
                   size_t num_to_predict, rnd::Generator* rng, Scratch* scratch) {
  uint16_t* begin = scratch->word_begin.data();
  uint16_t* end = scratch->word_end.data();
  size_t num_words = 0;
  bool previous_was_word = false;
  const bool chinese = options.whole_word && options.chinese_words;
  if (chinese) MarkChineseWordContinuations(vocab.chinese_char, ids, &scratch->chinese_continues);
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (vocab.IsSpecial(id)) {
      previous_was_word = false;
      continue;
    }
    if (options.whole_word && previous_was_word &&
        (vocab.is_continuation[id] || (chinese && scratch->chinese_continues[i]))) {
      end[num_words - 1] = static_cast<uint16_t>(i + 1);
    } else {
      begin[num_words] = static_cast<uint16_t>(i);
      end[num_words++] = static_cast<uint16_t>(i + 1);
    }
    previous_was_word = true;
  }
  size_t num_chosen = 0;
  for (size_t j = 0; j < num_words && num_chosen < num_to_predict; ++j) {
    const size_t pick = j + static_cast<size_t>(rng->Below(num_words - j));
    std::swap(begin[j], begin[pick]);
    std::swap(end[j], end[pick]);
    const size_t word_length = end[j] - begin[j];
    if (num_chosen + word_length > num_to_predict) continue;
    for (size_t pos = begin[j]; pos < end[j]; ++pos) scratch->Choose(pos);
    num_chosen += word_length;
  }
  return num_chosen;
}

}  // namespace

void ApplyMasking(const MaskingOptions& options, const MaskingVocab& vocab, uint64_t key, TrainingSample* sample) {
  std::vector<int32_t>& ids = sample->input_ids;
  const size_t length = ids.size();
  CHECK_LE(length, 65535u);
  thread_local Scratch scratch;
  scratch.Reset(length);
  rnd::Generator rng(key);
  const size_t num_to_predict = static_cast<size_t>(NumToPredict(options, static_cast<int32_t>(length)));

  // Locals, not vocab's fields: ids could alias them, which would keep the
  // compiler from hoisting the loads out of this loop.
  const int32_t cls_id = vocab.cls_id, sep_id = vocab.sep_id, mask_id = vocab.mask_id, pad_id = vocab.pad_id;
  auto is_special = [=](int32_t id) { return (id == cls_id) | (id == sep_id) | (id == mask_id) | (id == pad_id); };
  size_t num_candidates = 0;
  for (int32_t id : ids) num_candidates += !is_special(id);
  size_t num_chosen = 0;
  if (!options.whole_word && 2 * num_to_predict <= num_candidates) {
    // Without whole words every candidate is one position, and the first
    // num_to_predict of a random order are a uniformly random subset of that
    // size: draw it by rejection (expected < 2 draws per position when at
    // most half the candidates are taken), the fast path for 15% masking.
    while (num_chosen < num_to_predict) {
      const size_t pos = static_cast<size_t>(rng.Below(length));
      if (is_special(ids[pos]) || scratch.IsChosen(pos)) continue;
      scratch.Choose(pos);
      ++num_chosen;
    }
  } else {
    num_chosen = ChooseWords(options, vocab, ids, num_to_predict, &rng, &scratch);
  }

  // In position order: record the label, then [MASK] 80%, keep 10%, random 10%.
  sample->masked_positions.resize(num_chosen);
  sample->masked_labels.resize(num_chosen);
  size_t k = 0;
  for (size_t word = 0; word < scratch.chosen.size(); ++word) {
    for (uint64_t bits = scratch.chosen[word]; bits != 0; bits &= bits - 1) {
      const size_t pos = word * 64 + static_cast<size_t>(__builtin_ctzll(bits));
      sample->masked_positions[k] = static_cast<uint16_t>(pos);
      sample->masked_labels[k++] = ids[pos];
      const double u = rng.Uniform();
      if (u < 0.8) {
        ids[pos] = mask_id;
      } else if (u >= 0.9) {
        ids[pos] = static_cast<int32_t>(rng.Below(static_cast<uint64_t>(vocab.vocab_size)));
      }  // else: keep the original token
    }
  }
  DCHECK_EQ(k, num_chosen);
}

}  // namespace bert
