// FullTokenizer: see tokenizer.h for the contract (Google BERT tokenization.py).
//
// Speed comes from three choices, each measured with bench/tokenizer_bench:
//   * One pass over the bytes gathers a whitespace-delimited token, folding
//     ASCII case through a table; utf8proc is never called for ASCII.
//   * A token that is all ASCII splits on punctuation and goes straight to
//     WordPiece. Only a token with a non-ASCII character takes the exact
//     Unicode path (code points, str.lower() with Final_Sigma, NFD, Mn strip),
//     because Final_Sigma and canonical ordering need the whole token.
//   * WordPiece probes open-addressing tables keyed by byte ranges of the word
//     (xxh3 over a pointer and length, no std::string per lookup), one for
//     word-initial pieces and one for "##" pieces stored without the "##", and
//     never tries a piece longer than the table's longest key.
//   * A small per-thread cache remembers words that split into several pieces
//     (measured: +15-20% on English and Chinese linux-doc text).
#include "datapipe/tokenizer.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <glog/logging.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <utility>

#include "datapipe/unicode_util.h"

namespace bert {
namespace {

bool IsUtf8Continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// Token bytes -> id. Keys live in one arena; slots hold the hash's upper bits
// as a tag so most mismatches never touch the arena.
class PieceTable {
 public:
  // `entries` in id order: a repeated key keeps its later id, like the vocab.
  void Build(const std::vector<std::pair<std::string_view, int32_t>>& entries) {
    size_t capacity = 16;
    while (capacity < entries.size() * 2) capacity *= 2;
    slots_.assign(capacity, Slot{0, -1, 0, 0});
    mask_ = capacity - 1;
    for (const auto& [key, id] : entries) Insert(key, id);
  }

  int32_t Find(const char* data, size_t length) const { return Find(data, length, XXH3_64bits(data, length)); }
  int32_t Find(const char* data, size_t length, uint64_t hash) const {
    const uint32_t tag = static_cast<uint32_t>(hash >> 32);
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.id < 0) return -1;
      if (slot.tag == tag && slot.length == length && std::memcmp(arena_.data() + slot.offset, data, length) == 0) {
        return slot.id;
      }
    }
  }

  // No key is longer than this, so longer candidate pieces need no probe.
  size_t max_key_bytes() const { return max_key_bytes_; }

 private:
  struct Slot {
    uint32_t tag;     // hash >> 32
    int32_t id;       // -1: empty
    uint32_t offset;  // key bytes in arena_
    uint32_t length;
  };

  void Insert(std::string_view key, int32_t id) {
    const uint64_t hash = XXH3_64bits(key.data(), key.size());
    const uint32_t tag = static_cast<uint32_t>(hash >> 32);
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      Slot& slot = slots_[i];
      if (slot.id < 0) {
        slot = Slot{tag, id, static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(key.size())};
        arena_.append(key);
        max_key_bytes_ = std::max(max_key_bytes_, key.size());
        return;
      }
      if (slot.length == key.size() && arena_.compare(slot.offset, slot.length, key) == 0) {
        slot.id = id;
        return;
      }
    }
  }

  std::vector<Slot> slots_;
  std::string arena_;
  size_t mask_ = 0;
  size_t max_key_bytes_ = 0;
};

// What the byte scanner does with an ASCII byte.
enum AsciiClass : uint8_t {
  kAsciiWord,   // goes into the token (punctuation is split off later)
  kAsciiSpace,  // \t \n \r and space end the token
  kAsciiDrop,   // NUL and the other C0 controls, DEL: removed, joining neighbours
};

// Per-thread buffers, so a call allocates nothing once they have grown.
struct Scratch {
  std::string token;  // current whitespace-delimited token, cleaned, ASCII folded in uncased mode
  std::string piece;  // UTF-8 of one word on the Unicode path
  std::u32string code_points, lowered, stripped;
};

