// DocumentReader: the three formats, gzip input, every kind of bad input
// (reported, counted, skipped) and exact continuation from a saved position.
#include "datapipe/document_reader.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace bert {
namespace {

using testing::TempDir;
using testing::WriteText;

std::vector<SourceDocument> ReadAll(DocumentReader* reader) {
  std::vector<SourceDocument> docs;
  SourceDocument doc;
  while (reader->Next(&doc)) docs.push_back(doc);
  return docs;
}

TEST(DocumentReaderTest, JsonlReadsTextFieldsInOrderWithOrigins) {
  TempDir dir;
  WriteText(dir / "a.jsonl", "{\"text\": \"First doc.\"}\n\n{\"id\": 7, \"text\": \"Second doc.\"}\n");
  DocumentReader reader({dir / "a.jsonl"}, ReaderOptions());
  auto docs = ReadAll(&reader);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].text, "First doc.");
  EXPECT_EQ(docs[1].text, "Second doc.");
  EXPECT_EQ(docs[1].origin, dir / "a.jsonl:3");
  EXPECT_EQ(reader.stats().total_skipped(), 0u);
}

TEST(DocumentReaderTest, LinesFormatSplitsDocumentsOnBlankLines) {
  TempDir dir;
  WriteText(dir / "c.txt", "s1\ns2\n\n\n  \ns3\n\ns4\ns5");
  ReaderOptions options;
  options.format = InputFormat::kLines;
  DocumentReader reader({dir / "c.txt"}, options);
  auto docs = ReadAll(&reader);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].lines, (std::vector<std::string>{"s1", "s2"}));
  EXPECT_EQ(docs[1].lines, (std::vector<std::string>{"s3"}));
  EXPECT_EQ(docs[2].lines, (std::vector<std::string>{"s4", "s5"}));
  EXPECT_TRUE(docs[0].presplit);
  EXPECT_EQ(docs[1].origin, dir / "c.txt:6");
}

TEST(DocumentReaderTest, TextFormatIsOneDocumentPerFileAndReadsGzip) {
  TempDir dir;
  WriteText(dir / "one.txt", "Hello there.\nSecond line.\n");
  WriteText(dir / "two.txt", "Compressed text.\n");
  ASSERT_EQ(std::system(("gzip " + (dir / "two.txt")).c_str()), 0);
  DocumentReader reader({dir / "one.txt", dir / "two.txt.gz"}, ReaderOptions());
  auto docs = ReadAll(&reader);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].text, "Hello there.\nSecond line.\n");
  EXPECT_EQ(docs[1].text, "Compressed text.\n");
}

TEST(DocumentReaderTest, BadInputIsCountedAndSkippedNeverFatal) {
  TempDir dir;
  WriteText(dir / "bad.jsonl",
            "{\"text\": \"good one\"}\n"
            "not json at all\n"
            "[1, 2, 3]\n"
            "{\"title\": \"no text\"}\n"
            "{\"text\": 42}\n"
            "{\"text\": \"   \"}\n"
            "{\"text\": \"" + std::string(5000, 'x') + "\"}\n"
            "{\"text\": \"bad \xff\xfe utf8\"}\n");
  WriteText(dir / "binary.bin", std::string("\x7f" "ELF\0\0\0binary", 13));
  WriteText(dir / "empty.txt", "  \n\n");
  ReaderOptions options;
  options.max_line_bytes = 2048;
  DocumentReader reader({dir / "bad.jsonl", dir / "binary.bin", dir / "empty.txt", dir / "missing.txt"}, options);
  auto docs = ReadAll(&reader);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].text, "good one");
  EXPECT_EQ(docs[1].text, "bad  utf8");
  const ReaderStats& s = reader.stats();
  EXPECT_EQ(s.invalid_json_lines, 2u);
  EXPECT_EQ(s.missing_text_lines, 2u);
  EXPECT_EQ(s.empty_documents, 2u);  // the blank "text" and the blank file
  EXPECT_EQ(s.oversized_lines, 1u);
  EXPECT_EQ(s.invalid_utf8_bytes, 2u);
  EXPECT_EQ(s.binary_files, 1u);
  EXPECT_EQ(s.unreadable_files, 1u);
  EXPECT_EQ(s.total_skipped(), 9u);
  EXPECT_FALSE(s.Summary().empty());
}

TEST(DocumentReaderTest, SeekToSavedPositionContinuesExactly) {
  TempDir dir;
  std::string lines, jsonl;
  for (int i = 0; i < 50; ++i) {
    lines += "sentence " + std::to_string(i) + "\n" + (i % 3 == 2 ? "\n" : "");
    jsonl += "{\"text\": \"doc " + std::to_string(i) + "\"}\n";
  }
  WriteText(dir / "a.txt", lines);
  WriteText(dir / "b.jsonl", jsonl);
  ASSERT_EQ(std::system(("gzip -k " + (dir / "b.jsonl")).c_str()), 0);
  for (InputFormat format : {InputFormat::kLines, InputFormat::kJsonl}) {
    std::vector<std::string> files = format == InputFormat::kLines
                                         ? std::vector<std::string>{dir / "a.txt", dir / "a.txt"}
                                         : std::vector<std::string>{dir / "b.jsonl", dir / "b.jsonl.gz"};
    ReaderOptions options;
    options.format = format;
    DocumentReader full(files, options);
    auto all = ReadAll(&full);
    ASSERT_GT(all.size(), 20u);
    for (size_t cut : {size_t{0}, size_t{1}, size_t{7}, all.size() / 2, all.size() - 1, all.size()}) {
      DocumentReader first(files, options);
      SourceDocument doc;
      for (size_t i = 0; i < cut; ++i) ASSERT_TRUE(first.Next(&doc));
      DocumentReader second(files, options);
      ASSERT_TRUE(second.Seek(first.position()).ok());
      auto rest = ReadAll(&second);
      ASSERT_EQ(rest.size(), all.size() - cut) << "cut " << cut;
      for (size_t i = 0; i < rest.size(); ++i) {
        EXPECT_EQ(rest[i].text, all[cut + i].text);
        EXPECT_EQ(rest[i].lines, all[cut + i].lines);
        EXPECT_EQ(rest[i].origin, all[cut + i].origin);
      }
    }
  }
}

TEST(DocumentReaderTest, UnknownFormatNameIsAnError) {
  EXPECT_FALSE(ParseInputFormat("csv").ok());
  EXPECT_NE(ParseInputFormat("csv").status().message().find("--format"), std::string::npos);
  EXPECT_EQ(*ParseInputFormat("lines"), InputFormat::kLines);
}

}  // namespace
}  // namespace bert
