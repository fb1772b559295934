#include "datapipe/vocab.h"

#include <xxhash.h>

#include "common/file_util.h"
#include "common/utf8.h"

namespace bert {
namespace {

// Python's str.strip() for the whitespace a vocab line can carry.
std::string_view StripAsciiSpace(std::string_view s) {
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

Result<std::shared_ptr<const Vocab>> Vocab::Load(const std::string& path) {
  Result<std::string> contents = ReadFile(path);
  if (!contents.ok()) return contents.status();
  if (!IsValidUtf8(*contents)) return Status::InvalidArgument(path + ": vocabulary is not valid UTF-8");
  std::vector<std::string> tokens;
  std::string_view rest(*contents);
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    tokens.emplace_back(StripAsciiSpace(line));
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  auto vocab = std::shared_ptr<Vocab>(new Vocab());
  Status st = vocab->Init(std::move(tokens));
  if (!st.ok()) return Status::InvalidArgument(path + ": " + st.message());
  return std::shared_ptr<const Vocab>(std::move(vocab));
}

Result<std::shared_ptr<const Vocab>> Vocab::FromTokens(std::vector<std::string> tokens) {
  auto vocab = std::shared_ptr<Vocab>(new Vocab());
  BERT_RETURN_IF_ERROR(vocab->Init(std::move(tokens)));
  return std::shared_ptr<const Vocab>(std::move(vocab));
}

Status Vocab::Init(std::vector<std::string> tokens) {
  if (tokens.empty()) return Status::InvalidArgument("vocabulary is empty");
  tokens_ = std::move(tokens);
  ids_.reserve(tokens_.size() * 2);
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  for (size_t i = 0; i < tokens_.size(); ++i) {
    ids_[tokens_[i]] = static_cast<int32_t>(i);  // a duplicate maps to its later id, as in the reference
    XXH3_64bits_update(state, tokens_[i].data(), tokens_[i].size());
    XXH3_64bits_update(state, "\n", 1);
  }
  checksum_ = Hex64(XXH3_64bits_digest(state));
  XXH3_freeState(state);
  unk_id_ = Find("[UNK]");
  pad_id_ = Find("[PAD]");
  cls_id_ = Find("[CLS]");
  sep_id_ = Find("[SEP]");
  mask_id_ = Find("[MASK]");
  if (unk_id_ < 0) return Status::InvalidArgument("vocabulary has no [UNK] token; is this a BERT vocab.txt?");
  return Status::Ok();
}

int32_t Vocab::Find(std::string_view token) const {
  auto it = ids_.find(std::string(token));
  return it == ids_.end() ? -1 : it->second;
}

}  // namespace bert
