// The dispatch ledger (coordinator/ledger.h): entry encoding, the cursor
// moving with acks in one write, resume arithmetic (a new session keeps the
// finished steps and drops the unfinished ones), refusal of another sample
// plan naming the key, persisted epoch sizes, and the JSON dump.
#include "coordinator/ledger.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"

namespace bert {
namespace {

LedgerMeta Meta() {
  LedgerMeta meta;
  meta.run_id = "ledger-test";
  meta.global_batch_size = 8;
  meta.seed = 7;
  meta.max_seq_len = 64;
  meta.max_predictions = 10;
  meta.masked_lm_prob = 0.15;
  meta.short_seq_prob = 0.1;
  meta.corpus_fingerprint = "abc/10 documents/1000 tokens";
  meta.world_size = 2;
  meta.micro_batch_size = 2;
  meta.total_steps = 100;
  return meta;
}

LedgerEntry Entry(uint64_t step, uint32_t rank, uint32_t micro) {
  LedgerEntry e;
  e.epoch = 0;
  e.sample_begin = step * 8 + rank * 4 + micro * 2;
  e.sample_end = e.sample_begin + 2;
  e.payload_bytes = 1000 + step;
  e.payload_checksum = 0x1234567890abcdefULL ^ step;
  return e;
}

// Dispatches and acknowledges every batch of steps [first, last) (2 ranks x
// 2 micro-batches), advancing the cursor the way the server does.
void RunSteps(Ledger* ledger, StepTracker* tracker, uint64_t first, uint64_t last) {
  for (uint64_t step = first; step < last; ++step) {
    for (uint32_t rank = 0; rank < 2; ++rank) {
      for (uint32_t micro = 0; micro < 2; ++micro) {
        const BatchKey key{step, rank, micro};
        ASSERT_TRUE(ledger->RecordDispatch(key, Entry(step, rank, micro)).ok());
        const bool moved = tracker->Ack(step);
        ASSERT_TRUE(ledger->RecordAck(key, 2.5f, 10, 0.5f, moved ? std::optional<uint64_t>(tracker->cursor())
                                                                  : std::nullopt)
                        .ok());
      }
    }
  }
}

TEST(LedgerTest, EntriesRoundTripAndCorruptOnesAreRejected) {
  LedgerEntry e = Entry(5, 1, 1);
  e.dispatch_count = 2;
  e.session = 3;
  e.acked = true;
  e.loss = 1.5f;
  e.dispatched_unix_ms = 1700000000000;
  std::string bytes = EncodeEntry(e);
  LedgerEntry d;
  ASSERT_TRUE(DecodeEntry(bytes, &d).ok());
  EXPECT_EQ(EncodeEntry(d), bytes);
  EXPECT_EQ(d.sample_begin, e.sample_begin);
  EXPECT_TRUE(d.acked);
  EXPECT_FALSE(DecodeEntry(bytes.substr(1), &d).ok());
  bytes[0] = 9;  // unknown version
  EXPECT_FALSE(DecodeEntry(bytes, &d).ok());
}

TEST(LedgerTest, ResumeKeepsFinishedStepsAndDropsUnfinishedOnes) {
  testing::TempDir dir;
  const std::string path = LedgerDir(dir.path());
  {
    auto ledger = Ledger::Open(path, Meta());
    ASSERT_TRUE(ledger.ok()) << ledger.status().message();
    EXPECT_EQ((*ledger)->meta().session, 1u);
    EXPECT_EQ((*ledger)->cursor(), 0u);
    StepTracker tracker(0, 4);
    RunSteps(ledger->get(), &tracker, 0, 5);
    EXPECT_EQ((*ledger)->cursor(), 5u);
    // Step 5: everything sent, rank 1 micro 1 never acknowledged. Step 6: rank 0 ran ahead.
    for (uint32_t rank = 0; rank < 2; ++rank) {
      for (uint32_t micro = 0; micro < 2; ++micro) {
        ASSERT_TRUE((*ledger)->RecordDispatch({5, rank, micro}, Entry(5, rank, micro)).ok());
        if (rank == 1 && micro == 1) continue;
        ASSERT_TRUE((*ledger)->RecordAck({5, rank, micro}, 1, 1, 1, std::nullopt).ok());
      }
    }
    ASSERT_TRUE((*ledger)->RecordDispatch({6, 0, 0}, Entry(6, 0, 0)).ok());
    ASSERT_TRUE((*ledger)->RecordAck({6, 0, 0}, 1, 1, 1, std::nullopt).ok());
    EXPECT_EQ((*ledger)->cursor(), 5u);
  }  // the coordinator dies here
  auto ledger = Ledger::Open(path, Meta());
  ASSERT_TRUE(ledger.ok()) << ledger.status().message();
  EXPECT_EQ((*ledger)->meta().session, 2u);
  EXPECT_EQ((*ledger)->cursor(), 5u);
  EXPECT_EQ((*ledger)->dropped_on_resume(), 5u);  // step 5's four batches and step 6's one
  uint64_t kept = 0;
  ASSERT_TRUE((*ledger)
                  ->ForEach([&](const BatchKey& key, const LedgerEntry& e) {
                    EXPECT_LT(key.step, 5u);
                    EXPECT_TRUE(e.acked);
                    EXPECT_EQ(e.session, 1u);
                    EXPECT_EQ(e.dispatch_count, 1u);
                    ++kept;
                    return Status::Ok();
                  })
                  .ok());
  EXPECT_EQ(kept, 20u);
  // The new session re-runs from the cursor to the end.
  StepTracker tracker((*ledger)->cursor(), 4);
  RunSteps(ledger->get(), &tracker, 5, 9);
  EXPECT_EQ((*ledger)->cursor(), 9u);
  auto entry = (*ledger)->Get({7, 1, 1});
  ASSERT_TRUE(entry.ok());
  ASSERT_TRUE(entry->has_value());
  EXPECT_EQ((*entry)->session, 2u);
  EXPECT_EQ((*entry)->dispatch_count, 1u);
}

TEST(LedgerTest, ASecondDispatchInOneSessionIsCounted) {
  testing::TempDir dir;
  auto ledger = Ledger::Open(LedgerDir(dir.path()), Meta());
  ASSERT_TRUE(ledger.ok());
  ASSERT_TRUE((*ledger)->RecordDispatch({0, 0, 0}, Entry(0, 0, 0)).ok());
  ASSERT_TRUE((*ledger)->RecordDispatch({0, 0, 0}, Entry(0, 0, 0)).ok());
  auto entry = (*ledger)->Get({0, 0, 0});
  ASSERT_TRUE(entry.ok() && entry->has_value());
  EXPECT_EQ((*entry)->dispatch_count, 2u);
  EXPECT_FALSE((*ledger)->RecordAck({0, 0, 1}, 1, 1, 1, std::nullopt).ok());  // never dispatched
}

TEST(LedgerTest, AnotherSamplePlanIsRefusedNamingTheKeyButWorldSizeMayChange) {
  testing::TempDir dir;
  const std::string path = LedgerDir(dir.path());
  ASSERT_TRUE(Ledger::Open(path, Meta()).ok());
  LedgerMeta other = Meta();
  other.seed = 8;
  auto refused = Ledger::Open(path, other);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("data.seed: 7 in the ledger, 8 now"), std::string::npos)
      << refused.status().message();
  other = Meta();
  other.corpus_fingerprint = "def/11 documents/1100 tokens";
  refused = Ledger::Open(path, other);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("data.db (corpus)"), std::string::npos);
  other = Meta();
  other.world_size = 4;
  other.micro_batch_size = 1;
  auto resumed = Ledger::Open(path, other);
  ASSERT_TRUE(resumed.ok()) << resumed.status().message();
  EXPECT_EQ((*resumed)->meta().session, 2u);  // the refused opens did not count
}

