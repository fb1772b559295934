#!/usr/bin/env python3
"""tokenizer_bench's peer: HuggingFace `tokenizers` (the Rust BertWordPiece
that transformers' fast BERT tokenizer runs), on one thread, over the same
text file and vocabulary, best of N passes.

Usage: tokenizers_peer.py --vocab VOCAB --input FILE [--cased] [--passes N]
Prints: MB/s tokens  (the text's bytes per second, and the token count).
"""

import argparse
import os
import time

os.environ["RAYON_NUM_THREADS"] = "1"  # one thread, as tokenizer_bench
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from tokenizers import BertWordPieceTokenizer  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--cased", action="store_true")
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    with open(args.input, "rb") as f:
        data = f.read()
    lines = [line for line in data.decode("utf-8", errors="ignore").split("\n") if line]
    # The same normalisation as bertctl's uncased/cased tokenizer (Google's
    # BERT): lower-casing with accent stripping, Chinese characters split.
    tokenizer = BertWordPieceTokenizer(args.vocab, lowercase=not args.cased, strip_accents=not args.cased,
                                       clean_text=True, handle_chinese_chars=True)
    best = float("inf")
    tokens = 0
    for _ in range(args.passes):
        start = time.perf_counter()
        encodings = tokenizer.encode_batch(lines, add_special_tokens=False)
        best = min(best, time.perf_counter() - start)
        tokens = sum(len(e.ids) for e in encodings)
    print("%.3f %d" % (len(data) / 1e6 / best, tokens))


if __name__ == "__main__":
    main()
