#include "datapipe/sample_plan.h"

#include <algorithm>
#include <atomic>
#include <thread>

#include "common/logging.h"

namespace bert {

Result<Objective> ParseObjective(const std::string& name) {
  if (name == "mlm_nsp") return Objective::kMlmNsp;
  if (name == "mlm") return Objective::kMlm;
  if (name == "mlm_sop") return Objective::kMlmSop;
  return Status::InvalidArgument("must be mlm_nsp, mlm or mlm_sop, got " + name);
}

const char* ObjectiveName(Objective objective) {
  switch (objective) {
    case Objective::kMlmNsp: return "mlm_nsp";
    case Objective::kMlm: return "mlm";
    case Objective::kMlmSop: return "mlm_sop";
  }
  return "?";
}

Status SampleOptions::Validate() const {
  if (packing && objective != Objective::kMlm) {
    return Status::InvalidArgument(std::string("--packing: needs objective mlm (a packed sample has no sentence "
                                               "pair), got ") +
                                   ObjectiveName(objective));
  }
  if (max_seq_len < 8 || max_seq_len > kMaxSeqLenLimit) {
    return Status::InvalidArgument("--max-seq-len: must be between 8 and " + std::to_string(kMaxSeqLenLimit) +
                                   ", got " + std::to_string(max_seq_len));
  }
  if (!(short_seq_prob >= 0 && short_seq_prob <= 1)) {
    return Status::InvalidArgument("--short-seq-prob: must be in [0, 1], got " + std::to_string(short_seq_prob));
  }
  return masking.Validate();
}

namespace {

// The layout draws of one document, in the reference's order.
struct DocumentDraws {
  DocumentDraws(const SampleOptions& options, uint64_t epoch, uint64_t doc)
      : rng(rnd::Hash(options.seed, rnd::kStreamLayout, epoch, doc)) {}
  int32_t TargetLength(const SampleOptions& options) {
    // [CLS] A [SEP] B [SEP], or [CLS] A [SEP] with one segment.
    const int32_t max_num_tokens = options.max_seq_len - (options.objective == Objective::kMlm ? 2 : 3);
    // "We *usually* want to fill up the entire sequence ... however, we
    // sometimes (i.e., short_seq_prob == 0.1 == 10% of the time) want to use
    // shorter sequences to minimize the mismatch between pre-training and
    // fine-tuning." (create_pretraining_data.py)
    if (rng.Uniform() < options.short_seq_prob) return static_cast<int32_t>(rng.Between(2, max_num_tokens));
    return max_num_tokens;
  }
  rnd::Generator rng;
};

}  // namespace

int32_t DocumentTargetLength(const SampleOptions& options, uint64_t epoch, uint64_t doc) {
  DocumentDraws draws(options, epoch, doc);
  return draws.TargetLength(options);
}

void LayoutDocument(const CorpusIndex& index, const SampleOptions& options, uint64_t epoch, uint64_t doc,
                    std::vector<Instance>* out) {
  const int64_t num_sentences = index.NumSentences(doc);
  if (num_sentences == 0) return;
  DocumentDraws draws(options, epoch, doc);
  rnd::Generator& rng = draws.rng;
  const int64_t target_length = draws.TargetLength(options);

  int64_t chunk_first = 0;  // the chunk is sentences [chunk_first, i]
  int64_t current_length = 0;
  for (int64_t i = 0; i < num_sentences; ++i) {
    current_length += index.SentenceLength(doc, static_cast<uint32_t>(i));
    if (i != num_sentences - 1 && current_length < target_length) continue;
    const int64_t chunk_size = i - chunk_first + 1;
    const uint64_t doc_begin = index.DocumentBegin(doc);
    const uint32_t chunk_begin = index.SentenceBegin(doc, static_cast<uint32_t>(chunk_first));
    Instance instance;
    instance.a_begin = doc_begin + chunk_begin;
    if (options.objective == Objective::kMlm) {  // one segment: the whole chunk
      instance.a_length = index.SentenceBegin(doc, static_cast<uint32_t>(i + 1)) - chunk_begin;
      out->push_back(instance);
      chunk_first = i + 1;
      current_length = 0;
      continue;
    }
    // A is the first a_end sentences of the chunk.
    const int64_t a_end = chunk_size >= 2 ? rng.Between(1, chunk_size - 1) : 1;
    instance.a_length = index.SentenceBegin(doc, static_cast<uint32_t>(chunk_first + a_end)) - chunk_begin;
    const bool random_next =
        chunk_size == 1 || (options.objective == Objective::kMlmNsp && rng.Uniform() < 0.5);
    if (random_next) {
      // Random next: B is a span of another document, long enough to reach
      // the target length, starting at a random sentence.
      const int64_t target_b_length = target_length - static_cast<int64_t>(instance.a_length);
      uint64_t random_doc = doc;
      for (int attempt = 0; attempt < 10; ++attempt) {  // "10 tries", as the reference
        random_doc = index.NonemptyDocument(rng.Below(index.num_nonempty_documents()));
        if (random_doc != doc) break;
      }
      const uint32_t random_sentences = index.NumSentences(random_doc);
      const uint32_t random_start = static_cast<uint32_t>(rng.Below(random_sentences));
      uint32_t end = random_start;
      int64_t length_b = 0;
      while (end < random_sentences) {
        length_b += index.SentenceLength(random_doc, end++);
        if (length_b >= target_b_length) break;
      }
      const uint32_t b_begin = index.SentenceBegin(random_doc, random_start);
      instance.b_begin_and_flag = (index.DocumentBegin(random_doc) + b_begin) | Instance::kRandomNextBit;
      instance.b_length = index.SentenceBegin(random_doc, end) - b_begin;
      // "We didn't actually use these segments so we 'put them back' so they
      // don't go to waste."
      i -= chunk_size - a_end;
    } else {
      instance.b_begin_and_flag = instance.a_begin + instance.a_length;
      instance.b_length = index.SentenceBegin(doc, static_cast<uint32_t>(i + 1)) - chunk_begin - instance.a_length;
      if (options.objective == Objective::kMlmSop && rng.Uniform() < 0.5) {
        // ALBERT: "we just swap tokens_a and tokens_b"; the label is 1.
        const uint64_t first = instance.a_begin;
        const uint32_t first_length = instance.a_length;
        instance.a_begin = instance.b_begin_and_flag;
        instance.a_length = instance.b_length;
        instance.b_begin_and_flag = first | Instance::kRandomNextBit;
        instance.b_length = first_length;
      }
    }
    out->push_back(instance);
    chunk_first = i + 1;
    current_length = 0;
  }
}

void LayoutPacked(const CorpusIndex& index, const SampleOptions& options, uint64_t epoch, std::vector<Instance>* out) {
  const uint64_t slots = static_cast<uint64_t>(options.max_seq_len) - 2;  // between [CLS] and the last [SEP]
  const uint64_t num_docs = index.num_documents();
  auto length = [&](uint64_t doc) { return index.DocumentBegin(doc + 1) - index.DocumentBegin(doc); };
  uint64_t doc = 0, offset = 0;  // the stream's position: a document and a token in it
  auto skip_ended = [&] {
    while (doc < num_docs && offset == length(doc)) {
      ++doc;
      offset = 0;
    }
  };
  // The epoch's phase: the stream starts `skip` tokens in.
  rnd::Generator rng(rnd::Hash(options.seed, rnd::kStreamPacking, epoch));
  for (uint64_t skip = rng.Below(slots); skip > 0 && doc < num_docs;) {
    skip_ended();
    if (doc == num_docs) break;
    const uint64_t take = std::min(skip, length(doc) - offset);
    offset += take;
    skip -= take;
  }
  while (true) {
    skip_ended();
    if (doc == num_docs) break;
    Instance window;
    window.a_begin = index.DocumentBegin(doc) + offset;
    uint64_t free = slots, text = 0;
    while (free > 0) {
      const uint64_t take = std::min(free, length(doc) - offset);
      text += take;
      free -= take;
      offset += take;
      if (offset < length(doc)) break;  // the window is full
      skip_ended();
      // A separator, then the next document; unless the separator would be
      // the window's last position (or there is no next document).
      if (doc == num_docs || free < 2) break;
      free -= 1;
    }
    window.a_length = static_cast<uint32_t>(text);
    out->push_back(window);
  }
}

TrimAmounts TruncationAmounts(uint32_t len_a, uint32_t len_b, uint32_t max_num_tokens) {
  // The reference trims one token at a time from the longer segment, B on a
  // tie, until the pair fits: first the longer one down to the other's length,
  // then both alternately, B first.
  TrimAmounts trim;
  uint64_t total = uint64_t{len_a} + len_b;
  if (total <= max_num_tokens) return trim;
  uint64_t excess = total - max_num_tokens;
  if (len_a > len_b) {
    trim.a = static_cast<uint32_t>(std::min<uint64_t>(excess, len_a - len_b));
    excess -= trim.a;
  } else {
    trim.b = static_cast<uint32_t>(std::min<uint64_t>(excess, len_b - len_a));
    excess -= trim.b;
  }
  trim.b += static_cast<uint32_t>((excess + 1) / 2);
  trim.a += static_cast<uint32_t>(excess / 2);
  return trim;
}

SampleRange RankSlice(uint64_t step, uint64_t global_batch, uint32_t rank, uint32_t world) {
  CHECK_GE(world, 1u);
  CHECK_LT(rank, world);
  const uint64_t base = step * global_batch;
  // 128-bit products: global_batch * rank cannot overflow.
  auto offset = [&](uint64_t r) {
    return static_cast<uint64_t>(static_cast<unsigned __int128>(global_batch) * r / world);
  };
  return SampleRange{base + offset(rank), base + offset(rank + 1)};
}

EpochPlan::EpochPlan(std::shared_ptr<const CorpusIndex> index, const Corpus* corpus,
                     std::shared_ptr<const MaskingVocab> vocab, const SampleOptions& options, uint64_t epoch,
                     std::vector<Instance> instances)
    : index_(std::move(index)),
      corpus_(corpus),
      vocab_(std::move(vocab)),
      options_(options),
      epoch_(epoch),
      instances_(std::move(instances)),
      order_(instances_.size(), rnd::Hash(options.seed, rnd::kStreamPermutation, epoch)) {}

Result<std::unique_ptr<EpochPlan>> EpochPlan::Build(std::shared_ptr<const CorpusIndex> index, const Corpus* corpus,
                                                    std::shared_ptr<const MaskingVocab> vocab,
                                                    const SampleOptions& options, uint64_t epoch, int num_threads) {
  BERT_RETURN_IF_ERROR(options.Validate());
  CHECK(index != nullptr && vocab != nullptr);
  if (vocab->vocab_size != index->vocab_size()) {
    return Status::FailedPrecondition("--vocab: has " + std::to_string(vocab->vocab_size) +
                                      " tokens but the corpus was prepared with " +
                                      std::to_string(index->vocab_size()));
  }
  if (!index->resident() && corpus == nullptr) {
    return Status::InvalidArgument("the corpus index is not resident and no corpus was given to read tokens from");
  }
  if (index->num_sentences() == 0) return Status::FailedPrecondition("the corpus has no sentences to sample from");

  if (options.packing) {
    std::vector<Instance> windows;
    LayoutPacked(*index, options, epoch, &windows);
    return std::unique_ptr<EpochPlan>(
        new EpochPlan(std::move(index), corpus, std::move(vocab), options, epoch, std::move(windows)));
  }
  // Fixed blocks of documents, laid out on any thread, joined in block order.
  constexpr uint64_t kDocsPerBlock = 1024;
  const uint64_t num_docs = index->num_documents();
  const uint64_t num_blocks = (num_docs + kDocsPerBlock - 1) / kDocsPerBlock;
  std::vector<std::vector<Instance>> blocks(num_blocks);
  std::atomic<uint64_t> next_block{0};
  auto worker = [&] {
    for (uint64_t b; (b = next_block.fetch_add(1)) < num_blocks;) {
      for (uint64_t d = b * kDocsPerBlock; d < std::min(num_docs, (b + 1) * kDocsPerBlock); ++d) {
        LayoutDocument(*index, options, epoch, d, &blocks[b]);
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 1; t < std::max(1, num_threads); ++t) threads.emplace_back(worker);
  worker();
  for (std::thread& t : threads) t.join();
  uint64_t total = 0;
  for (const auto& block : blocks) total += block.size();
  std::vector<Instance> instances;
  instances.reserve(total);
  for (auto& block : blocks) {
    instances.insert(instances.end(), block.begin(), block.end());
    std::vector<Instance>().swap(block);
  }
  return std::unique_ptr<EpochPlan>(
      new EpochPlan(std::move(index), corpus, std::move(vocab), options, epoch, std::move(instances)));
}

Status SampleGenerator::CopyTokens(uint64_t begin, uint32_t count, int32_t* out) {
  const CorpusIndex& index = plan_.index();
  if (index.resident()) {
    index.CopyTokens(begin, count, out);
    return Status::Ok();
  }
  const uint64_t doc = index.DocumentOf(begin);
  CachedDocument* slot = nullptr;
  for (CachedDocument& entry : cache_) {
    if (entry.id == doc) slot = &entry;
  }
  if (slot == nullptr) {
    slot = &*std::min_element(std::begin(cache_), std::end(cache_),
                              [](const auto& x, const auto& y) { return x.last_use < y.last_use; });
    slot->id = UINT64_MAX;
    BERT_RETURN_IF_ERROR(plan_.corpus()->Get(doc, &slot->doc));
    if (slot->doc.token_ids.size() != index.DocumentBegin(doc + 1) - index.DocumentBegin(doc)) {
      return Status::Corruption("document " + std::to_string(doc) + " changed since the corpus index was loaded");
    }
    slot->id = doc;
  }
  slot->last_use = ++cache_clock_;
  const uint64_t offset = begin - index.DocumentBegin(doc);
  std::copy(slot->doc.token_ids.begin() + offset, slot->doc.token_ids.begin() + offset + count, out);
  return Status::Ok();
}

Status SampleGenerator::Generate(uint64_t index, TrainingSample* sample) {
  if (index >= plan_.num_samples()) return GenerateRange(index, 1, sample);  // the error message
  return GenerateInstance(index, plan_.InstanceId(index), sample);
}

Status SampleGenerator::GenerateRange(uint64_t first, uint64_t count, TrainingSample* out) {
  if (first > plan_.num_samples() || count > plan_.num_samples() - first) {
    return Status::InvalidArgument("samples [" + std::to_string(first) + ", " + std::to_string(first + count) +
                                   ") are beyond epoch " + std::to_string(plan_.epoch()) + ", which has " +
                                   std::to_string(plan_.num_samples()) + " samples");
  }
  // Two-stage software pipeline over the random accesses: the instance of
  // sample i + kAhead, then the tokens of sample i + kAhead / 2. On a corpus
  // larger than the caches each is a miss to memory.
  constexpr uint64_t kAhead = 8;
  uint64_t instance_ids[kAhead];
  const uint64_t end = first + count;
  const CorpusIndex& index = plan_.index();
  for (uint64_t i = first; i < std::min(end, first + kAhead); ++i) instance_ids[i % kAhead] = plan_.InstanceId(i);
  for (uint64_t i = first; i < end; ++i) {
    const uint64_t instance_id = instance_ids[i % kAhead];
    if (i + kAhead / 2 < end && index.resident()) {
      const Instance& soon = plan_.instance(instance_ids[(i + kAhead / 2) % kAhead]);
      index.PrefetchTokens(soon.a_begin);
      index.PrefetchTokens(soon.b_begin());
    }
    if (i + kAhead < end) {
      instance_ids[i % kAhead] = plan_.InstanceId(i + kAhead);
      __builtin_prefetch(&plan_.instance(instance_ids[i % kAhead]));
    }
    BERT_RETURN_IF_ERROR(GenerateInstance(i, instance_id, &out[i - first]));
  }
  return Status::Ok();
}

Status SampleGenerator::GeneratePacked(const Instance& window, TrainingSample* sample) {
  const CorpusIndex& index = plan_.index();
  const MaskingVocab& vocab = plan_.vocab();
  std::vector<int32_t>& ids = sample->input_ids;
  ids.resize(static_cast<size_t>(plan_.options().max_seq_len));
  size_t n = 0;
  ids[n++] = vocab.cls_id;
  uint64_t pos = window.a_begin, remaining = window.a_length;
  uint64_t doc = index.DocumentOf(pos);
  while (remaining > 0) {
    while (index.DocumentBegin(doc + 1) == pos) ++doc;  // ended (or empty) documents
    const uint64_t take = std::min<uint64_t>(remaining, index.DocumentBegin(doc + 1) - pos);
    if (n + take + 1 > ids.size()) return Status::Corruption("a packed window is longer than max_seq_len");
    BERT_RETURN_IF_ERROR(CopyTokens(pos, static_cast<uint32_t>(take), &ids[n]));
    n += take;
    pos += take;
    remaining -= take;
    if (remaining > 0) {  // a document ended inside the window
      if (n + 2 > ids.size()) return Status::Corruption("a packed window is longer than max_seq_len");
      ids[n++] = vocab.sep_id;
    }
  }
  ids[n++] = vocab.sep_id;
  ids.resize(n);
  sample->segment_b_start = static_cast<uint32_t>(n);  // one segment: token type 0 throughout
  sample->is_random_next = false;
  return Status::Ok();
}

Status SampleGenerator::GenerateInstance(uint64_t index, uint64_t instance_id, TrainingSample* sample) {
  const SampleOptions& options = plan_.options();
  const MaskingVocab& vocab = plan_.vocab();
  const Instance& instance = plan_.instance(instance_id);
  sample->index = index;
  if (options.packing) {
    BERT_RETURN_IF_ERROR(GeneratePacked(instance, sample));
    ApplyMasking(options.masking, vocab, rnd::Hash(options.seed, rnd::kStreamMasking, plan_.epoch(), index), sample);
    return Status::Ok();
  }
  const bool pair = options.objective != Objective::kMlm;
  const TrimAmounts trim = TruncationAmounts(instance.a_length, instance.b_length,
                                             static_cast<uint32_t>(options.max_seq_len - (pair ? 3 : 2)));
  // Each trimmed token came off the front or the back with probability 1/2,
  // so the front share is a Binomial(trim, 1/2) draw.
  rnd::Generator rng(rnd::Hash(options.seed, rnd::kStreamTruncation, plan_.epoch(), instance_id));
  const uint32_t a_front = static_cast<uint32_t>(rng.CoinFlips(trim.a));
  const uint32_t b_front = static_cast<uint32_t>(rng.CoinFlips(trim.b));
  const uint32_t kept_a = instance.a_length - trim.a;
  const uint32_t kept_b = instance.b_length - trim.b;

  sample->is_random_next = instance.is_random_next();
  std::vector<int32_t>& ids = sample->input_ids;
  ids.resize(kept_a + 2 + (pair ? kept_b + 1 : 0));
  ids[0] = vocab.cls_id;
  BERT_RETURN_IF_ERROR(CopyTokens(instance.a_begin + a_front, kept_a, &ids[1]));
  ids[kept_a + 1] = vocab.sep_id;
  sample->segment_b_start = kept_a + 2;  // with one segment: ids.size(), no token of type 1
  if (pair) {
    BERT_RETURN_IF_ERROR(CopyTokens(instance.b_begin() + b_front, kept_b, &ids[kept_a + 2]));
    ids[kept_a + kept_b + 2] = vocab.sep_id;
  }
  ApplyMasking(options.masking, vocab, rnd::Hash(options.seed, rnd::kStreamMasking, plan_.epoch(), index), sample);
  return Status::Ok();
}

Status GenerateSamples(const EpochPlan& plan, uint64_t start, uint64_t count, int num_threads,
                       std::vector<TrainingSample>* out) {
  if (start > plan.num_samples() || count > plan.num_samples() - start) {
    return Status::InvalidArgument("samples [" + std::to_string(start) + ", " + std::to_string(start + count) +
                                   ") are beyond epoch " + std::to_string(plan.epoch()) + ", which has " +
                                   std::to_string(plan.num_samples()) + " samples");
  }
  out->resize(count);
  const uint64_t num_workers = std::max<uint64_t>(1, std::min<uint64_t>(count, std::max(1, num_threads)));
  std::vector<Status> statuses(num_workers);
  auto work = [&](uint64_t w) {
    SampleGenerator generator(plan);
    const uint64_t begin = count * w / num_workers, end = count * (w + 1) / num_workers;
    statuses[w] = generator.GenerateRange(start + begin, end - begin, out->data() + begin);
  };
  std::vector<std::thread> threads;
  for (uint64_t w = 1; w < num_workers; ++w) threads.emplace_back(work, w);
  work(0);
  for (std::thread& t : threads) t.join();
  for (const Status& status : statuses) BERT_RETURN_IF_ERROR(status);  // the lowest failing range's error
  return Status::Ok();
}

}  // namespace bert
