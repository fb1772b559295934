// IngestCorpus's guards around interrupted and repeated ingests, on a real
// RocksDB database.
#include "datapipe/corpus_ingest.h"

#include "datapipe/corpus_store.h"
#include "datapipe/tokenizer.h"
#include "tests/test_util.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <fstream>
#include <memory>

namespace bert {
namespace {

std::shared_ptr<const Vocab> SmallVocab() {
  Result<std::shared_ptr<const Vocab>> vocab =
      Vocab::FromTokens({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "some", "text", "other", "words", "."});
  EXPECT_TRUE(vocab.ok()) << vocab.status().ToString();
  return *vocab;
}

class CorpusIngestTest : public ::testing::Test {
 protected:
  std::string WriteInput(const std::string& name, const std::string& text) {
    std::string path = dir_ / name;
    std::ofstream(path) << text;
    return path;
  }
  Result<IngestReport> Ingest(const std::string& input) {
    IngestOptions options;
    options.files = {input};
    return IngestCorpus(dir_ / "db", tokenizer_, options);
  }

  testing::TempDir dir_;
  FullTokenizer tokenizer_{SmallVocab(), TokenizerOptions()};
};

TEST_F(CorpusIngestTest, AnIngestKilledAfterItsMetaRecordRefusesOtherInput) {
  std::string first = WriteInput("first.txt", "Some text.\n\nSome words.\n");
  std::string second = WriteInput("second.txt", "Other words.\n");
  Result<IngestReport> complete = Ingest(first);
  ASSERT_TRUE(complete.ok()) << complete.status().ToString();
  // Turn the finished database into one whose ingest stopped right after
  // writing its meta record: no progress record and no documents yet.
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir_ / "db", &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string json;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), "meta", &json).ok());
    Result<CorpusMeta> meta = CorpusMeta::FromJson(json, "meta");
    ASSERT_TRUE(meta.ok()) << meta.status().ToString();
    meta->complete = false;
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "meta", meta->ToJson()).ok());
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), "progress").ok());
  }
  Result<IngestReport> other = Ingest(second);
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("unfinished ingest"), std::string::npos) << other.status().ToString();
  EXPECT_NE(other.status().message().find(dir_ / "db"), std::string::npos) << other.status().ToString();
  // The original arguments finish it.
  Result<IngestReport> same = Ingest(first);
  ASSERT_TRUE(same.ok()) << same.status().ToString();
  EXPECT_FALSE(same->already_complete);
  EXPECT_EQ(same->documents, complete->documents);
  EXPECT_EQ(same->tokens, complete->tokens);
}

}  // namespace
}  // namespace bert
