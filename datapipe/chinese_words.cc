#include "datapipe/chinese_words.h"

#include <unicode/brkiter.h>
#include <unicode/locid.h>
#include <unicode/unistr.h>

#include <memory>

#include "common/utf8.h"
#include "datapipe/unicode_util.h"

namespace bert {
namespace {

// One iterator per thread (ICU's are not thread-safe); null when ICU cannot
// make one (its data missing), which CheckChineseSegmenter reports.
icu::BreakIterator* ThreadIterator() {
  thread_local std::unique_ptr<icu::BreakIterator> iterator = [] {
    UErrorCode status = U_ZERO_ERROR;
    std::unique_ptr<icu::BreakIterator> made(icu::BreakIterator::createWordInstance(icu::Locale::getChinese(), status));
    if (U_FAILURE(status)) made.reset();
    return made;
  }();
  return iterator.get();
}

}  // namespace

std::vector<char32_t> ChineseCharacterTable(const Vocab& vocab) {
  std::vector<char32_t> table(vocab.tokens().size(), 0);
  for (size_t id = 0; id < table.size(); ++id) {
    const std::string& token = vocab.tokens()[id];
    if (token.empty()) continue;
    const auto* p = reinterpret_cast<const unsigned char*>(token.data());
    char32_t cp = 0;
    const int length = DecodeUtf8(p, p + token.size(), &cp);
    if (length > 0 && static_cast<size_t>(length) == token.size() && unicode::IsChineseChar(cp)) table[id] = cp;
  }
  return table;
}

Status CheckChineseSegmenter() {
  if (ThreadIterator() == nullptr) {
    return Status::FailedPrecondition(
        "data.chinese_whole_word: ICU has no word break iterator for Chinese here (libicu's data is missing; "
        "install Debian's libicu72)");
  }
  return Status::Ok();
}

void MarkChineseWordContinuations(const std::vector<char32_t>& table, const std::vector<int32_t>& ids,
                                  std::vector<uint8_t>* continues) {
  continues->assign(ids.size(), 0);
  icu::BreakIterator* iterator = ThreadIterator();
  if (iterator == nullptr) return;  // CheckChineseSegmenter refused the run before this
  auto chinese = [&](size_t i) {
    const int32_t id = ids[i];
    return id >= 0 && static_cast<size_t>(id) < table.size() && table[static_cast<size_t>(id)] != 0;
  };
  icu::UnicodeString text;
  std::vector<int32_t> offsets;  // UTF-16 offset of each character of the run
  for (size_t begin = 0; begin < ids.size();) {
    if (!chinese(begin)) {
      ++begin;
      continue;
    }
    size_t end = begin;
    while (end < ids.size() && chinese(end)) ++end;
    if (end - begin >= 2) {
      text.remove();
      offsets.clear();
      for (size_t i = begin; i < end; ++i) {
        offsets.push_back(text.length());
        text.append(static_cast<UChar32>(table[static_cast<size_t>(ids[i])]));
      }
      iterator->setText(text);
      // One pass over the boundaries: characters between two are in one word.
      size_t k = 1;
      for (int32_t boundary = iterator->next(); boundary != icu::BreakIterator::DONE; boundary = iterator->next()) {
        for (; k < offsets.size() && offsets[k] < boundary; ++k) (*continues)[begin + k] = 1;
        if (k < offsets.size() && offsets[k] == boundary) ++k;
      }
    }
    begin = end;
  }
}

}  // namespace bert
