#!/usr/bin/env python3
"""Build a topic-classification data set from the Debian `fortunes` package.

Each file /usr/share/games/fortunes/<category> holds texts separated by
lines that are a single "%" (strfile format). Every text becomes one
example whose label is its category:

  - whitespace is normalised (runs of spaces, tabs and newlines become one
    space; leading/trailing space dropped); bytes that are not UTF-8 are
    read as Latin-1;
  - texts shorter than --min-chars are dropped; identical texts within a
    category are kept once, and a text found in two categories is dropped
    (its label would be ambiguous);
  - the split is fixed by the text alone: h = int(sha256(text)[:8], 16) % 100;
    h < 70 -> train, h < 85 -> dev, else test (70/15/15). Adding a category
    never moves a text between splits.
  - each split is written as JSONL ({"text": ..., "label": ...}), sorted by
    the same hash (classes interleaved, the same order on every run), to
    OUTPUT/{train,dev,test}.jsonl via a temporary file and a rename.

Usage: scripts/fortunes_dataset.py --output data/fortunes
       [--categories computers,food,law,politics,science,startrek]
       [--fortunes-dir /usr/share/games/fortunes] [--min-chars 20]
Needs: apt-get install fortunes (python3 standard library only).
"""
import argparse
import hashlib
import json
import os
import sys

DEFAULT_CATEGORIES = "computers,food,law,politics,science,startrek"
SPLITS = (("train", 70), ("dev", 85), ("test", 100))  # cumulative percent


def read_texts(path):
    """The normalised texts of one strfile source file, in file order."""
    with open(path, "rb") as f:
        data = f.read()
    texts, current = [], []
    for raw in data.split(b"\n"):
        if raw.rstrip(b"\r") == b"%":
            texts.append(b"\n".join(current))
            current = []
        else:
            current.append(raw)
    texts.append(b"\n".join(current))
    result = []
    for blob in texts:
        try:
            text = blob.decode("utf-8")
        except UnicodeDecodeError:
            text = blob.decode("latin-1")
        text = " ".join(text.split())
        if text:
            result.append(text)
    return result


def text_hash(text):
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


def split_of(text):
    bucket = text_hash(text) % 100
    for name, upper in SPLITS:
        if bucket < upper:
            return name
    raise AssertionError(bucket)


def write_jsonl_atomic(path, records):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="output directory for train/dev/test.jsonl")
    parser.add_argument("--categories", default=DEFAULT_CATEGORIES,
                        help="comma-separated fortune files to use as classes (default: %(default)s)")
    parser.add_argument("--fortunes-dir", default="/usr/share/games/fortunes")
    parser.add_argument("--min-chars", type=int, default=20, help="drop shorter texts (default: %(default)s)")
    parser.add_argument("--min-per-class", type=int, default=150,
                        help="refuse a category with fewer texts (default: %(default)s)")
    args = parser.parse_args()

    categories = [c.strip() for c in args.categories.split(",") if c.strip()]
    if len(categories) < 2 or len(set(categories)) != len(categories):
        sys.exit("fortunes_dataset.py: --categories: need at least 2 distinct categories, got %r" % args.categories)
    per_category = {}
    for category in categories:
        path = os.path.join(args.fortunes_dir, category)
        if not os.path.isfile(path):
            sys.exit("fortunes_dataset.py: %s: no such fortune file (apt-get install fortunes; see %s)"
                     % (path, args.fortunes_dir))
        seen, texts = set(), []
        for text in read_texts(path):
            if len(text) >= args.min_chars and text not in seen:
                seen.add(text)
                texts.append(text)
        per_category[category] = texts
    # A text in more than one category has no single label: drop it everywhere.
    owners = {}
    for category, texts in per_category.items():
        for text in texts:
            owners.setdefault(text, set()).add(category)
    ambiguous = {text for text, cats in owners.items() if len(cats) > 1}
    counts = {}
    splits = {name: [] for name, _ in SPLITS}
    for category in categories:
        texts = [t for t in per_category[category] if t not in ambiguous]
        if len(texts) < args.min_per_class:
            sys.exit("fortunes_dataset.py: category %s: %d texts, fewer than --min-per-class %d"
                     % (category, len(texts), args.min_per_class))
        for text in texts:
            split = split_of(text)
            splits[split].append({"text": text, "label": category})
            counts[(category, split)] = counts.get((category, split), 0) + 1

    os.makedirs(args.output, exist_ok=True)
    for name, records in splits.items():
        records.sort(key=lambda r: (text_hash(r["text"]), r["text"]))
        write_jsonl_atomic(os.path.join(args.output, name + ".jsonl"), records)

    names = [name for name, _ in SPLITS]
    width = max(len(c) for c in categories + ["total"])
    print("fortunes data set in %s (%d categories, %d ambiguous texts dropped)"
          % (args.output, len(categories), len(ambiguous)))
    print("%-*s %7s %7s %7s %7s" % (width, "label", *names, "all"))
    for category in categories:
        row = [counts.get((category, s), 0) for s in names]
        print("%-*s %7d %7d %7d %7d" % (width, category, *row, sum(row)))
    totals = [len(splits[s]) for s in names]
    print("%-*s %7d %7d %7d %7d" % (width, "total", *totals, sum(totals)))


if __name__ == "__main__":
    main()
