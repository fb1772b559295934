#!/usr/bin/env python3
"""Test oracle: Google BERT's reference FullTokenizer (tokenization.py), stdlib only.

A re-implementation, step for step, of google-research/bert tokenization.py
(BasicTokenizer + WordpieceTokenizer) for Python 3, using only `unicodedata`.
The C++ tokenizer (datapipe/tokenizer.cc) must produce the same ids as this
file, id for id. Keep it boring and literal: it is the reference, not a fast
implementation. Its one addition is the `max_input_chars_per_word` parameter
(the reference hard-wires 200; this project's default is 100).

CLI (one output line per input line, in order, no [CLS]/[SEP]):

  bert_tokenization_ref.py --vocab vocab.txt [--cased] [--max-chars-per-word N]
                           [--input IN] [--output OUT] [--format jsonl|raw]

  jsonl: each input line is a JSON object with "text" (a string) or
         "text_hex" (the raw bytes, hex-encoded, so invalid UTF-8 survives).
         Raw invalid UTF-8 bytes in a line are dropped before JSON parsing,
         exactly as `bertctl tokenize` does.
  raw:   each input line (bytes, without its '\n') is one text.
  Output: {"ids":[...]} per line; with --tokens also "tokens"; with --basic
  {"words":[...]} (BasicTokenizer only) instead.
"""

import argparse
import collections
import json
import sys
import unicodedata


def convert_to_unicode(text):
    """bytes -> str with invalid UTF-8 dropped, as the reference does."""
    if isinstance(text, str):
        return text
    if isinstance(text, bytes):
        return text.decode("utf-8", "ignore")
    raise ValueError("Unsupported string type: %s" % type(text))


def load_vocab(vocab_file):
    """token -> id; id = line number, lines stripped, a repeated token keeps its later id."""
    vocab = collections.OrderedDict()
    with open(vocab_file, "rb") as reader:
        data = reader.read().decode("utf-8")
    lines = data.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the reference's readline() loop stops at the empty read after the last '\n'
    for index, line in enumerate(lines):
        vocab[line.strip()] = index
    return vocab


def whitespace_tokenize(text):
    text = text.strip()
    if not text:
        return []
    return text.split()


def _is_whitespace(char):
    if char == " " or char == "\t" or char == "\n" or char == "\r":
        return True
    return unicodedata.category(char) == "Zs"


def _is_control(char):
    if char == "\t" or char == "\n" or char == "\r":
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char):
    cp = ord(char)
    if (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126):
        return True
    return unicodedata.category(char).startswith("P")


def _is_chinese_char(cp):
    return ((0x4E00 <= cp <= 0x9FFF) or (0x3400 <= cp <= 0x4DBF) or
            (0x20000 <= cp <= 0x2A6DF) or (0x2A700 <= cp <= 0x2B73F) or
            (0x2B740 <= cp <= 0x2B81F) or (0x2B820 <= cp <= 0x2CEAF) or
            (0xF900 <= cp <= 0xFAFF) or (0x2F800 <= cp <= 0x2FA1F))


class BasicTokenizer(object):
    def __init__(self, do_lower_case=True):
        self.do_lower_case = do_lower_case

    def tokenize(self, text):
        text = convert_to_unicode(text)
        text = self._clean_text(text)
        text = self._tokenize_chinese_chars(text)
        orig_tokens = whitespace_tokenize(text)
        split_tokens = []
        for token in orig_tokens:
            if self.do_lower_case:
                token = token.lower()
                token = self._run_strip_accents(token)
            split_tokens.extend(self._run_split_on_punc(token))
        return whitespace_tokenize(" ".join(split_tokens))

    def _run_strip_accents(self, text):
        text = unicodedata.normalize("NFD", text)
        return "".join(c for c in text if unicodedata.category(c) != "Mn")

    def _run_split_on_punc(self, text):
        output = []
        start_new_word = True
        for char in text:
            if _is_punctuation(char):
                output.append([char])
                start_new_word = True
            else:
                if start_new_word:
                    output.append([])
                start_new_word = False
                output[-1].append(char)
        return ["".join(x) for x in output]

    def _tokenize_chinese_chars(self, text):
        output = []
        for char in text:
            if _is_chinese_char(ord(char)):
                output.extend((" ", char, " "))
            else:
                output.append(char)
        return "".join(output)

    def _clean_text(self, text):
        output = []
        for char in text:
            cp = ord(char)
            if cp == 0 or cp == 0xFFFD or _is_control(char):
                continue
            output.append(" " if _is_whitespace(char) else char)
        return "".join(output)


