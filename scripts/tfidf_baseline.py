#!/usr/bin/env python3
"""The bag-of-words baseline for a classification set: TF-IDF (word 1-2
grams, sublinear tf) and logistic regression from scikit-learn, with C chosen
on the dev set by macro-F1. Deterministic. Runs with the project venv's
Python (.venv/bin/python), which has scikit-learn.

Usage: tfidf_baseline.py --train T.jsonl --dev D.jsonl --test X.jsonl [--output metrics.json]
Prints the test macro-F1 and accuracy; --output also writes them as JSON.
"""

import argparse
import json
import sys

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score


def read(path):
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                texts.append(record["text"])
                labels.append(str(record["label"]))
            except (ValueError, KeyError) as e:
                sys.exit(f"{path}:{number}: not a JSON object with text and label ({e})")
    return texts, labels


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--dev", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--output")
    args = parser.parse_args()
    train, dev, test = read(args.train), read(args.dev), read(args.test)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x_train = vectorizer.fit_transform(train[0])
    best = None
    for c in (0.3, 1.0, 3.0, 10.0, 30.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(x_train, train[1])
        dev_f1 = f1_score(dev[1], model.predict(vectorizer.transform(dev[0])), average="macro")
        if best is None or dev_f1 > best[0]:
            best = (dev_f1, c, model)
    predicted = best[2].predict(vectorizer.transform(test[0]))
    result = {"C": best[1], "dev_macro_f1": best[0],
              "test": {"macro_f1": f1_score(test[1], predicted, average="macro"),
                       "accuracy": accuracy_score(test[1], predicted), "count": len(test[1])}}
    print(f"tfidf+logreg (C={best[1]}): test macro-F1 {result['test']['macro_f1']:.4f} "
          f"accuracy {result['test']['accuracy']:.4f} ({len(test[1])} texts)")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
