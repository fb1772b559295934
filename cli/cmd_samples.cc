// bertctl samples: MLM/NSP training samples of a corpus, as JSONL or as
// batches in the binary batch codec, exactly as the coordinator would build
// them (datapipe/sample_plan.h). For inspection, debugging and offline use.
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "common/logging.h"
#include "datapipe/chinese_words.h"
#include "datapipe/batch_codec.h"
#include "datapipe/corpus_index.h"
#include "datapipe/sample_plan.h"
#include "datapipe/vocab.h"

namespace bert::cli {
namespace {

struct SamplesArgs {
  std::vector<std::string> dbs;
  std::string vocab_path;
  SampleOptions options;
  uint64_t epoch = 0;
  uint64_t start = 0;
  uint64_t count = 0;
  std::string format = "jsonl";
  std::string output = "-";  // "-" = stdout
  int threads = 1;
  uint32_t batch_size = 256;      // binary: samples per batch
  uint32_t pad_to_multiple = 1;   // binary: length bucketing
  uint64_t resident_mb = 8192;    // keep token ids in memory up to this size
  std::string objective = "mlm_nsp";
};

constexpr uint64_t kChunkSamples = 1 << 16;  // samples generated between writes

Status ValidateArgs(SamplesArgs& args) {
  Result<Objective> objective = ParseObjective(args.objective);
  if (!objective.ok()) return Status::InvalidArgument("--objective: " + objective.status().message());
  args.options.objective = *objective;
  BERT_RETURN_IF_ERROR(args.options.Validate());
  if (args.format != "jsonl" && args.format != "binary") {
    return Status::InvalidArgument("--format: must be jsonl or binary, got '" + args.format + "'");
  }
  if (args.count == 0) return Status::InvalidArgument("--count: must be at least 1");
  if (args.threads < 1 || args.threads > 256) return Status::InvalidArgument("--threads: must be between 1 and 256");
  if (args.batch_size < 1 || args.batch_size > 65536) {
    return Status::InvalidArgument("--batch-size: must be between 1 and 65536");
  }
  if (args.pad_to_multiple < 1 || args.pad_to_multiple > 4096) {
    return Status::InvalidArgument("--pad-to-multiple: must be between 1 and 4096");
  }
  return Status::Ok();
}

template <typename Int>
void AppendList(const char* key, const std::vector<Int>& values, std::string* out) {
  out->append(",\"").append(key).append("\":[");
  char digits[24];
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out->push_back(',');
    auto [end, ec] = std::to_chars(digits, digits + sizeof(digits), values[i]);
    out->append(digits, end);
  }
  out->push_back(']');
}

void AppendJsonLine(const TrainingSample& sample, std::string* out) {
  out->append("{\"index\":").append(std::to_string(sample.index));
  AppendList("input_ids", sample.input_ids, out);
  AppendList("token_type_ids", sample.TokenTypeIds(), out);
  AppendList("masked_positions", sample.masked_positions, out);
  AppendList("masked_labels", sample.masked_labels, out);
  out->append(",\"is_random_next\":").append(sample.is_random_next ? "true" : "false").append("}\n");
}

// Output to stdout, or to FILE.tmp renamed to FILE once complete.
class Output {
 public:
  explicit Output(std::string path) : path_(std::move(path)) {}
  ~Output() {
    if (file_ != nullptr && file_ != stdout) {
      std::fclose(file_);
      std::remove((path_ + ".tmp").c_str());
    }
  }
  Status Open() {
    file_ = path_ == "-" ? stdout : std::fopen((path_ + ".tmp").c_str(), "wb");
    return file_ != nullptr ? Status::Ok() : Status::IoError("--output: cannot write " + path_ + ".tmp");
  }
  Status Write(const std::string& bytes) {
    if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) {
      return Status::IoError("--output: write to " + path_ + " failed (disk full?)");
    }
    return Status::Ok();
  }
  Status Commit() {
    if (file_ == stdout) return std::fflush(stdout) == 0 ? Status::Ok() : Status::IoError("--output: stdout");
    FILE* file = file_;
    file_ = nullptr;
    bool ok = std::fflush(file) == 0 && ::fsync(fileno(file)) == 0;
    ok = std::fclose(file) == 0 && ok;
    if (!ok || std::rename((path_ + ".tmp").c_str(), path_.c_str()) != 0) {
      std::remove((path_ + ".tmp").c_str());
      return Status::IoError("--output: cannot complete " + path_);
    }
    return Status::Ok();
  }