TEST(LedgerTest, EpochSizesPersistAndTheDumpIsJsonLines) {
  testing::TempDir dir;
  const std::string path = LedgerDir(dir.path());
  {
    auto ledger = Ledger::Open(path, Meta());
    ASSERT_TRUE(ledger.ok());
    ASSERT_TRUE((*ledger)->PutEpochSize(0, 5667).ok());
    ASSERT_TRUE((*ledger)->PutEpochSize(1, 4747).ok());
    StepTracker tracker(0, 4);
    RunSteps(ledger->get(), &tracker, 0, 2);
    // A reader can inspect the ledger while the coordinator holds it.
    auto reader = Ledger::OpenReadOnly(path);
    ASSERT_TRUE(reader.ok()) << reader.status().message();
    EXPECT_EQ((*reader)->cursor(), 2u);
  }
  auto ledger = Ledger::OpenReadOnly(path);
  ASSERT_TRUE(ledger.ok());
  auto size = (*ledger)->EpochSize(1);
  ASSERT_TRUE(size.ok() && size->has_value());
  EXPECT_EQ(**size, 4747u);
  std::ostringstream out;
  ASSERT_TRUE((*ledger)->DumpJsonLines(out).ok());
  std::istringstream lines(out.str());
  std::vector<nlohmann::json> dump;
  for (std::string line; std::getline(lines, line);) dump.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(dump.size(), 1u + 2u + 8u);
  EXPECT_EQ(dump[0]["type"], "meta");
  EXPECT_EQ(dump[0]["cursor"], 2);
  EXPECT_EQ(dump[0]["run_id"], "ledger-test");
  EXPECT_EQ(dump[2]["num_samples"], 4747);
  EXPECT_EQ(dump[3]["type"], "batch");
  EXPECT_EQ(dump[3]["step"], 0);
  EXPECT_EQ(dump.back()["step"], 1);
  EXPECT_EQ(dump.back()["rank"], 1);
  EXPECT_EQ(dump.back()["micro"], 1);
  EXPECT_EQ(dump.back()["acked"], true);
  EXPECT_EQ(Ledger::OpenReadOnly(dir / "nowhere").status().code(), Status::Code::kNotFound);
}

}  // namespace
}  // namespace bert
