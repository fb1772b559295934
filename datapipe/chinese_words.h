// Chinese words for whole-word masking (Cui et al. 2021, "Pre-Training with
// Whole Word Masking for Chinese BERT"). BERT's tokenizer makes one token of
// every Chinese character, so no "##" piece marks the characters of one word;
// the words come from a segmenter instead: ICU's word break iterator
// (Debian's libicu), whose built-in Chinese and Japanese dictionary splits
// 我爱北京天安门 into 我 | 爱 | 北京 | 天安门.
//
// Masking calls MarkChineseWordContinuations on each sample's token ids: a
// run of Chinese-character tokens is put back together, segmented, and each
// token that continues the word of the token before it is marked. Tokens
// that are not one Chinese character (WordPieces, punctuation, [SEP]) end a
// run. A pure function of the ids; thread-safe (one iterator per thread).
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "datapipe/vocab.h"

namespace bert {

// Per vocabulary id: the code point when the token is exactly one Chinese
// character (BERT's _is_chinese_char ranges), else 0.
std::vector<char32_t> ChineseCharacterTable(const Vocab& vocab);

// Whether ICU's word break iterator for Chinese can be created here (its
// data present); an error saying what is missing otherwise.
Status CheckChineseSegmenter();

// (*continues)[i] = 1 when ids[i] is a Chinese character in the same word as
// ids[i - 1], else 0; resized to ids.size(). `table` is
// ChineseCharacterTable of the ids' vocabulary.
void MarkChineseWordContinuations(const std::vector<char32_t>& table, const std::vector<int32_t>& ids,
                                  std::vector<uint8_t>* continues);

}  // namespace bert
