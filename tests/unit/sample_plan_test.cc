// Sample plan: the counter-based generators, the layout against a literal
// port of Google's create_instances_from_document, truncation against the
// reference loop, determinism (threads, access order), the W = 1..16 rank
// slicing property, and NSP / length statistics over >= 100k samples.
#include "datapipe/sample_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "datapipe/batch_codec.h"
#include "unit/synthetic_corpus.h"

namespace bert {
namespace {

using testing::SentenceTokens;
using testing::SyntheticDocuments;
using testing::SyntheticVocab;

// A corpus in memory and plans over it.
struct Fixture {
  explicit Fixture(std::vector<Document> documents) : docs(std::move(documents)) {
    auto built = CorpusIndex::FromDocuments(docs, testing::kVocabSize);
    EXPECT_TRUE(built.ok()) << built.status().message();
    index = std::move(built).value();
    for (const Document& doc : docs) {
      doc_begin.push_back(tokens.size());
      tokens.insert(tokens.end(), doc.token_ids.begin(), doc.token_ids.end());
    }
    doc_begin.push_back(tokens.size());
  }
  // Global tokens [begin, begin + length): documents concatenated in id order.
  std::vector<int32_t> Span(uint64_t begin, uint64_t length) const {
    return std::vector<int32_t>(tokens.begin() + begin, tokens.begin() + begin + length);
  }
  // The non-empty document holding global token `token`.
  uint64_t DocOf(uint64_t token) const {
    return std::upper_bound(doc_begin.begin(), doc_begin.end(), token) - doc_begin.begin() - 1;
  }
  bool IsSentenceBoundary(uint64_t doc, uint64_t token) const {
    uint64_t offset = token - doc_begin[doc];
    if (offset == 0) return true;
    const auto& ends = docs[doc].sentence_ends;
    return std::find(ends.begin(), ends.end(), offset) != ends.end();
  }
  std::unique_ptr<EpochPlan> Plan(const SampleOptions& options, uint64_t epoch, int threads = 1) const {
    auto plan = EpochPlan::Build(index, nullptr, vocab, options, epoch, threads);
    EXPECT_TRUE(plan.ok()) << plan.status().message();
    return std::move(plan).value();
  }
  std::vector<Document> docs;
  std::vector<int32_t> tokens;
  std::vector<uint64_t> doc_begin;
  std::shared_ptr<const CorpusIndex> index;
  std::shared_ptr<const MaskingVocab> vocab = std::make_shared<const MaskingVocab>(SyntheticVocab());
};

TEST(RandomTest, FeistelPermutationIsABijectionOfEverySize) {
  std::vector<uint64_t> sizes;
  for (uint64_t n = 1; n <= 300; ++n) sizes.push_back(n);
  for (uint64_t n : {1023ull, 1024ull, 1025ull, 65537ull, 100003ull}) sizes.push_back(n);
  for (uint64_t n : sizes) {
    rnd::RandomPermutation perm(n, rnd::Hash(7, 2, n));
    std::vector<bool> seen(n, false);
    uint64_t fixed_points = 0;
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t j = perm(i);
      ASSERT_LT(j, n);
      ASSERT_FALSE(seen[j]) << "size " << n << ": " << j << " hit twice";
      seen[j] = true;
      fixed_points += j == i;
    }
    if (n >= 1000) {
      EXPECT_LT(fixed_points, 20u) << n;  // a shuffle, not the identity (expected ~1)
    }
  }
  rnd::RandomPermutation a(1000, 1), b(1000, 2);
  int same = 0;
  for (uint64_t i = 0; i < 1000; ++i) same += a(i) == b(i);
  EXPECT_LT(same, 20);  // another key is another permutation
}

TEST(RandomTest, GeneratorDrawsCoverTheirRangesAndHashUsesEveryInput) {
  rnd::Generator rng(rnd::Hash(1, 2, 3, 4));
  std::vector<int> counts(6, 0);
  double coin_sum = 0;
  for (int i = 0; i < 60000; ++i) {
    int64_t v = rng.Between(2, 5);
    ASSERT_GE(v, 2);
    ASSERT_LE(v, 5);
    ++counts[v];
    double u = rng.Uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    uint64_t heads = rng.CoinFlips(100);
    ASSERT_LE(heads, 100u);
    coin_sum += heads;
  }
  for (int v = 2; v <= 5; ++v) EXPECT_NEAR(counts[v], 15000, 600) << v;  // 5 sigma
  EXPECT_NEAR(coin_sum / 60000, 50.0, 0.2);
  EXPECT_EQ(rng.CoinFlips(0), 0u);
  std::set<uint64_t> hashes = {rnd::Hash(1, 2, 3, 4), rnd::Hash(0, 2, 3, 4), rnd::Hash(1, 0, 3, 4),
                               rnd::Hash(1, 2, 0, 4), rnd::Hash(1, 2, 3, 0), rnd::Hash(1, 2, 4, 3)};
  EXPECT_EQ(hashes.size(), 6u);
}

TEST(SamplePlanTest, TruncationAmountsMatchTheReferenceLoop) {
  for (uint32_t max_tokens : {5u, 6u, 61u, 125u}) {
    for (uint32_t la = 1; la <= 160; ++la) {
      for (uint32_t lb = 1; lb <= 160; ++lb) {
        // truncate_seq_pair: trim the longer (B on a tie) until it fits.
        uint32_t a = la, b = lb;
        while (a + b > max_tokens) (a > b ? a : b) -= 1;
        TrimAmounts trim = TruncationAmounts(la, lb, max_tokens);
        ASSERT_EQ(trim.a, la - a) << la << " " << lb << " " << max_tokens;
        ASSERT_EQ(trim.b, lb - b) << la << " " << lb << " " << max_tokens;
      }
    }
  }
  EXPECT_EQ(TruncationAmounts(100000, 3, 125).a, 100000u - 122u);
}

// create_instances_from_document, ported line by line with lists of
// sentences (create_pretraining_data.py), drawing from the same generator.
struct ReferenceInstance {
  std::vector<int32_t> a, b;
  bool is_random_next = false;
};
std::vector<ReferenceInstance> ReferenceInstances(const std::vector<Document>& all_documents, uint64_t document_index,
                                                  const SampleOptions& o, uint64_t epoch) {
  auto sentences = [&](uint64_t d) {
    std::vector<std::vector<int32_t>> out;
    for (size_t s = 0; s < all_documents[d].num_sentences(); ++s) out.push_back(SentenceTokens(all_documents[d], s, 1));
    return out;
  };
  std::vector<std::vector<int32_t>> document = sentences(document_index);
  rnd::Generator rng(rnd::Hash(o.seed, rnd::kStreamLayout, epoch, document_index));
  const int64_t max_num_tokens = o.max_seq_len - 3;
  int64_t target_seq_length = max_num_tokens;
  if (rng.Uniform() < o.short_seq_prob) target_seq_length = rng.Between(2, max_num_tokens);
  std::vector<ReferenceInstance> instances;
  std::vector<std::vector<int32_t>> current_chunk;
  int64_t current_length = 0;
  int64_t i = 0;
  while (i < static_cast<int64_t>(document.size())) {
    const std::vector<int32_t>& segment = document[i];
    current_chunk.push_back(segment);
    current_length += segment.size();
    if (i == static_cast<int64_t>(document.size()) - 1 || current_length >= target_seq_length) {
      if (!current_chunk.empty()) {
        int64_t a_end = 1;
        if (current_chunk.size() >= 2) a_end = rng.Between(1, static_cast<int64_t>(current_chunk.size()) - 1);
        ReferenceInstance instance;
        for (int64_t j = 0; j < a_end; ++j) instance.a.insert(instance.a.end(), current_chunk[j].begin(), current_chunk[j].end());
        if (current_chunk.size() == 1 || rng.Uniform() < 0.5) {
          instance.is_random_next = true;
          int64_t target_b_length = target_seq_length - static_cast<int64_t>(instance.a.size());
          uint64_t random_document_index = 0;
          for (int k = 0; k < 10; ++k) {
            random_document_index = static_cast<uint64_t>(rng.Between(0, static_cast<int64_t>(all_documents.size()) - 1));
            if (random_document_index != document_index) break;
          }
          std::vector<std::vector<int32_t>> random_document = sentences(random_document_index);
          int64_t random_start = rng.Between(0, static_cast<int64_t>(random_document.size()) - 1);
          for (size_t j = random_start; j < random_document.size(); ++j) {
            instance.b.insert(instance.b.end(), random_document[j].begin(), random_document[j].end());
            if (static_cast<int64_t>(instance.b.size()) >= target_b_length) break;
          }
          i -= static_cast<int64_t>(current_chunk.size()) - a_end;
        } else {
          for (size_t j = a_end; j < current_chunk.size(); ++j) {
            instance.b.insert(instance.b.end(), current_chunk[j].begin(), current_chunk[j].end());
          }
        }
        instances.push_back(std::move(instance));
      }
      current_chunk.clear();
      current_length = 0;
    }
    ++i;
  }
  return instances;
}

TEST(SamplePlanTest, LayoutEqualsALiteralPortOfTheReference) {
  Fixture fx(SyntheticDocuments(1, 400));
  for (int32_t max_seq_len : {128, 32, 512}) {
    for (double short_prob : {0.1, 0.7}) {
      SampleOptions options;
      options.seed = 99;
      options.max_seq_len = max_seq_len;
      options.short_seq_prob = short_prob;
      for (uint64_t epoch : {0, 3}) {
        for (uint64_t d = 0; d < fx.docs.size(); ++d) {
          std::vector<Instance> got;
          LayoutDocument(*fx.index, options, epoch, d, &got);
          std::vector<ReferenceInstance> want = ReferenceInstances(fx.docs, d, options, epoch);
          ASSERT_EQ(got.size(), want.size()) << "doc " << d << " seq " << max_seq_len;
          for (size_t k = 0; k < got.size(); ++k) {
            ASSERT_EQ(fx.Span(got[k].a_begin, got[k].a_length), want[k].a);
            ASSERT_EQ(fx.Span(got[k].b_begin(), got[k].b_length), want[k].b);
            ASSERT_EQ(got[k].is_random_next(), want[k].is_random_next);
          }
        }
      }
    }
  }
}

TEST(SamplePlanTest, UsedSentencesTileEachDocumentAndRandomSegmentsComeFromOtherDocuments) {
  Fixture fx(SyntheticDocuments(2, 500));
  SampleOptions options;
  for (uint64_t d = 0; d < fx.docs.size(); ++d) {
    std::vector<Instance> instances;
    LayoutDocument(*fx.index, options, 5, d, &instances);
    uint64_t next = fx.doc_begin[d];  // A and non-random B put back nothing and skip nothing
    for (const Instance& in : instances) {
      ASSERT_EQ(in.a_begin, next);
      ASSERT_GE(in.a_length, 1u);
      ASSERT_GE(in.b_length, 1u);
      next += in.a_length;
      ASSERT_TRUE(fx.IsSentenceBoundary(d, next));
      if (in.is_random_next()) {
        const uint64_t b_doc = fx.DocOf(in.b_begin());
        ASSERT_NE(b_doc, d);
        ASSERT_LE(in.b_begin() + in.b_length, fx.doc_begin[b_doc + 1]);
        ASSERT_TRUE(fx.IsSentenceBoundary(b_doc, in.b_begin()));
        ASSERT_TRUE(fx.IsSentenceBoundary(b_doc, in.b_begin() + in.b_length));
      } else {
        ASSERT_EQ(in.b_begin(), next);
        next += in.b_length;
        ASSERT_TRUE(fx.IsSentenceBoundary(d, next));
      }
    }
    ASSERT_EQ(next, fx.doc_begin[d + 1]) << "doc " << d;
  }
}

// Undoes masking with the labels.
std::vector<int32_t> Unmasked(const TrainingSample& s) {
  std::vector<int32_t> ids = s.input_ids;
  for (size_t k = 0; k < s.masked_positions.size(); ++k) ids[s.masked_positions[k]] = s.masked_labels[k];
  return ids;
}

// True when `kept` is a window of `full` that drops `trimmed` tokens in all.
bool IsTrimmedWindow(const std::vector<int32_t>& full, const std::vector<int32_t>& kept, uint32_t trimmed) {
  if (kept.size() + trimmed != full.size()) return false;
  for (uint32_t front = 0; front <= trimmed; ++front) {
    if (std::equal(kept.begin(), kept.end(), full.begin() + front)) return true;
  }
  return false;
}

TEST(SamplePlanTest, SamplesAreTruncatedInstancesInBertLayout) {
  Fixture fx(SyntheticDocuments(3, 300));
  SampleOptions options;
  options.max_seq_len = 64;
  auto plan = fx.Plan(options, 1);
  SampleGenerator generator(*plan);
  TrainingSample s;
  uint64_t front_trims = 0, trims = 0;
  for (uint64_t i = 0; i < plan->num_samples(); ++i) {
    ASSERT_TRUE(generator.Generate(i, &s).ok());
    const Instance& in = plan->instance(plan->InstanceId(i));
    std::vector<int32_t> a = fx.Span(in.a_begin, in.a_length), b = fx.Span(in.b_begin(), in.b_length);
    TrimAmounts trim = TruncationAmounts(a.size(), b.size(), 61);
    std::vector<int32_t> ids = Unmasked(s);
    ASSERT_EQ(ids.size(), a.size() + b.size() - trim.a - trim.b + 3);
    ASSERT_LE(ids.size(), 64u);
    ASSERT_EQ(s.segment_b_start, a.size() - trim.a + 2);
    ASSERT_EQ(ids[0], 101);
    ASSERT_EQ(ids[s.segment_b_start - 1], 102);
    ASSERT_EQ(ids.back(), 102);
    ASSERT_TRUE(IsTrimmedWindow(a, {ids.begin() + 1, ids.begin() + s.segment_b_start - 1}, trim.a)) << i;
    ASSERT_TRUE(IsTrimmedWindow(b, {ids.begin() + s.segment_b_start, ids.end() - 1}, trim.b)) << i;
    ASSERT_EQ(s.is_random_next, in.is_random_next());
    if (trim.a > 0 && ids[1] != a[0]) ++front_trims;  // trimmed at least at the front
    trims += trim.a > 0;
  }
  ASSERT_GT(trims, 100u);
  // Each trimmed token comes off the front with probability 1/2, so nearly
  // every trimmed segment loses its first token: P(not) = 2^-trim.
  EXPECT_GT(front_trims, trims / 2);
  EXPECT_LT(front_trims, trims);
}

TEST(SamplePlanTest, SamplesDoNotDependOnThreadsOrAccessOrder) {
  Fixture fx(SyntheticDocuments(4, 3000));
  SampleOptions options;
  options.masking.whole_word = true;
  auto one = fx.Plan(options, 2, 1), four = fx.Plan(options, 2, 4);
  ASSERT_EQ(one->num_samples(), four->num_samples());
  for (uint64_t k = 0; k < one->num_samples(); ++k) ASSERT_TRUE(one->instance(k) == four->instance(k));
  std::vector<TrainingSample> base, other;
  ASSERT_TRUE(GenerateSamples(*one, 0, one->num_samples(), 1, &base).ok());
  for (int threads : {2, 3, 8}) {
    ASSERT_TRUE(GenerateSamples(*four, 0, four->num_samples(), threads, &other).ok());
    ASSERT_TRUE(base == other) << threads << " threads";
  }
  SampleGenerator backwards(*one);
  TrainingSample s;
  for (uint64_t i = one->num_samples(); i-- > 0;) {
    ASSERT_TRUE(backwards.Generate(i, &s).ok());
    ASSERT_TRUE(s == base[i]) << i;
  }
  EXPECT_FALSE(backwards.Generate(one->num_samples(), &s).ok());
  EXPECT_FALSE(GenerateSamples(*one, 1, one->num_samples(), 2, &other).ok());
}

TEST(SamplePlanTest, EachEpochAndSeedRedrawsLayoutOrderAndMasks) {
  Fixture fx(SyntheticDocuments(5, 400));
  SampleOptions options;
  std::vector<TrainingSample> e0, e0_again, e1, seed2;
  auto p0 = fx.Plan(options, 0), p1 = fx.Plan(options, 1);
  ASSERT_TRUE(GenerateSamples(*p0, 0, 500, 1, &e0).ok());
  ASSERT_TRUE(GenerateSamples(*fx.Plan(options, 0), 0, 500, 1, &e0_again).ok());
  ASSERT_TRUE(GenerateSamples(*p1, 0, 500, 1, &e1).ok());
  options.seed += 1;
  ASSERT_TRUE(GenerateSamples(*fx.Plan(options, 0), 0, 500, 1, &seed2).ok());
  EXPECT_TRUE(e0 == e0_again);
  int same_epoch = 0, same_seed = 0;
  for (size_t i = 0; i < 500; ++i) {
    same_epoch += e0[i].input_ids == e1[i].input_ids;
    same_seed += e0[i].input_ids == seed2[i].input_ids;
  }
  EXPECT_LT(same_epoch, 5);
  EXPECT_LT(same_seed, 5);
  // Masking is keyed by (seed, epoch, index): re-masking the unmasked sample
  // with that key gives it back, and the next epoch's key masks it otherwise.
  int same_masks = 0;
  for (size_t i = 0; i < 500; ++i) {
    TrainingSample again = e0[i], next_epoch = e0[i];
    again.input_ids = next_epoch.input_ids = Unmasked(e0[i]);
    ApplyMasking(options.masking, *fx.vocab, rnd::Hash(options.seed - 1, rnd::kStreamMasking, 0, i), &again);
    ASSERT_TRUE(again == e0[i]) << i;
    ApplyMasking(options.masking, *fx.vocab, rnd::Hash(options.seed - 1, rnd::kStreamMasking, 1, i), &next_epoch);
    same_masks += next_epoch.masked_positions == e0[i].masked_positions;
  }
  EXPECT_LT(same_masks, 10);
}

TEST(SamplePlanTest, RankSlicesJoinToTheGlobalBatchByteForByteForEveryWorldSize) {
  Fixture fx(SyntheticDocuments(6, 200));
  SampleOptions options;
  auto plan = fx.Plan(options, 0);
  auto encode = [&](const EpochPlan& p, SampleRange range, std::string* out) {
    Batch batch;
    batch.vocab_size = testing::kVocabSize;
    batch.pad_id = 0, batch.cls_id = 101, batch.sep_id = 102;
    batch.first_index = range.begin;
    ASSERT_TRUE(GenerateSamples(p, range.begin, range.size(), 1, &batch.samples).ok());
    BatchEncodeOptions fixed_width;
    fixed_width.pad_to_multiple = options.max_seq_len;  // every row max_seq_len wide
    ASSERT_TRUE(EncodeBatch(batch, fixed_width, out).ok());
  };
  // The ids matrix and the per-sample records of an encoded batch.
  auto rows = [&](const std::string& encoded, size_t n) {
    return std::make_pair(encoded.substr(kBatchHeaderBytes, n * 8),
                          encoded.substr(kBatchHeaderBytes + n * 8, n * options.max_seq_len * 2));
  };
  for (uint64_t global_batch : {1, 7, 32, 100}) {
    for (uint64_t step : {0, 1, 5}) {
      std::string whole;
      encode(*plan, RankSlice(step, global_batch, 0, 1), &whole);
      auto [whole_records, whole_ids] = rows(whole, global_batch);
      for (uint32_t world = 1; world <= 16; ++world) {
        std::string records, ids;
        uint64_t expected_begin = step * global_batch;
        for (uint32_t rank = 0; rank < world; ++rank) {
          SampleRange range = RankSlice(step, global_batch, rank, world);
          ASSERT_EQ(range.begin, expected_begin);
          ASSERT_LE(range.size(), global_batch / world + 1);
          expected_begin = range.end;
          if (range.size() == 0) continue;
          // Each rank builds its own plan, as a separate process would.
          auto own_plan = fx.Plan(options, 0, 1 + rank % 3);
          std::string part;
          encode(*own_plan, range, &part);
          auto [r, i] = rows(part, range.size());
          records += r;
          ids += i;
        }
        ASSERT_EQ(expected_begin, (step + 1) * global_batch);
        ASSERT_EQ(records, whole_records) << "G " << global_batch << " step " << step << " W " << world;
        ASSERT_EQ(ids, whole_ids) << "G " << global_batch << " step " << step << " W " << world;
      }
    }
  }
}

TEST(SamplePlanTest, NspBalanceOver100kSamples) {
  // Sentences of 5-40 tokens: a chunk holds one sentence only at a document's
  // end, so forced random-next instances number at most one per document.
  // Full targets (short_seq_prob 0), so no sentence fills a chunk alone.
  Fixture fx(SyntheticDocuments(7, 4500, 200, 0, 0));
  SampleOptions options;
  options.short_seq_prob = 0;
  auto plan = fx.Plan(options, 0, 2);
  ASSERT_GE(plan->num_samples(), 100000u);
  uint64_t random_next = 0, different_doc = 0;
  for (uint64_t k = 0; k < plan->num_samples(); ++k) {
    const Instance& in = plan->instance(k);
    random_next += in.is_random_next();
    different_doc += fx.DocOf(in.b_begin()) != fx.DocOf(in.a_begin);
  }
  const double n = static_cast<double>(plan->num_samples());
  // 5 sigma of a fair coin over n is about 0.008 at n = 100k.
  EXPECT_GT(random_next / n, 0.5 - 0.01);
  EXPECT_LT(random_next / n, 0.5 + 0.01 + 4500 / n);
  EXPECT_EQ(different_doc, random_next);
  std::printf("random-next share %.4f of %llu samples\n", random_next / n, (unsigned long long)plan->num_samples());
}

TEST(SamplePlanTest, LengthDistributionOver100kSamples) {
  Fixture fx(SyntheticDocuments(8, 30000, 60, 300, 3));
  SampleOptions options;  // seq 128, short_seq_prob 0.1
  auto plan = fx.Plan(options, 0, 2);
  ASSERT_GE(plan->num_samples(), 100000u);
  // The target is short for short_seq_prob of the documents: 5 sigma over 30k is 0.009.
  uint64_t short_docs = 0;
  for (uint64_t d = 0; d < fx.docs.size(); ++d) short_docs += DocumentTargetLength(options, 0, d) < 125;
  EXPECT_NEAR(short_docs / 30000.0, 0.1, 0.01);
  // A sample reaches its document's target unless its source ran out.
  uint64_t full = 0;
  std::vector<TrainingSample> samples;
  ASSERT_TRUE(GenerateSamples(*plan, 0, plan->num_samples(), 2, &samples).ok());
  for (uint64_t i = 0; i < samples.size(); ++i) {
    const Instance& in = plan->instance(plan->InstanceId(i));
    const size_t length = samples[i].input_ids.size();
    ASSERT_LE(length, 128u);
    full += length == 128;
    const int32_t target = DocumentTargetLength(options, 0, fx.DocOf(in.a_begin));
    const bool b_reaches_end = in.b_begin() + in.b_length == fx.doc_begin[fx.DocOf(in.b_begin()) + 1];
    if (!b_reaches_end) {
      ASSERT_GE(length, static_cast<size_t>(std::min(target + 3, 128))) << i;
    }
  }
  // Most samples are full: the short ones come from short targets and document ends.
  std::printf("full-length share %.4f of %zu samples\n", static_cast<double>(full) / samples.size(), samples.size());
  EXPECT_GT(full, samples.size() * 6 / 10);
  EXPECT_LT(full, samples.size() * 95 / 100);
}

TEST(SamplePlanTest, EmptyDocumentsAreSkippedAndBadOptionsAreNamed) {
  std::vector<Document> docs = SyntheticDocuments(9, 50);
  for (size_t d = 0; d < docs.size(); d += 3) docs[d] = Document();
  Fixture fx(docs);
  SampleOptions options;
  auto plan = fx.Plan(options, 0);
  for (uint64_t k = 0; k < plan->num_samples(); ++k) {
    ASSERT_NE(fx.DocOf(plan->instance(k).a_begin) % 3, 0u);
    ASSERT_NE(fx.DocOf(plan->instance(k).b_begin()) % 3, 0u);
  }
  Fixture empty(std::vector<Document>(3));
  auto refused = EpochPlan::Build(empty.index, nullptr, empty.vocab, options, 0, 1);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("no sentences"), std::string::npos);

