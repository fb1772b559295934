#include "datapipe/data_source.h"

#include "datapipe/chinese_words.h"
#include "datapipe/vocab.h"

namespace bert {

SampleOptions SampleOptionsFromConfig(const DataConfig& data) {
  SampleOptions options;
  options.seed = data.seed;
  options.max_seq_len = data.max_seq_len;
  options.short_seq_prob = data.short_seq_prob;
  options.masking.masked_lm_prob = data.masked_lm_prob;
  options.masking.max_predictions = data.max_predictions;
  options.masking.whole_word = data.whole_word_masking;
  options.masking.chinese_words = data.chinese_whole_word;
  Result<Objective> objective = ParseObjective(data.objective);
  options.objective = objective.ok() ? *objective : Objective::kMlmNsp;  // RunConfig::Validate checked it
  options.packing = data.packing;
  return options;
}

Result<DataSource> OpenDataSource(const RunConfig& config, uint64_t max_resident_bytes) {
  DataSource source;
  source.options = SampleOptionsFromConfig(config.data);
  BERT_RETURN_IF_ERROR(source.options.Validate());
  if (source.options.masking.chinese_words) BERT_RETURN_IF_ERROR(CheckChineseSegmenter());
  Result<std::unique_ptr<Corpus>> corpus = Corpus::Open(config.data.db);
  if (!corpus.ok()) return corpus.status();
  source.corpus = std::move(corpus).value();
  // The corpus carries its vocabulary; the config's vocab.txt is a check.
  Result<std::shared_ptr<const Vocab>> vocab = source.corpus->LoadVocab();
  if (!vocab.ok()) return vocab.status();
  if (!config.vocab.empty()) {
    Result<std::shared_ptr<const Vocab>> configured = Vocab::Load(config.vocab);
    if (!configured.ok()) return Status::InvalidArgument("vocab: " + configured.status().message());
    BERT_RETURN_IF_ERROR(
        source.corpus->CheckVocabulary((*configured)->checksum(), (*configured)->size(), config.lower_case));
  }
  Result<MaskingVocab> masking_vocab = MaskingVocab::FromVocab(**vocab);
  if (!masking_vocab.ok()) return masking_vocab.status();
  source.vocab = std::make_shared<const MaskingVocab>(std::move(masking_vocab).value());
  CorpusIndexOptions index_options;
  index_options.max_resident_bytes = max_resident_bytes;
  Result<std::unique_ptr<CorpusIndex>> index = CorpusIndex::Load(*source.corpus, index_options);
  if (!index.ok()) return index.status();
  source.index = std::move(index).value();
  source.vocab_checksum = source.corpus->vocab_checksum();
  source.fingerprint = source.corpus->vocab_checksum() + "/" + std::to_string(source.index->num_documents()) +
                       " documents/" + std::to_string(source.index->num_tokens()) + " tokens";
  return source;
}

}  // namespace bert