// Per-thread memo of words that WordPiece split into several pieces (or
// [UNK]): such words cost one probe per candidate piece, and in real text the
// same identifiers and inflections recur. Direct-mapped by the word's hash;
// `owner` keeps tokenizers that share a thread apart.
struct WordCache {
  static constexpr size_t kEntries = 4096;
  static constexpr size_t kMaxWordBytes = 22;
  static constexpr size_t kMaxIds = 6;
  struct Entry {
    uint64_t owner = 0;  // FullTokenizer::Impl::cache_owner; 0 = empty
    uint64_t hash = 0;
    uint8_t word_length = 0;
    uint8_t num_ids = 0;
    char word[kMaxWordBytes];
    int32_t ids[kMaxIds];
  };
  std::vector<Entry> entries = std::vector<Entry>(kEntries);
};

WordCache& ThreadWordCache() {
  thread_local WordCache cache;
  return cache;
}

std::atomic<uint64_t> next_cache_owner{1};

Scratch& ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

}  // namespace

struct FullTokenizer::Impl {
  PieceTable initial;       // every vocab token
  PieceTable continuation;  // "##x" tokens, keyed by "x"
  int32_t unk_id = -1;
  bool lower_case = true;
  int64_t max_chars_per_word = 100;
  std::array<AsciiClass, 128> ascii_class{};
  std::array<char, 128> ascii_fold{};  // lower-cases in uncased mode, identity otherwise
  std::array<bool, 128> ascii_punct{};
  const uint64_t cache_owner = next_cache_owner.fetch_add(1);  // unique for the process's life

  Impl(const Vocab& vocab, const TokenizerOptions& options);

  // Steps 1-6; calls sink(word_bytes, word_length, num_code_points) per word.
  template <typename Sink>
  void Basic(std::string_view text, Scratch& scratch, uint64_t* invalid_bytes, const Sink& sink) const;
  template <typename Sink>
  void FlushToken(Scratch& scratch, bool ascii_only, const Sink& sink) const;
  template <typename Sink>
  void UnicodeToken(Scratch& scratch, const Sink& sink) const;
  // Step 7 for one word; returns the number of [UNK] ids appended (0 or 1).
  int WordPiece(const char* word, size_t length, size_t num_code_points, std::vector<int32_t>* ids) const;
  // Greedy longest-match-first from byte `start`; false when a position cannot be covered.
  bool Greedy(const char* word, size_t length, size_t start, std::vector<int32_t>* ids) const;
};

FullTokenizer::Impl::Impl(const Vocab& vocab, const TokenizerOptions& options)
    : unk_id(vocab.unk_id()),
      lower_case(options.lower_case),
      max_chars_per_word(options.max_input_chars_per_word) {
  std::vector<std::pair<std::string_view, int32_t>> initial_entries, continuation_entries;
  for (int32_t id = 0; id < vocab.size(); ++id) {
    std::string_view token = vocab.Token(id);
    initial_entries.emplace_back(token, id);
    if (token.size() > 2 && token.substr(0, 2) == "##") continuation_entries.emplace_back(token.substr(2), id);
  }
  initial.Build(initial_entries);
  continuation.Build(continuation_entries);
  for (int c = 0; c < 128; ++c) {
    const bool control = c < 0x20 || c == 0x7F;
    const bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r';
    ascii_class[c] = space ? kAsciiSpace : control ? kAsciiDrop : kAsciiWord;
    ascii_fold[c] = static_cast<char>(lower_case && c >= 'A' && c <= 'Z' ? c + 32 : c);
    ascii_punct[c] = unicode::IsPunctuation(static_cast<char32_t>(c));
  }
}