  auto message = [&](SampleOptions o) {
    auto r = EpochPlan::Build(fx.index, nullptr, fx.vocab, o, 0, 1);
    return r.ok() ? std::string("ok") : r.status().message();
  };
  SampleOptions bad = options;
  bad.max_seq_len = 4;
  EXPECT_EQ(message(bad).rfind("--max-seq-len: must be", 0), 0u) << message(bad);
  bad = options;
  bad.short_seq_prob = 1.5;
  EXPECT_EQ(message(bad).rfind("--short-seq-prob:", 0), 0u) << message(bad);
  bad = options;
  bad.masking.masked_lm_prob = 0;
  EXPECT_EQ(message(bad).rfind("--masked-lm-prob:", 0), 0u) << message(bad);
  bad = options;
  bad.masking.max_predictions = 0;
  EXPECT_EQ(message(bad).rfind("--max-predictions:", 0), 0u) << message(bad);
  auto other_vocab = std::make_shared<MaskingVocab>(SyntheticVocab());
  other_vocab->vocab_size = 1000;
  auto mismatch = EpochPlan::Build(fx.index, nullptr, other_vocab, options, 0, 1);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("--vocab"), std::string::npos);
}

TEST(SampleObjectivesTest, SopKeepsBothSegmentsOfTheDocumentAndSwapsHalfOfThem) {
  Fixture fx(SyntheticDocuments(7, 4500, 200, 0, 0));
  SampleOptions options;
  options.short_seq_prob = 0;
  options.objective = Objective::kMlmSop;
  auto plan = fx.Plan(options, 0, 2);
  ASSERT_GE(plan->num_samples(), 70000u);  // fewer than NSP's: no B is put back
  uint64_t in_order = 0, swapped = 0, random_b = 0;
  for (uint64_t k = 0; k < plan->num_samples(); ++k) {
    const Instance& in = plan->instance(k);
    if (fx.DocOf(in.b_begin()) != fx.DocOf(in.a_begin)) {
      ++random_b;  // only a one-sentence chunk (ALBERT's script), labelled 1
      ASSERT_TRUE(in.is_random_next()) << k;
      continue;
    }
    if (in.is_random_next()) {
      ASSERT_EQ(in.b_begin() + in.b_length, in.a_begin) << k << ": a swapped pair is B then A in the document";
      ++swapped;
    } else {
      ASSERT_EQ(in.a_begin + in.a_length, in.b_begin()) << k;
      ++in_order;
    }
  }
  const double pairs = static_cast<double>(in_order + swapped);
  // 5 sigma of a fair coin over 70k pairs is about 0.0095.
  EXPECT_NEAR(swapped / pairs, 0.5, 0.0095);
  EXPECT_LE(random_b, 4500u);  // at most one one-sentence chunk per document, at its end
  std::printf("SOP: %llu in order, %llu swapped, %llu one-sentence chunks with a random B\n",
              (unsigned long long)in_order, (unsigned long long)swapped, (unsigned long long)random_b);
  // A swapped sample reads B's sentences first: the sample's first segment
  // is the later text.
  std::vector<TrainingSample> samples;
  ASSERT_TRUE(GenerateSamples(*plan, 0, 2000, 1, &samples).ok());
  for (const TrainingSample& sample : samples) {
    const Instance& in = plan->instance(plan->InstanceId(sample.index));
    ASSERT_EQ(sample.is_random_next, in.is_random_next());
    const std::vector<int32_t> ids = Unmasked(sample);
    if (in.a_length + in.b_length <= 125) {  // not truncated
      EXPECT_EQ(std::vector<int32_t>(ids.begin() + 1, ids.begin() + 1 + in.a_length), fx.Span(in.a_begin, in.a_length));
    }
  }
}

