// Rule-based sentence splitter for corpus ingest.
//
// Splits a document into sentences at terminal punctuation (. ! ? and their
// full-width forms, CJK 。！？, ellipses) followed by optional closing quotes
// or brackets and whitespace (or directly, for CJK terminators), except where
// the period belongs to a known abbreviation ("Dr.", "e.g.", "U.S."), an
// initial ("J. R. R."), a decimal or version number ("3.14", "v1.2.3"), or
// when the next word starts in lower case. Newlines that separate paragraphs
// (a blank line) always end a sentence. Returned views point into `text`,
// trimmed of surrounding whitespace; empty sentences are never returned.
// Pure and thread-safe.
#pragma once

#include <string_view>
#include <vector>

namespace bert {

std::vector<std::string_view> SplitSentences(std::string_view text);

}  // namespace bert