 private:
  std::string path_;
  FILE* file_ = nullptr;
};

Status RunSamples(const SamplesArgs& args) {
  using Clock = std::chrono::steady_clock;
  const auto start_time = Clock::now();
  Result<std::unique_ptr<Corpus>> corpus = Corpus::Open(args.dbs);
  if (!corpus.ok()) return corpus.status();
  Result<std::shared_ptr<const Vocab>> vocab = (*corpus)->LoadVocab();
  if (!args.vocab_path.empty()) {
    vocab = Vocab::Load(args.vocab_path);
    if (!vocab.ok()) return Status::InvalidArgument("--vocab: " + vocab.status().message());
    const bool lower_case = (*corpus)->parts().front()->meta().lower_case;  // casing does not matter here
    BERT_RETURN_IF_ERROR((*corpus)->CheckVocabulary((*vocab)->checksum(), (*vocab)->size(), lower_case));
  }
  if (!vocab.ok()) return vocab.status();
  Result<MaskingVocab> masking_vocab = MaskingVocab::FromVocab(**vocab);
  if (!masking_vocab.ok()) return masking_vocab.status();
  if (args.options.masking.chinese_words) {
    if (!args.options.masking.whole_word) return Status::InvalidArgument("--chinese-wwm: needs --wwm");
    BERT_RETURN_IF_ERROR(CheckChineseSegmenter());
  }

  CorpusIndexOptions index_options;
  index_options.max_resident_bytes = std::min<uint64_t>(args.resident_mb, uint64_t{1} << 40) << 20;
  Result<std::unique_ptr<CorpusIndex>> index = CorpusIndex::Load(**corpus, index_options);
  if (!index.ok()) return index.status();
  std::shared_ptr<const CorpusIndex> shared_index = std::move(index).value();
  Result<std::unique_ptr<EpochPlan>> plan =
      EpochPlan::Build(shared_index, corpus->get(), std::make_shared<const MaskingVocab>(*masking_vocab),
                       args.options, args.epoch, args.threads);
  if (!plan.ok()) return plan.status();
  const EpochPlan& epoch = **plan;
  LOG(INFO) << "[samples] " << shared_index->num_documents() << " documents, " << shared_index->num_sentences()
            << " sentences (index " << (shared_index->memory_bytes() >> 20) << " MB, tokens "
            << (shared_index->resident() ? "resident" : "read from the database") << "); epoch " << args.epoch
            << ": " << epoch.num_samples() << " samples (layout " << (epoch.layout_bytes() >> 20) << " MB), ready in "
            << std::chrono::duration<double>(Clock::now() - start_time).count() << " s";
  if (args.start >= epoch.num_samples() || args.count > epoch.num_samples() - args.start) {
    return Status::InvalidArgument("--count: samples [" + std::to_string(args.start) + ", " +
                                   std::to_string(args.start + args.count) + ") are beyond epoch " +
                                   std::to_string(args.epoch) + ", which has " +
                                   std::to_string(epoch.num_samples()) + " samples");
  }

  Output output(args.output);
  BERT_RETURN_IF_ERROR(output.Open());
  Batch batch;
  batch.epoch = args.epoch;
  batch.vocab_size = masking_vocab->vocab_size;
  batch.pad_id = masking_vocab->pad_id;
  batch.cls_id = masking_vocab->cls_id;
  batch.sep_id = masking_vocab->sep_id;
  BatchEncodeOptions encode_options;
  encode_options.pad_to_multiple = args.pad_to_multiple;
  // Binary chunks hold whole batches, so batch boundaries do not depend on chunking.
  const uint64_t chunk = args.format == "binary" ? (kChunkSamples / args.batch_size + 1) * args.batch_size : kChunkSamples;
  std::vector<TrainingSample> samples;
  std::string bytes, encoded;
  for (uint64_t done = 0; done < args.count;) {
    const uint64_t n = std::min(chunk, args.count - done);
    BERT_RETURN_IF_ERROR(GenerateSamples(epoch, args.start + done, n, args.threads, &samples));
    bytes.clear();
    if (args.format == "jsonl") {
      for (const TrainingSample& sample : samples) AppendJsonLine(sample, &bytes);
    } else {
      for (uint64_t b = 0; b < n; b += args.batch_size) {
        const uint64_t end = std::min<uint64_t>(n, b + args.batch_size);
        batch.first_index = args.start + done + b;
        batch.samples.assign(std::make_move_iterator(samples.begin() + b), std::make_move_iterator(samples.begin() + end));
        BERT_RETURN_IF_ERROR(EncodeBatch(batch, encode_options, &encoded));
        AppendBatchFrame(encoded, &bytes);
      }
    }
    BERT_RETURN_IF_ERROR(output.Write(bytes));
    done += n;
  }
  BERT_RETURN_IF_ERROR(output.Commit());
  const double seconds = std::chrono::duration<double>(Clock::now() - start_time).count();
  LOG(INFO) << "[samples] wrote " << args.count << " samples (" << args.format << ") in " << seconds << " s";
  return Status::Ok();
}