TEST(SampleObjectivesTest, MlmSamplesAreOneSegmentOfWholeSentencesFillingTheSequence) {
  Fixture fx(SyntheticDocuments(8, 3000, 60, 300, 3));
  SampleOptions options;
  options.objective = Objective::kMlm;
  options.short_seq_prob = 0;
  auto plan = fx.Plan(options, 0, 2);
  std::vector<TrainingSample> samples;
  ASSERT_TRUE(GenerateSamples(*plan, 0, plan->num_samples(), 2, &samples).ok());
  uint64_t full = 0;
  for (const TrainingSample& sample : samples) {
    const Instance& in = plan->instance(plan->InstanceId(sample.index));
    ASSERT_EQ(in.b_length, 0u);
    ASSERT_FALSE(sample.is_random_next);
    ASSERT_EQ(sample.segment_b_start, sample.input_ids.size()) << "no token of type 1";
    const std::vector<int32_t> ids = Unmasked(sample);
    ASSERT_LE(ids.size(), 128u);
    ASSERT_EQ(ids.front(), 101);
    ASSERT_EQ(ids.back(), 102);
    ASSERT_EQ(std::count(ids.begin(), ids.end(), 102), 1) << "one [SEP]: one segment";
    ASSERT_TRUE(fx.IsSentenceBoundary(fx.DocOf(in.a_begin), in.a_begin));
    full += ids.size() == 128;
  }
  // [CLS] chunk [SEP] with a target of 126 tokens: full unless the document ran out.
  std::printf("MLM one segment: full-length share %.4f of %zu samples\n",
              static_cast<double>(full) / samples.size(), samples.size());
  EXPECT_GT(full, samples.size() * 6 / 10);
}

