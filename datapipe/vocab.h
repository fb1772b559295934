// Vocab: a BERT vocabulary (vocab.txt), one token per line, id = line number.
//
// Loading follows the reference `load_vocab` of Google BERT's tokenization.py:
// each line is stripped of surrounding whitespace and takes the next id; a
// token that appears twice maps to its later id. Immutable after construction
// and safe to share between threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace bert {

class Vocab {
 public:
  // Loads vocab.txt. Fails (naming the file) when it is unreadable, empty,
  // not valid UTF-8, or lacks [UNK].
  static Result<std::shared_ptr<const Vocab>> Load(const std::string& path);
  // Builds a vocabulary from tokens in id order (tests, the vocabulary trainer).
  static Result<std::shared_ptr<const Vocab>> FromTokens(std::vector<std::string> tokens);

  int32_t size() const { return static_cast<int32_t>(tokens_.size()); }
  // Id of an exact token ("##ing" included), or -1.
  int32_t Find(std::string_view token) const;
  const std::string& Token(int32_t id) const { return tokens_.at(static_cast<size_t>(id)); }
  const std::vector<std::string>& tokens() const { return tokens_; }

  int32_t unk_id() const { return unk_id_; }
  // -1 when the vocabulary lacks them (pretraining requires them; checked there).
  int32_t pad_id() const { return pad_id_; }
  int32_t cls_id() const { return cls_id_; }
  int32_t sep_id() const { return sep_id_; }
  int32_t mask_id() const { return mask_id_; }

  // xxh3-64 (hex) over the tokens joined by '\n': identifies the vocabulary
  // independently of trailing whitespace or line endings in the file.
  const std::string& checksum() const { return checksum_; }

 private:
  Vocab() = default;
  Status Init(std::vector<std::string> tokens);

  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int32_t> ids_;
  int32_t unk_id_ = -1, pad_id_ = -1, cls_id_ = -1, sep_id_ = -1, mask_id_ = -1;
  std::string checksum_;
};

}  // namespace bert
