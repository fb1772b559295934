// Sample plan: MLM/NSP training samples as a pure function of
// (corpus, seed, epoch, global sample index).
//
// This is the data contract of DESIGN.md: the coordinator can build any batch
// for any rank at any time, and resume needs only a step cursor.
//
// 1. Instances. Each epoch turns every document into instances following
//    Google BERT's create_instances_from_document (create_pretraining_data.py;
//    Devlin et al. 2019, section 3.1 and appendix A.2): a target length
//    (max_seq_len - 3, or with probability short_seq_prob a uniform one in
//    [2, max_seq_len - 3], drawn once per document), sentences accumulated
//    into a chunk until it reaches the target or the document ends, a random
//    split of the chunk into A and B, and with probability 0.5 (always for a
//    one-sentence chunk) B replaced by a span of a random other document
//    (is_random_next), the unused sentences of the chunk being put back
//    (the reference's `i -= num_unused_segments`).
//    A document's instances depend only on (seed, epoch, document, sentence
//    lengths): LayoutDocument() draws from rnd::Hash(seed, kStreamLayout,
//    epoch, doc). An epoch's instances are all documents' in document order.
// 2. Order. Sample i of an epoch is instance P(i), where P is a keyed Feistel
//    permutation of [0, num_instances) (random.h): random access, no
//    materialised shuffle.
//    Objectives (SampleOptions::objective; data.objective):
//    - mlm_nsp: as above.
//    - mlm_sop (ALBERT's sentence-order prediction; Lan et al. 2020, section
//      4.2, and its create_pretraining_data.py): B is always the rest of the
//      chunk, and with probability 0.5 A and B are swapped (the label,
//      carried in is_random_next, is then 1: "not in order"). A one-sentence
//      chunk still takes a random B, as in ALBERT's script.
//    - mlm: one segment: the whole chunk is A, there is no B, and the target
//      length is max_seq_len - 2 ([CLS] A [SEP]).
//    Packing (data.packing, objective mlm; RoBERTa's FULL-SENTENCES, Liu et
//    al. 2019 section 4.2, and Cramming, Geiping and Goldstein 2022): the
//    corpus in document order is one stream with a [SEP] between documents,
//    cut into windows of max_seq_len - 2 positions, so every sample but the
//    epoch's last is exactly max_seq_len tokens long ([CLS] window [SEP]) and
//    a batch has no padding. A window never ends with a separator (one that
//    would leave it one position short ends it there instead, so rarely a
//    sample is one token shorter). Each epoch starts the stream at an offset
//    in [0, max_seq_len - 2) drawn from rnd::Hash(seed, kStreamPacking,
//    epoch), so windows are cut elsewhere each epoch; the tokens before it
//    are not used in that epoch. Laid out in one pass (no threads).
// 3. Sample. [CLS] A [SEP] B [SEP] after the reference's truncate_seq_pair
//    (trim the longer segment, from the front or back at random, until the
//    pair fits max_seq_len - 3; the coin flips come from rnd::Hash(seed,
//    kStreamTruncation, epoch, instance)), then masking (masking.h) keyed by
//    (seed, epoch, sample index): re-drawn every epoch, reproducible alone.
//
// Memory: the epoch layout holds 24 bytes per instance (Instance below), plus
// the CorpusIndex (corpus_index.h). An epoch has one instance per ~115 tokens
// at seq 128 and per ~300 at seq 512 (measured on the kernel documentation):
// ~0.8 GB at seq 128 for BERT's 4G-token corpus. Build() lays out documents
// in fixed blocks on several threads and joins the blocks in order, so the
// result does not depend on the thread count; it takes ~10 ms per 10M tokens.
// A sample then costs ~1 us at seq 128 (bench/samples_bench.cc).
//
// Thread safety: CorpusIndex and EpochPlan are immutable and shared;
// SampleGenerator is per thread (it owns scratch space and a document cache).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "datapipe/corpus_index.h"
#include "datapipe/corpus_store.h"
#include "datapipe/masking.h"
#include "datapipe/random.h"
#include "datapipe/training_sample.h"

namespace bert {

constexpr int32_t kMaxSeqLenLimit = 8192;

// The pretraining objective a plan makes samples for (see 1. above).
enum class Objective : uint8_t { kMlmNsp, kMlm, kMlmSop };
// "mlm_nsp", "mlm", "mlm_sop" (data.objective); InvalidArgument otherwise.
Result<Objective> ParseObjective(const std::string& name);
const char* ObjectiveName(Objective objective);

struct SampleOptions {
  uint64_t seed = 12345;       // plan seed: with the epoch, decides everything random
  Objective objective = Objective::kMlmNsp;
  bool packing = false;        // full-length windows across documents (objective kMlm only)
  int32_t max_seq_len = 128;   // tokens per sample including [CLS] and both [SEP]
  double short_seq_prob = 0.1; // chance that a document's target length is shorter (reference: 0.1)
  MaskingOptions masking;
  // Names the bad option, e.g. "--max-seq-len: must be between 8 and 8192, got 4".
  Status Validate() const;
};

// One instance before truncation and masking: the token spans of A and B,
// in the corpus's global token numbering (CorpusIndex::DocumentBegin). Each
// span is whole sentences of one document; when B is not random it follows
// A directly (with SOP's swap, A directly follows B). Objective kMlm has no
// B (b_length 0). A packed window is a_length tokens from a_begin on, across
// documents (the [SEP]s between them are not counted). Token offsets rather
// than sentence numbers, so that making a sample reads this and the tokens,
// nothing else. 24 bytes.
struct Instance {
  uint64_t a_begin = 0;           // first token of A
  uint64_t b_begin_and_flag = 0;  // low 63 bits: first token of B; bit 63: is_random_next
  uint32_t a_length = 0;          // tokens in A (>= 1)
  uint32_t b_length = 0;          // tokens in B (>= 1; 0 for objective kMlm)

