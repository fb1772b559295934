#!/usr/bin/env python3
"""train_step_bench's peer: the same BERT pretraining step in PyTorch eager
(Python, the venv's torch, i.e. the LibTorch the worker is built against).

HuggingFace's BertForPreTraining built from the same config.json (random
init), with the MLM head run on the masked positions only, as ours does
(transformers' own forward would run the vocabulary projection on every
token); NSP on the pooled output; loss.backward(), gradient clipping to 1.0
and torch.optim.AdamW (its default multi-tensor implementation). Full-length
rows [CLS] A [SEP] B [SEP] of random ids. One warm-up step, then the fastest
of --steps.

Usage: train_step_peer.py --config bert-tiny.json --batch B --seq T --masked M --threads N --steps S
                          [--device cpu|cuda] [--bf16]
--device cuda runs it on the GPU (timed after torch.cuda.synchronize());
--bf16 runs the forward under torch.autocast(bfloat16), fp32 master weights,
as train.precision: bf16 does. --tf32 allows TF32 for fp32 GEMMs.
Prints: step_seconds samples_per_second
"""

import argparse
import contextlib
import os
import sys
import time

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import transformers  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--seq", type=int, required=True)
    parser.add_argument("--masked", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--tf32", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    with contextlib.redirect_stdout(sys.stderr):
        config = transformers.BertConfig.from_json_file(args.config)
        config._attn_implementation = "sdpa"
        model = transformers.BertForPreTraining(config).train().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    b, t, m = args.batch, args.seq, args.masked
    input_ids = torch.randint(1000, config.vocab_size, (b, t))
    token_type_ids = torch.zeros(b, t, dtype=torch.long)
    token_type_ids[:, t // 2:] = 1
    attention_mask = torch.ones(b, t, dtype=torch.long)
    stride = max(1, (t - 1) // m)
    columns = 1 + torch.arange(m) * stride
    positions = (torch.arange(b)[:, None] * t + columns[None, :]).reshape(-1)
    masked_labels = torch.randint(1000, config.vocab_size, (b * m,))
    nsp_labels = torch.randint(0, 2, (b,))
    input_ids, token_type_ids, attention_mask, positions, masked_labels, nsp_labels = (
        x.to(device) for x in (input_ids, token_type_ids, attention_mask, positions, masked_labels, nsp_labels))
    autocast = (lambda: torch.autocast(device_type=args.device, dtype=torch.bfloat16)) if args.bf16 \
        else contextlib.nullcontext
    wait = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step():
        with autocast():
            sequence, pooled = model.bert(input_ids=input_ids, token_type_ids=token_type_ids,
                                          attention_mask=attention_mask, return_dict=False)[:2]
            hidden = sequence.reshape(-1, config.hidden_size).index_select(0, positions)
            mlm_logits = model.cls.predictions(hidden)
            nsp_logits = model.cls.seq_relationship(pooled)
        loss = (torch.nn.functional.cross_entropy(mlm_logits.float(), masked_labels) +
                torch.nn.functional.cross_entropy(nsp_logits.float(), nsp_labels))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    wait()
    best = float("inf")
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        wait()
        best = min(best, time.perf_counter() - start)
    print("%.6f %.3f" % (best, b / best))


if __name__ == "__main__":
    main()
