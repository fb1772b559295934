#include "datapipe/word_counter.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <queue>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "common/logging.h"
#include "datapipe/tokenizer.h"

namespace bert {
namespace {

using Clock = std::chrono::steady_clock;
double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Parallel word counting.

// Document batches travel from the reading thread to the tokenizing threads
// through this bounded queue, so reading never runs far ahead of tokenizing.
class BatchQueue {
 public:
  explicit BatchQueue(size_t capacity) : capacity_(capacity) {}
  void Push(std::vector<std::string> batch) {
    std::unique_lock<std::mutex> lock(mu_);
    not_full_.wait(lock, [&] { return batches_.size() < capacity_; });
    batches_.push_back(std::move(batch));
    not_empty_.notify_one();
  }
  // Returns false once the queue is closed and drained.
  bool Pop(std::vector<std::string>* batch) {
    std::unique_lock<std::mutex> lock(mu_);
    not_empty_.wait(lock, [&] { return closed_ || !batches_.empty(); });
    if (batches_.empty()) return false;
    *batch = std::move(batches_.front());
    batches_.pop_front();
    not_full_.notify_one();
    return true;
  }
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    not_empty_.notify_all();
  }

 private:
  const size_t capacity_;
  std::mutex mu_;
  std::condition_variable not_empty_, not_full_;
  std::deque<std::vector<std::string>> batches_;
  bool closed_ = false;
};

using WordMap = std::unordered_map<std::string, uint64_t>;
// Yields the next document's text; false at the end of the input.
using DocumentSource = std::function<bool(std::string* text)>;
// Fraction of the input consumed so far, in [0, 1] (for the ETA).
using ProgressFraction = std::function<double()>;

struct CountShared {
  std::atomic<uint64_t> documents{0};
  std::atomic<uint64_t> words{0};
};

void TokenizeBatches(const FullTokenizer& tokenizer, BatchQueue* queue, CountShared* shared, WordMap* counts,
                     uint64_t* invalid_utf8_bytes) {
  std::vector<std::string> batch, words;
  TokenizeStats stats;
  while (queue->Pop(&batch)) {
    uint64_t batch_words = 0;
    for (const std::string& text : batch) {
      words.clear();
      tokenizer.BasicTokenize(text, &words, &stats);
      for (std::string& word : words) ++(*counts)[std::move(word)];
      batch_words += words.size();
    }
    shared->documents += batch.size();
    shared->words += batch_words;
  }
  *invalid_utf8_bytes = stats.invalid_utf8_bytes;
}

void LogCountProgress(const CountShared& shared, double fraction, double elapsed_s) {
  double words = static_cast<double>(shared.words.load());
  double eta_s = fraction > 0.01 ? elapsed_s * (1 - fraction) / fraction : -1;
  LOG(INFO) << "[vocab] counted " << shared.documents.load() << " documents, " << static_cast<uint64_t>(words)
            << " words (" << static_cast<uint64_t>(words / std::max(elapsed_s, 1e-9)) << " words/s), "
            << static_cast<int>(fraction * 100) << "% of input, ETA " << FormatDuration(eta_s);
}

// Sums the per-thread maps. Addition commutes, so the sum (sorted by word)
// does not depend on which thread counted which document.
std::vector<WordCount> MergeCounts(std::vector<WordMap>* maps) {
  WordMap total = std::move(maps->front());
  for (size_t i = 1; i < maps->size(); ++i) {
    WordMap& other = (*maps)[i];
    total.merge(other);  // moves the words `total` lacks; leaves the shared ones in `other`
    for (const auto& [word, count] : other) total[word] += count;
    other = WordMap();
  }
  std::vector<WordCount> words;
  words.reserve(total.size());
  for (auto& node : total) words.push_back(WordCount{node.first, node.second});
  std::sort(words.begin(), words.end(), [](const WordCount& a, const WordCount& b) { return a.word < b.word; });
  return words;
}

Result<WordCountResult> CountWithThreads(const DocumentSource& next_document, const ProgressFraction& fraction,
                                         const WordCountOptions& options) {
  if (options.num_threads < 1) return Status::InvalidArgument("threads must be at least 1");
  auto start = Clock::now();
  // BasicTokenize ignores the vocabulary; any valid one will do.
  Result<std::shared_ptr<const Vocab>> vocab = Vocab::FromTokens({"[UNK]"});
  if (!vocab.ok()) return vocab.status();
  TokenizerOptions tokenizer_options;
  tokenizer_options.lower_case = options.lower_case;
  FullTokenizer tokenizer(*vocab, tokenizer_options);

  const size_t num_threads = static_cast<size_t>(options.num_threads);
  BatchQueue queue(2 * num_threads + 2);
  CountShared shared;
  std::vector<WordMap> maps(num_threads);
  std::vector<uint64_t> invalid_bytes(num_threads, 0);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < num_threads; ++t) {
    threads.emplace_back(TokenizeBatches, std::cref(tokenizer), &queue, &shared, &maps[t], &invalid_bytes[t]);
  }
  constexpr size_t kBatchBytes = 1 << 20, kBatchDocuments = 256;
  std::vector<std::string> batch;
  size_t batch_bytes = 0;
  std::string text;
  auto last_log = Clock::now();
  while (next_document(&text)) {
    batch_bytes += text.size();
    batch.push_back(std::move(text));
    if (batch_bytes < kBatchBytes && batch.size() < kBatchDocuments) continue;
    queue.Push(std::move(batch));
    batch.clear();
    batch_bytes = 0;
    if (options.log_progress && SecondsSince(last_log) >= 5) {
      LogCountProgress(shared, fraction(), SecondsSince(start));
      last_log = Clock::now();
    }
  }
  if (!batch.empty()) queue.Push(std::move(batch));
  queue.Close();
  for (std::thread& thread : threads) thread.join();

  WordCountResult result;
  result.words = MergeCounts(&maps);
  result.num_documents = shared.documents;
  result.num_words = shared.words;
  for (uint64_t bytes : invalid_bytes) result.invalid_utf8_bytes += bytes;
  result.seconds = SecondsSince(start);
  if (options.log_progress) LogCountProgress(shared, 1.0, result.seconds);
  return result;
}

}  // namespace

Result<WordCountResult> CountWordsInFiles(const std::vector<std::string>& files, const WordCountOptions& options) {
  DocumentReader reader(files, options.reader);
  SourceDocument doc;
  auto next = [&](std::string* text) {
    if (!reader.Next(&doc)) return false;
    if (!doc.presplit) {
      *text = std::move(doc.text);
      return true;
    }
    text->clear();  // sentences of the lines format: a newline is whitespace to the tokenizer
    for (const std::string& line : doc.lines) text->append(line).push_back('\n');
    return true;
  };
  auto fraction = [&] {
    uint64_t total = reader.total_file_bytes();
    return total == 0 ? 0.0 : static_cast<double>(reader.consumed_file_bytes()) / static_cast<double>(total);
  };
  Result<WordCountResult> result = CountWithThreads(next, fraction, options);
  if (result.ok()) result->reader_stats = reader.stats();
  return result;
}

Result<WordCountResult> CountWordsInTexts(const std::vector<std::string>& documents,
                                          const WordCountOptions& options) {
  size_t next_index = 0;
  auto next = [&](std::string* text) {
    if (next_index == documents.size()) return false;
    *text = documents[next_index++];
    return true;
  };
  auto fraction = [&] { return documents.empty() ? 1.0 : double(next_index) / double(documents.size()); };
  return CountWithThreads(next, fraction, options);
}

}  // namespace bert
