// Document encoding round trip and rejection of damaged values; meta records.
#include "datapipe/corpus_store.h"

#include <gtest/gtest.h>

#include <random>

namespace bert {
namespace {

Document MakeDoc(std::mt19937* rng, int32_t vocab_size) {
  Document doc;
  int sentences = 1 + (*rng)() % 5;
  for (int s = 0; s < sentences; ++s) {
    int len = 1 + (*rng)() % 40;
    for (int i = 0; i < len; ++i) doc.token_ids.push_back(static_cast<int32_t>((*rng)() % vocab_size));
    doc.sentence_ends.push_back(static_cast<uint32_t>(doc.token_ids.size()));
  }
  return doc;
}

TEST(CorpusStoreTest, EncodeDecodeRoundTripsForBothIdWidths) {
  std::mt19937 rng(1);
  for (int32_t width : {2, 4}) {
    int32_t vocab_size = width == 2 ? 30522 : 250000;
    for (int trial = 0; trial < 200; ++trial) {
      Document doc = MakeDoc(&rng, vocab_size), back;
      std::string value;
      EncodeDocument(doc, width, &value);
      ASSERT_TRUE(DecodeDocument(value, width, vocab_size, &back).ok());
      EXPECT_EQ(back.token_ids, doc.token_ids);
      EXPECT_EQ(back.sentence_ends, doc.sentence_ends);
    }
  }
}

TEST(CorpusStoreTest, DecodeRejectsTruncatedExtendedAndOutOfVocabValues) {
  std::mt19937 rng(2);
  Document doc = MakeDoc(&rng, 1000), back;
  std::string value;
  EncodeDocument(doc, 2, &value);
  for (size_t cut = 0; cut < value.size(); ++cut) {
    EXPECT_FALSE(DecodeDocument(std::string_view(value).substr(0, cut), 2, 1000, &back).ok()) << cut;
  }
  EXPECT_FALSE(DecodeDocument(value + "x", 2, 1000, &back).ok());
  EXPECT_FALSE(DecodeDocument(value, 2, 10, &back).ok());  // ids beyond a smaller vocabulary
  // Random garbage never crashes and never decodes to out-of-range ids.
  for (int trial = 0; trial < 5000; ++trial) {
    std::string garbage(rng() % 64, '\0');
    for (char& c : garbage) c = static_cast<char>(rng());
    if (DecodeDocument(garbage, 2, 1000, &back).ok()) {
      for (int32_t id : back.token_ids) EXPECT_LT(id, 1000);
    }
  }
}

TEST(CorpusStoreTest, DocumentKeysSortInIdOrder) {
  for (uint64_t id : {0ull, 1ull, 255ull, 256ull, 65535ull, 1ull << 40}) {
    EXPECT_LT(DocumentKey(id), DocumentKey(id + 1));
  }
}

TEST(CorpusStoreTest, MetaJsonRoundTripsAndRejectsDamage) {
  CorpusMeta meta;
  meta.complete = true;
  meta.vocab_checksum = "0123456789abcdef";
  meta.vocab_size = 30522;
  meta.unk_id = 100;
  meta.id_width = 2;
  meta.num_documents = 12;
  meta.shard_index = 1;
  meta.num_shards = 3;
  Result<CorpusMeta> back = CorpusMeta::FromJson(meta.ToJson(), "db");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->ToJson(), meta.ToJson());
  EXPECT_FALSE(CorpusMeta::FromJson("{", "db").ok());
  EXPECT_FALSE(CorpusMeta::FromJson("{\"format_version\": 1}", "db").ok());
  std::string future = meta.ToJson();
  future.replace(future.find("\"format_version\":1"), 18, "\"format_version\":9");
  Result<CorpusMeta> rejected = CorpusMeta::FromJson(future, "db");
  ASSERT_FALSE(rejected.ok());
  EXPECT_NE(rejected.status().message().find("version 9"), std::string::npos);
}

}  // namespace
}  // namespace bert