template <typename Sink>
void FullTokenizer::Impl::Basic(std::string_view text, Scratch& scratch, uint64_t* invalid_bytes,
                                const Sink& sink) const {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  std::string& token = scratch.token;
  token.clear();
  bool ascii_only = true;
  while (p < end) {
    if (*p < 0x80) {
      switch (ascii_class[*p]) {
        case kAsciiWord:
          token.push_back(ascii_fold[*p]);
          break;
        case kAsciiSpace:
          FlushToken(scratch, ascii_only, sink);
          ascii_only = true;
          break;
        case kAsciiDrop:
          break;
      }
      ++p;
      continue;
    }
    char32_t cp = 0;
    const int length = unicode::DecodeUtf8(p, end, &cp);
    if (length == 0) {  // drop one byte and resync, as Python's "ignore" does
      ++*invalid_bytes;
      ++p;
      continue;
    }
    switch (unicode::Classify(cp)) {
      case unicode::CleanClass::kKeep:
        token.append(reinterpret_cast<const char*>(p), static_cast<size_t>(length));
        ascii_only = false;
        break;
      case unicode::CleanClass::kDrop:
        break;
      case unicode::CleanClass::kSpace:
        FlushToken(scratch, ascii_only, sink);
        ascii_only = true;
        break;
      case unicode::CleanClass::kChinese:
        FlushToken(scratch, ascii_only, sink);
        ascii_only = true;
        token.append(reinterpret_cast<const char*>(p), static_cast<size_t>(length));
        // Only the CJK Compatibility Ideographs change (NFD maps them to unified ones).
        FlushToken(scratch, !(lower_case && ((cp >= 0xF900 && cp <= 0xFAFF) || cp >= 0x2F800)), sink);
        break;
    }
    p += length;
  }
  FlushToken(scratch, ascii_only, sink);
}

// Ends the current token. `ascii_only` also covers a lone unified CJK
// ideograph, which no later step changes. Clears scratch.token.
template <typename Sink>
void FullTokenizer::Impl::FlushToken(Scratch& scratch, bool ascii_only, const Sink& sink) const {
  std::string& token = scratch.token;
  if (token.empty()) return;
  if (!ascii_only) {
    UnicodeToken(scratch, sink);
  } else if (static_cast<unsigned char>(token[0]) >= 0x80) {
    sink(token.data(), token.size(), 1);  // the lone CJK ideograph
  } else {
    size_t start = 0;
    for (size_t i = 0; i < token.size(); ++i) {
      if (!ascii_punct[static_cast<unsigned char>(token[i])]) continue;
      if (i > start) sink(token.data() + start, i - start, i - start);
      sink(token.data() + i, 1, 1);
      start = i + 1;
    }
    if (start < token.size()) sink(token.data() + start, token.size() - start, token.size() - start);
  }
  token.clear();
}

// The exact path for a token holding a non-ASCII character: lower-case and
// strip accents over the whole token (Final_Sigma and canonical ordering look
// across characters), then split on punctuation code points.
template <typename Sink>
void FullTokenizer::Impl::UnicodeToken(Scratch& scratch, const Sink& sink) const {
  std::u32string& cps = scratch.code_points;
  cps.clear();
  const auto* p = reinterpret_cast<const unsigned char*>(scratch.token.data());
  const auto* end = p + scratch.token.size();
  while (p < end) {
    char32_t cp = 0;
    const int length = unicode::DecodeUtf8(p, end, &cp);
    CHECK_GT(length, 0) << "token buffer holds only validated UTF-8";
    cps.push_back(cp);
    p += length;
  }
  const std::u32string* word = &cps;
  if (lower_case) {
    unicode::PythonLower(cps, &scratch.lowered);
    unicode::StripAccents(scratch.lowered, &scratch.stripped);
    word = &scratch.stripped;
  }
  std::string& piece = scratch.piece;
  piece.clear();
  size_t piece_code_points = 0;
  for (char32_t cp : *word) {
    if (!unicode::IsPunctuation(cp)) {
      unicode::AppendUtf8(cp, &piece);
      ++piece_code_points;
      continue;
    }
    if (!piece.empty()) sink(piece.data(), piece.size(), piece_code_points);
    piece.clear();
    unicode::AppendUtf8(cp, &piece);
    sink(piece.data(), piece.size(), 1);
    piece.clear();
    piece_code_points = 0;
  }
  // Empty when the token was all combining marks: the reference's second
  // whitespace_tokenize drops such empty words.
  if (!piece.empty()) sink(piece.data(), piece.size(), piece_code_points);
}