std::function<int()> SetupSamples(CLI::App& app) {
  auto args = std::make_shared<SamplesArgs>();
  CLI::App* cmd = app.add_subcommand("samples", "Write MLM/NSP training samples of a corpus (JSONL or binary batches)");
  cmd->footer(
      "A sample is a pure function of (corpus, --seed, --epoch, index): the same arguments give the same\n"
      "bytes for any --threads. Instances follow Google BERT's create_pretraining_data.py; masking is\n"
      "re-drawn every epoch. --format binary writes batches of --batch-size samples in the batch codec,\n"
      "each preceded by its size (u64 little-endian).\n"
      "Example: bertctl samples --db db/ --seed 1 --epoch 0 --start 0 --count 10");
  cmd->add_option("--db", args->dbs, "Corpus database directories (shards of one prepare, or corpora in order)")
      ->required();
  cmd->add_option("--vocab", args->vocab_path,
                  "Check that the corpus was prepared with this vocab.txt (default: the vocabulary stored in it)");
  cmd->add_option("--seed", args->options.seed, "Plan seed")->required();
  cmd->add_option("--epoch", args->epoch, "Epoch (masking and layout are re-drawn per epoch)")->capture_default_str();
  cmd->add_option("--start", args->start, "First global sample index of the epoch")->capture_default_str();
  cmd->add_option("--count", args->count, "Number of samples")->required();
  cmd->add_option("--max-seq-len", args->options.max_seq_len, "Tokens per sample including [CLS] and [SEP]")
      ->capture_default_str();
  cmd->add_option("--max-predictions", args->options.masking.max_predictions, "Most masked positions per sample")
      ->capture_default_str();
  cmd->add_option("--short-seq-prob", args->options.short_seq_prob, "Chance of a shorter target length per document")
      ->capture_default_str();
  cmd->add_option("--masked-lm-prob", args->options.masking.masked_lm_prob, "Share of positions to mask")
      ->capture_default_str();
  cmd->add_flag("--wwm", args->options.masking.whole_word, "Whole-word masking (a word's ## pieces together)");
  cmd->add_flag("--chinese-wwm", args->options.masking.chinese_words,
                "With --wwm: the Chinese characters of a word (ICU's segmenter) are masked together too");
  cmd->add_option("--objective", args->objective, "mlm_nsp, mlm (one segment) or mlm_sop (sentence order)")
      ->capture_default_str();
  cmd->add_flag("--packing", args->options.packing,
                "Full-length windows across documents, joined by [SEP] (needs --objective mlm)");
  cmd->add_option("--format", args->format, "jsonl or binary")->capture_default_str();
  cmd->add_option("--output", args->output, "Output file ('-' = stdout); written whole or not at all")
      ->capture_default_str();
  cmd->add_option("--threads", args->threads, "Generating threads (the output does not depend on them)")
      ->capture_default_str();
  cmd->add_option("--batch-size", args->batch_size, "Binary: samples per batch")->capture_default_str();
  cmd->add_option("--pad-to-multiple", args->pad_to_multiple, "Binary: round padded lengths up to a multiple")
      ->capture_default_str();
  cmd->add_option("--resident-mb", args->resident_mb, "Keep token ids in memory when they fit (0: read the database)")
      ->capture_default_str();
  return [args] {
    Status st = ValidateArgs(*args);
    if (!st.ok()) {
      LOG(ERROR) << "[samples] " << st.message();
      return 2;
    }
    st = RunSamples(*args);
    if (!st.ok()) {
      LOG(ERROR) << "[samples] " << st.message();
      return st.code() == Status::Code::kInvalidArgument ? 2 : 1;
    }
    return 0;
  };
}

}  // namespace

BERT_REGISTER_COMMAND(SetupSamples);

}  // namespace bert::cli