class WordpieceTokenizer(object):
    def __init__(self, vocab, unk_token="[UNK]", max_input_chars_per_word=100):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word

    def tokenize(self, text):
        """Greedy longest-match-first over code points; '##' marks continuations."""
        output_tokens = []
        for token in whitespace_tokenize(convert_to_unicode(text)):
            chars = list(token)
            if len(chars) > self.max_input_chars_per_word:
                output_tokens.append(self.unk_token)
                continue
            is_bad = False
            start = 0
            sub_tokens = []
            while start < len(chars):
                end = len(chars)
                cur_substr = None
                while start < end:
                    substr = "".join(chars[start:end])
                    if start > 0:
                        substr = "##" + substr
                    if substr in self.vocab:
                        cur_substr = substr
                        break
                    end -= 1
                if cur_substr is None:
                    is_bad = True
                    break
                sub_tokens.append(cur_substr)
                start = end
            if is_bad:
                output_tokens.append(self.unk_token)
            else:
                output_tokens.extend(sub_tokens)
        return output_tokens


class FullTokenizer(object):
    def __init__(self, vocab_file, do_lower_case=True, max_input_chars_per_word=100):
        self.vocab = load_vocab(vocab_file)
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)
        self.wordpiece_tokenizer = WordpieceTokenizer(
            vocab=self.vocab, max_input_chars_per_word=max_input_chars_per_word)

    def tokenize(self, text):
        split_tokens = []
        for token in self.basic_tokenizer.tokenize(text):
            split_tokens.extend(self.wordpiece_tokenizer.tokenize(token))
        return split_tokens

    def convert_tokens_to_ids(self, tokens):
        return [self.vocab[t] for t in tokens]


def _texts(stream, fmt, name):
    """Yields (line_number, text as bytes or str)."""
    for line_number, line in enumerate(stream, 1):
        line = line[:-1] if line.endswith(b"\n") else line
        if fmt == "raw":
            yield line_number, line
            continue
        # Mirrors bertctl: invalid UTF-8 anywhere in the line is dropped first.
        try:
            obj = json.loads(line.decode("utf-8", "ignore"))
        except ValueError as e:
            sys.exit("%s:%d: not JSON: %s" % (name, line_number, e))
        if isinstance(obj, dict) and isinstance(obj.get("text_hex"), str):
            yield line_number, bytes.fromhex(obj["text_hex"])
        elif isinstance(obj, dict) and isinstance(obj.get("text"), str):
            yield line_number, obj["text"]
        else:
            sys.exit('%s:%d: expected an object with a string "text"' % (name, line_number))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", required=True, help="BERT vocab.txt")
    parser.add_argument("--cased", action="store_true", help="keep case and accents")
    parser.add_argument("--max-chars-per-word", type=int, default=100)
    parser.add_argument("--input", default="-", help="input file, '-' = stdin")
    parser.add_argument("--output", default="-", help="output file, '-' = stdout")
    parser.add_argument("--format", choices=("jsonl", "raw"), default="jsonl")
    parser.add_argument("--tokens", action="store_true", help="also write the token strings")
    parser.add_argument("--basic", action="store_true",
                        help='write {"words":[...]}, the BasicTokenizer output (steps 1-6), instead of ids')
    args = parser.parse_args()

    tokenizer = FullTokenizer(args.vocab, do_lower_case=not args.cased,
                              max_input_chars_per_word=args.max_chars_per_word)
    src = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")
    dst = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")
    for _, text in _texts(src, args.format, args.input):
        if args.basic:
            words = tokenizer.basic_tokenizer.tokenize(text)
            dst.write(json.dumps({"words": words}, separators=(",", ":"), ensure_ascii=False) + "\n")
            continue
        tokens = tokenizer.tokenize(text)
        record = {"ids": tokenizer.convert_tokens_to_ids(tokens)}
        if args.tokens:
            record["tokens"] = tokens
        dst.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")
    dst.flush()


if __name__ == "__main__":
    main()