  static constexpr uint64_t kRandomNextBit = uint64_t{1} << 63;
  uint64_t b_begin() const { return b_begin_and_flag & ~kRandomNextBit; }
  bool is_random_next() const { return (b_begin_and_flag & kRandomNextBit) != 0; }
  bool operator==(const Instance& o) const {
    return a_begin == o.a_begin && b_begin_and_flag == o.b_begin_and_flag && a_length == o.a_length &&
           b_length == o.b_length;
  }
};
static_assert(sizeof(Instance) == 24, "Instance is the per-instance memory of an epoch layout");

// Appends the instances of document `doc` in epoch `epoch` (see 1. above);
// none for an empty document. options must be valid and not packing. Pure.
void LayoutDocument(const CorpusIndex& index, const SampleOptions& options, uint64_t epoch, uint64_t doc,
                    std::vector<Instance>* out);
// Appends the packed windows of the whole corpus in epoch `epoch` (see
// Packing above). options must be valid and packing. Pure.
void LayoutPacked(const CorpusIndex& index, const SampleOptions& options, uint64_t epoch, std::vector<Instance>* out);

// The reference's target length for document `doc` in `epoch` (the first
// draw of its layout). Exposed for tests of the length distribution.
int32_t DocumentTargetLength(const SampleOptions& options, uint64_t epoch, uint64_t doc);

// Tokens the reference's truncate_seq_pair removes from A and from B to fit
// len_a + len_b into max_num_tokens (which one is trimmed is deterministic;
// only front or back is random). Pure.
struct TrimAmounts {
  uint32_t a = 0, b = 0;
};
TrimAmounts TruncationAmounts(uint32_t len_a, uint32_t len_b, uint32_t max_num_tokens);

// Global batch `step` is samples [step*G, (step+1)*G); rank r of W gets the
// contiguous slice [step*G + r*G/W, step*G + (r+1)*G/W). Requires rank < world.
struct SampleRange {
  uint64_t begin = 0, end = 0;
  uint64_t size() const { return end - begin; }
};
SampleRange RankSlice(uint64_t step, uint64_t global_batch, uint32_t rank, uint32_t world);

// One epoch of one plan: the layout and the order. Immutable.
class EpochPlan {
 public:
  // `corpus` provides token ids when the index is not resident (then it
  // must outlive the plan; it may be null otherwise). Fails on bad options
  // (naming the option), when the vocabulary does not match the corpus, or
  // when the corpus has no sentence.
  static Result<std::unique_ptr<EpochPlan>> Build(std::shared_ptr<const CorpusIndex> index, const Corpus* corpus,
                                                  std::shared_ptr<const MaskingVocab> vocab,
                                                  const SampleOptions& options, uint64_t epoch, int num_threads);

  uint64_t epoch() const { return epoch_; }
  uint64_t num_samples() const { return instances_.size(); }
  const SampleOptions& options() const { return options_; }
  const CorpusIndex& index() const { return *index_; }
  const Corpus* corpus() const { return corpus_; }
  const MaskingVocab& vocab() const { return *vocab_; }
  // The instance of sample `index` (< num_samples()) and its position in the layout.
  uint64_t InstanceId(uint64_t index) const { return order_(index); }
  const Instance& instance(uint64_t instance_id) const { return instances_[instance_id]; }
  uint64_t layout_bytes() const { return instances_.capacity() * sizeof(Instance); }

 private:
  EpochPlan(std::shared_ptr<const CorpusIndex> index, const Corpus* corpus, std::shared_ptr<const MaskingVocab> vocab,
            const SampleOptions& options, uint64_t epoch, std::vector<Instance> instances);

  std::shared_ptr<const CorpusIndex> index_;
  const Corpus* corpus_;
  std::shared_ptr<const MaskingVocab> vocab_;
  SampleOptions options_;
  uint64_t epoch_;
  std::vector<Instance> instances_;
  rnd::RandomPermutation order_;
};

// Produces samples of one EpochPlan. Not thread-safe: one per thread.
class SampleGenerator {
 public:
  explicit SampleGenerator(const EpochPlan& plan) : plan_(plan) {}
  // Fails with InvalidArgument when index >= num_samples(), or with the
  // corpus's error when a document cannot be read.
  Status Generate(uint64_t index, TrainingSample* sample);
  // Samples [first, first + count) into out[0, count): the same as calling
  // Generate() for each, but faster, as it prefetches a few samples ahead.
  Status GenerateRange(uint64_t first, uint64_t count, TrainingSample* out);

 private:
  Status GenerateInstance(uint64_t index, uint64_t instance_id, TrainingSample* sample);
  Status GeneratePacked(const Instance& instance, TrainingSample* sample);
  // Global tokens [begin, begin + count), written at out.
  Status CopyTokens(uint64_t begin, uint32_t count, int32_t* out);

  const EpochPlan& plan_;
  // A few recently read documents, for a corpus that is not resident.
  static constexpr int kCachedDocuments = 8;
  struct CachedDocument {
    uint64_t id = UINT64_MAX;
    uint64_t last_use = 0;
    Document doc;
  };
  CachedDocument cache_[kCachedDocuments];
  uint64_t cache_clock_ = 0;
};

// Samples [start, start + count) of an epoch on num_threads threads; the
// result does not depend on num_threads. Fails as Generate() does.
Status GenerateSamples(const EpochPlan& plan, uint64_t start, uint64_t count, int num_threads,
                       std::vector<TrainingSample>* out);

}  // namespace bert
