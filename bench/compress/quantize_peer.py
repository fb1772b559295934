#!/usr/bin/env python3
"""quantize_bench's peer: PyTorch's own int8, torch.ao.quantization.quantize_dynamic
(qint8 per-tensor weights, dynamic activations, the same x86 engine), on
transformers' BertForSequenceClassification of the same fp32 directory, the
same texts (at most --max-seq-len tokens), batch 32 and one thread.
Prints one JSON line: {"fp32_texts_per_s": ..., "int8_texts_per_s": ...} (best of --rounds).

Usage: quantize_peer.py FP32_DIR TEXTS.jsonl [--max-seq-len 128] [--rounds 3]
"""

import argparse
import contextlib
import json
import os
import sys
import time

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import transformers  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("texts")
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.backends.quantized.engine = "x86"
    with contextlib.redirect_stdout(sys.stderr):
        model = transformers.BertForSequenceClassification.from_pretrained(
            args.model_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(args.model_dir)
    int8 = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    with open(args.texts, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    batches = [tokenizer(texts[i:i + args.batch_size], padding=True, truncation=True, max_length=args.max_seq_len,
                         return_tensors="pt") for i in range(0, len(texts), args.batch_size)]
    rates = {}
    with torch.no_grad():
        for name, m in (("fp32", model), ("int8", int8)):
            m(**batches[0])
            best = 0.0
            for _ in range(args.rounds):
                start = time.perf_counter()
                for batch in batches:
                    m(**batch)
                best = max(best, len(texts) / (time.perf_counter() - start))
            rates[name + "_texts_per_s"] = best
    print(json.dumps(rates))


if __name__ == "__main__":
    main()
