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
//
// The rules in detail:
//  - Latin terminators: a run of . ! ? … ． ("?!", "...") plus closing quotes
//    and brackets (" ' ) ] } and every Unicode Pe/Pf: ” ’ » 」 』 ）) ends a
//    sentence only if whitespace follows and the next word may start one:
//    anything but a lower-case letter, a combining mark or clause
//    punctuation (, ; : % _ and closing brackets/quotes). So "Why? because"
//    and "3.14", "file.txt", "Stop.\"Then" do not split; upper case, digits,
//    uncased scripts (CJK, Arabic), opening quotes/brackets and bullets do.
//  - CJK terminators 。！？｡ end the sentence at once, after absorbing closers
//    (「你好。」他说 splits after 」). ． needs whitespace like ".".
//  - A lone "." before whitespace (no closer in between) does not end a
//    sentence after: a title/Latin/month abbreviation (Mr Dr Prof St Inc Ltd
//    Co Jr Sr Jan..Dec e.g. i.e. cf. vs. al. approx. ...; exact case, and a
//    lower-case entry also capitalised: "Cf."); No Fig Vol p pp Ch Sec Eq ...
//    only when a digit follows ("No. 5" vs "He said No. Then"); one upper-case
//    letter of any script ("J.", "А."); a dotted acronym of single letters
//    ("U.S.", "U.S.A.", even when it really ends the sentence); a list number
//    "1." / "12." / "a." opening a line.
//  - "etc.", "a.m." and "p.m." end a sentence before a capitalised word
//    ("pears, etc. Bananas" splits): they close sentences more often than
//    they precede proper nouns.
//  - A blank line (newline, spaces/tabs/CR, newline) or U+2029 always ends a
//    sentence; single newlines are ordinary whitespace.
//  - Whitespace is ASCII \t..\r and space, U+0085 and Unicode Zs/Zl/Zp.
//    Bytes that are not valid UTF-8 are ordinary non-space characters (an
//    uncased letter when they start the next word). Any input terminates in
//    one O(n) pass; a text without terminators is one sentence.
#pragma once

#include <string_view>
#include <vector>

namespace bert {

std::vector<std::string_view> SplitSentences(std::string_view text);

}  // namespace bert
