#include "worker/train/fill_mask.h"

#include <glog/logging.h>

#include <algorithm>

#include "datapipe/tokenizer.h"
#include "datapipe/vocab.h"
#include "interop/pretrained.h"
#include "worker/model/bert_heads.h"
#include "worker/train/init_from.h"

namespace bert {
namespace {

constexpr char kMask[] = "[MASK]";

bool StartsWith(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

// A text as a quoted one-line snippet for errors.
std::string Quote(const std::string& text) {
  std::string out = text.size() > 60 ? text.substr(0, 57) + "..." : text;
  std::replace(out.begin(), out.end(), '\n', ' ');
  return "\"" + out + "\"";
}

}  // namespace

Result<std::vector<FillMaskResult>> FillMask(const std::string& model_path, const std::vector<std::string>& texts,
                                             int32_t top_k) {
  if (top_k < 1) return Status::InvalidArgument("--top-k: must be at least 1, got " + std::to_string(top_k));
  if (texts.empty()) return Status::InvalidArgument("no text to fill (give one or more texts with [MASK])");
  Result<PretrainedModel> pretrained = LoadPretrained(model_path, /*with_weights=*/true);
  if (!pretrained.ok()) return Status::InvalidArgument("--model: " + pretrained.status().message());
  Result<BertConfig> config = BertConfigFromJson(pretrained->config, pretrained->path);
  if (!config.ok()) return config.status();
  Result<std::shared_ptr<const Vocab>> vocab = Vocab::FromTokens(pretrained->vocab);
  if (!vocab.ok()) return Status::InvalidArgument(pretrained->path + ": vocabulary: " + vocab.status().message());
  if ((*vocab)->mask_id() < 0 || (*vocab)->cls_id() < 0 || (*vocab)->sep_id() < 0) {
    return Status::InvalidArgument(pretrained->path + ": the vocabulary lacks [MASK], [CLS] or [SEP]");
  }
  BertForPreTraining model(*config);
  std::vector<std::string> kept;
  BERT_RETURN_IF_ERROR(CopyPretrainedWeights(*pretrained, &model, &kept));
  for (const std::string& name : kept) {
    if (StartsWith(name, "cls.predictions.")) {
      return Status::InvalidArgument(pretrained->path + " has no masked-LM head (" + name +
                                     " is missing): fill-mask needs a pretraining run or checkpoint, or an HF "
                                     "BertForPreTraining or BertForMaskedLM directory, not a classifier or BertModel");
    }
  }
  TokenizerOptions tokenizer_options;
  tokenizer_options.lower_case = pretrained->do_lower_case;
  FullTokenizer tokenizer(*vocab, tokenizer_options);
  const Vocab& v = **vocab;

  std::vector<FillMaskResult> results;
  torch::NoGradGuard no_grad;
  for (const std::string& text : texts) {
    FillMaskResult result;
    result.text = text;
    std::vector<int32_t> ids = {v.cls_id()};
    size_t start = 0;
    while (true) {
      const size_t at = text.find(kMask, start);
      std::vector<int32_t> piece = tokenizer.Encode(std::string_view(text).substr(start, at == std::string::npos
                                                                                            ? std::string::npos
                                                                                            : at - start));
      ids.insert(ids.end(), piece.begin(), piece.end());
      if (at == std::string::npos) break;
      result.mask_positions.push_back(static_cast<int32_t>(ids.size()));
      ids.push_back(v.mask_id());
      start = at + sizeof(kMask) - 1;
    }
    ids.push_back(v.sep_id());
    if (result.mask_positions.empty()) {
      return Status::InvalidArgument("text " + Quote(text) + " has no [MASK] to fill");
    }
    if (static_cast<int64_t>(ids.size()) > config->max_position_embeddings) {
      return Status::InvalidArgument("text " + Quote(text) + " is " + std::to_string(ids.size()) +
                                     " tokens, more than the model's " +
                                     std::to_string(config->max_position_embeddings));
    }
    for (int32_t id : ids) result.tokens.push_back(v.Token(id));
    const int64_t length = static_cast<int64_t>(ids.size());
    const int64_t masks = static_cast<int64_t>(result.mask_positions.size());
    PretrainBatch batch;
    batch.input_ids = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kLong).view({1, length});
    batch.token_type_ids = torch::zeros({1, length}, torch::kLong);
    batch.lengths = torch::full({1}, length, torch::kLong);
    batch.masked_positions =
        torch::tensor(std::vector<int64_t>(result.mask_positions.begin(), result.mask_positions.end()), torch::kLong);
    batch.masked_labels = torch::zeros({masks}, torch::kLong);
    batch.nsp_labels = torch::zeros({1}, torch::kLong);
    const torch::Tensor probabilities =
        torch::softmax(model.MlmLogits(model.Forward(batch, /*training=*/false)).to(torch::kFloat), 1);
    const int64_t k = std::min<int64_t>(top_k, config->vocab_size);
    const auto [values, indices] = probabilities.topk(k, 1);
    for (int64_t m = 0; m < masks; ++m) {
      std::vector<FillMaskCandidate> candidates;
      for (int64_t j = 0; j < k; ++j) {
        const int32_t id = static_cast<int32_t>(indices[m][j].item<int64_t>());
        candidates.push_back(FillMaskCandidate{v.Token(id), id, values[m][j].item<double>()});
      }
      result.candidates.push_back(std::move(candidates));
    }
    results.push_back(std::move(result));
  }
  return results;
}

}  // namespace bert