int FullTokenizer::Impl::WordPiece(const char* word, size_t length, size_t num_code_points,
                                   std::vector<int32_t>* ids) const {
  if (static_cast<int64_t>(num_code_points) > max_chars_per_word) {
    ids->push_back(unk_id);
    return 1;
  }
  // Most words are one vocab token: one hash, one probe.
  const uint64_t hash = XXH3_64bits(word, length);
  const int32_t whole = length <= initial.max_key_bytes() ? initial.Find(word, length, hash) : -1;
  if (whole >= 0) {
    ids->push_back(whole);
    return 0;
  }
  const bool cacheable = length <= WordCache::kMaxWordBytes;
  WordCache::Entry& entry = ThreadWordCache().entries[hash % WordCache::kEntries];
  if (cacheable && entry.owner == cache_owner && entry.hash == hash && entry.word_length == length &&
      std::memcmp(entry.word, word, length) == 0) {
    ids->insert(ids->end(), entry.ids, entry.ids + entry.num_ids);
    return entry.ids[0] == unk_id ? 1 : 0;  // a word never contains '[', so a real piece is never [UNK]
  }
  const size_t mark = ids->size();
  if (!Greedy(word, length, 0, ids)) {  // one uncovered position makes the whole word [UNK]
    ids->resize(mark);
    ids->push_back(unk_id);
  }
  const size_t num_ids = ids->size() - mark;
  if (cacheable && num_ids <= WordCache::kMaxIds) {
    entry.owner = cache_owner;
    entry.hash = hash;
    entry.word_length = static_cast<uint8_t>(length);
    entry.num_ids = static_cast<uint8_t>(num_ids);
    std::memcpy(entry.word, word, length);
    std::copy(ids->begin() + static_cast<ptrdiff_t>(mark), ids->end(), entry.ids);
  }
  return (*ids)[mark] == unk_id ? 1 : 0;
}

bool FullTokenizer::Impl::Greedy(const char* word, size_t length, size_t start, std::vector<int32_t>* ids) const {
  while (start < length) {
    const PieceTable& table = start == 0 ? initial : continuation;
    size_t end = start + std::min(length - start, table.max_key_bytes());
    int32_t id = -1;
    for (; end > start; --end) {  // the longest piece first, ending on a code point boundary
      if (end < length && IsUtf8Continuation(word[end])) continue;
      id = table.Find(word + start, end - start);
      if (id >= 0) break;
    }
    if (id < 0) return false;
    ids->push_back(id);
    start = end;
  }
  return true;
}

FullTokenizer::FullTokenizer(std::shared_ptr<const Vocab> vocab, TokenizerOptions options)
    : vocab_(std::move(vocab)), options_(options) {
  CHECK(vocab_ != nullptr) << "FullTokenizer needs a vocabulary";
  impl_ = std::make_unique<Impl>(*vocab_, options_);
}

FullTokenizer::~FullTokenizer() = default;

void FullTokenizer::Encode(std::string_view text, std::vector<int32_t>* ids, TokenizeStats* stats) const {
  uint64_t invalid_bytes = 0, num_words = 0, num_unk = 0;
  impl_->Basic(text, ThreadScratch(), &invalid_bytes, [&](const char* word, size_t length, size_t num_cps) {
    ++num_words;
    num_unk += impl_->WordPiece(word, length, num_cps, ids);
  });
  if (stats != nullptr) {
    stats->invalid_utf8_bytes += invalid_bytes;
    stats->num_words += num_words;
    stats->num_unk += num_unk;
  }
}

std::vector<int32_t> FullTokenizer::Encode(std::string_view text) const {
  std::vector<int32_t> ids;
  Encode(text, &ids);
  return ids;
}

std::vector<std::string> FullTokenizer::Tokenize(std::string_view text) const {
  // An id names exactly the vocab string WordPiece matched ("##" included).
  std::vector<std::string> tokens;
  for (int32_t id : Encode(text)) tokens.push_back(vocab_->Token(id));
  return tokens;
}

void FullTokenizer::BasicTokenize(std::string_view text, std::vector<std::string>* words,
                                  TokenizeStats* stats) const {
  uint64_t invalid_bytes = 0, num_words = 0;
  impl_->Basic(text, ThreadScratch(), &invalid_bytes, [&](const char* word, size_t length, size_t) {
    ++num_words;
    words->emplace_back(word, length);
  });
  if (stats != nullptr) {
    stats->invalid_utf8_bytes += invalid_bytes;
    stats->num_words += num_words;
  }
}


}  // namespace bert
