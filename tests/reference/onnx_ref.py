#!/usr/bin/env python3
"""Test peer: runs an ONNX directory from `bertctl export --format onnx` in onnxruntime.

Reads ONNX_DIR/model.onnx, config.json (id2label), tokenizer_config.json and
vocab.txt, tokenizes INPUT.jsonl with Google's reference tokenizer
(bert_tokenization_ref.py, which `bertctl predict` matches), and scores it
in batches of the sizes --batches cycles through (e.g. 1,5,16,3), each batch
padded to its longest row: a batch of one is unpadded, the others mix padded
and unpadded rows, so both the batch and the sequence axes vary from run to
run of the one session. It checks that the model declares its inputs as
int64 [batch, sequence] with symbolic axes and its outputs as
[batch, num_labels], and that probabilities = softmax(logits).

With --reference MODEL_DIR (an fp32 or int8 directory, int8_ref.py), each
batch is also scored by int8_ref.py's NumPy forward of that model, on the
same padded arrays (dynamic int8 quantizes per batch, so the batches must
match), and each line gets "reference_label" and "reference_probabilities".

Usage: onnx_ref.py ONNX_DIR INPUT.jsonl [--batches 1,5,16,3] [--reference MODEL_DIR] [--pair-field F]
Prints one JSON line per input, in order: {"label", "probabilities": {label: p}, ...};
a summary line to stderr. Needs onnxruntime and NumPy (the project venv, BERT_PYTHON).
"""

import argparse
import json
import os
import sys

import numpy as np
import onnxruntime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import int8_ref  # noqa: E402


def fail(message):
    print("onnx_ref: " + message, file=sys.stderr)
    sys.exit(1)


def check_signature(session, num_labels):
    inputs = {i.name: i for i in session.get_inputs()}
    if sorted(inputs) != ["attention_mask", "input_ids", "token_type_ids"]:
        fail("inputs are %s" % sorted(inputs))
    for i in inputs.values():
        if i.type != "tensor(int64)" or i.shape != ["batch", "sequence"]:
            fail("input %s is %s %s, expected tensor(int64) ['batch', 'sequence']" % (i.name, i.type, i.shape))
    outputs = {o.name: o for o in session.get_outputs()}
    for name in ("logits", "probabilities"):
        if name not in outputs or outputs[name].shape != ["batch", num_labels]:
            fail("output %s: %s" % (name, outputs.get(name) and outputs[name].shape))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("onnx_dir")
    parser.add_argument("input")
    parser.add_argument("--batches", default="1,5,16,3")
    parser.add_argument("--reference")
    parser.add_argument("--pair-field", help="key of the second text of sentence pairs (token type 1)")
    args = parser.parse_args()

    with open(os.path.join(args.onnx_dir, "config.json")) as f:
        config = json.load(f)
    id2label = {int(k): v for k, v in config["id2label"].items()}
    tokenizer, vocab, max_len = int8_ref.read_tokenizer(args.onnx_dir, config)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(os.path.join(args.onnx_dir, "model.onnx"), options,
                                           providers=["CPUExecutionProvider"])
    check_signature(session, len(id2label))
    reference = int8_ref.Model(args.reference) if args.reference else None

    with open(args.input, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    texts = [(r["text"], r.get(args.pair_field) if args.pair_field else None) for r in records]
    sizes = [int(b) for b in args.batches.split(",")]
    start, turn, shapes, padded_rows, max_softmax_diff = 0, 0, set(), 0, 0.0
    while start < len(texts):
        batch = texts[start:start + sizes[turn % len(sizes)]]
        encoded = [int8_ref.encode(tokenizer, vocab, text, max_len, pair) for text, pair in batch]
        ids = int8_ref.pad([e[0] for e in encoded])
        mask = int8_ref.pad([[1] * len(e[0]) for e in encoded])
        types = int8_ref.pad([e[1] for e in encoded])
        padded_rows += int((mask == 0).any(axis=1).sum())
        shapes.add(ids.shape)
        logits, probabilities = session.run(["logits", "probabilities"],
                                            {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        if logits.shape != (len(encoded), len(id2label)):
            fail("logits of shape %s for a batch of %d" % (logits.shape, len(encoded)))
        max_softmax_diff = max(max_softmax_diff, float(np.abs(int8_ref.softmax(logits) - probabilities).max()))
        theirs = int8_ref.softmax(int8_ref.forward(reference, ids, mask, types)) if reference else None
        for row in range(len(encoded)):
            p = probabilities[row].astype(np.float64)
            line = {"label": id2label[int(p.argmax())],
                    "probabilities": {id2label[i]: float(p[i]) for i in range(len(p))}}
            if reference:
                r = theirs[row].astype(np.float64)
                line["reference_label"] = id2label[int(r.argmax())]
                line["reference_probabilities"] = {id2label[i]: float(r[i]) for i in range(len(r))}
            print(json.dumps(line))
        start += len(encoded)
        turn += 1
    if max_softmax_diff > 1e-5:
        fail("probabilities differ from softmax(logits) by %.2e" % max_softmax_diff)
    print("onnx_ref: %d examples in %d batches, %d distinct [batch, sequence] shapes, %d padded rows" %
          (len(texts), turn, len(shapes), padded_rows), file=sys.stderr)


if __name__ == "__main__":
    main()