TEST(SampleObjectivesTest, PackedWindowsAreFullLengthAndTileTheCorpusInOrder) {
  std::vector<Document> docs = SyntheticDocuments(10, 400, 20, 300, 3);
  for (size_t d = 0; d < docs.size(); d += 7) docs[d] = Document();  // empty documents are skipped
  Fixture fx(docs);
  SampleOptions options;
  options.objective = Objective::kMlm;
  options.packing = true;
  options.max_seq_len = 64;
  options.masking.max_predictions = 10;
  for (uint64_t epoch : {0, 1}) {
    auto plan = fx.Plan(options, epoch);
    std::vector<TrainingSample> samples;
    ASSERT_TRUE(GenerateSamples(*plan, 0, plan->num_samples(), 2, &samples).ok());
    // In window order (instance id), the text of the windows, with the
    // separators removed, is the corpus from the epoch's offset on.
    std::vector<TrainingSample> by_window(samples.size());
    for (const TrainingSample& sample : samples) by_window[plan->InstanceId(sample.index)] = sample;
    std::vector<int32_t> text;
    uint64_t short_windows = 0, tokens = 0, boundaries = 0;
    for (size_t w = 0; w < by_window.size(); ++w) {
      const std::vector<int32_t> ids = Unmasked(by_window[w]);
      ASSERT_EQ(by_window[w].segment_b_start, ids.size());
      ASSERT_EQ(ids.front(), 101);
      ASSERT_EQ(ids.back(), 102);
      ASSERT_NE(ids[ids.size() - 2], 102) << "a window never ends with a separator";
      ASSERT_LE(ids.size(), 64u);
      if (w + 1 < by_window.size() && ids.size() != 64) {
        ASSERT_EQ(ids.size(), 63u) << "window " << w;  // a separator would have been its last position
        ++short_windows;
      }
      tokens += ids.size();
      for (size_t i = 1; i + 1 < ids.size(); ++i) {
        if (ids[i] == 102) {
          // Between two documents: the text so far ends a document.
          ++boundaries;
          continue;
        }
        text.push_back(ids[i]);
      }
    }
    const uint64_t offset = fx.tokens.size() - text.size();
    ASSERT_LT(offset, 62u) << "the epoch's offset is in [0, max_seq_len - 2)";
    EXPECT_EQ(text, fx.Span(offset, text.size()));
    EXPECT_GT(boundaries, 300u);
    // No padding: every position of a batch of these is a real token.
    const double fill = static_cast<double>(tokens) / (64.0 * static_cast<double>(by_window.size()));
    std::printf("epoch %llu: %zu windows, offset %llu, %llu one short, fill %.4f\n", (unsigned long long)epoch,
                by_window.size(), (unsigned long long)offset, (unsigned long long)short_windows, fill);
    EXPECT_GT(fill, 0.99);
    // A pure function of (seed, epoch, index): a plan built again gives the same samples.
    std::vector<TrainingSample> again;
    ASSERT_TRUE(GenerateSamples(*fx.Plan(options, epoch, 2), 0, plan->num_samples(), 1, &again).ok());
    EXPECT_TRUE(again == samples);
  }
  // Each epoch cuts the windows elsewhere.
  EXPECT_NE(fx.Plan(options, 0)->instance(0).a_begin, fx.Plan(options, 1)->instance(0).a_begin);
  // Packing needs the one-segment objective.
  options.objective = Objective::kMlmNsp;
  auto refused = EpochPlan::Build(fx.index, nullptr, fx.vocab, options, 0, 1);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().message().rfind("--packing: needs objective mlm", 0), 0u) << refused.status().message();
  EXPECT_FALSE(ParseObjective("nsp").ok());
  EXPECT_EQ(ParseObjective("nsp").status().message(), "must be mlm_nsp, mlm or mlm_sop, got nsp");
}

}  // namespace
}  // namespace bert
