#!/usr/bin/env python3
"""Test oracle: an independent reader of the bert-int8 directory (docs/compression.md).

Reads INT8_DIR's config.json and model.int8.safetensors with the `safetensors`
library (checking the dtypes and shapes the format promises), dequantizes the
weights (weight = int8 * weight_scale[row]) into transformers'
BertForSequenceClassification (strict load: every tensor, no extra), and
fake-quantizes each Linear's input as the format says:
  static:  q = clamp(round(x / input_scale) + input_zero_point, 0, 255),
           x' = (q - input_zero_point) * input_scale;
  dynamic: the same with scale and zero point from the call's own min/max
           (range widened to include 0, on [0, 255]), per tensor.
Texts run in padded batches of --batch-size (predict's batches when equal).
Prints one JSON line per input: {"label": ..., "probabilities": {label: p}}.

Usage: int8_oracle.py INT8_DIR INPUT.jsonl [--text-field text] [--batch-size 8]
Runs offline; needs the project venv (torch, transformers, safetensors).
"""

import argparse
import contextlib
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402


def fail(message):
    print("int8_oracle: " + message, file=sys.stderr)
    sys.exit(1)


def fake_quantize(x, scale, zero_point):
    q = torch.clamp(torch.round(x / scale) + zero_point, 0, 255)
    return (q - zero_point) * scale


def dynamic_params(x):
    low, high = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    scale = (high - low) / 255.0
    if scale <= 0:
        return 1.0, 0
    return scale, int(min(255, max(0, round(-low / scale))))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("input")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    with open(os.path.join(args.model_dir, "config.json")) as f:
        config = json.load(f)
    quant = config.get("quantization")
    if not quant or quant.get("format") != "bert-int8" or quant.get("version") != 1:
        fail("config.json: not a bert-int8 version 1 directory: %r" % (quant,))
    static = quant["activations"] == "static"
    path = os.path.join(args.model_dir, "model.int8.safetensors")
    raw = {}
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
        if metadata.get("bert_format") != "bert-int8" or metadata.get("version") != "1":
            fail("%s: __metadata__ %r" % (path, metadata))
        for name in f.keys():
            raw[name] = f.get_tensor(name)
    hf_config = transformers.BertConfig(**{k: v for k, v in config.items() if k != "quantization"})
    hf_config.id2label = {int(k): v for k, v in config["id2label"].items()}
    hf_config.label2id = {v: k for k, v in hf_config.id2label.items()}
    with contextlib.redirect_stdout(sys.stderr):
        model = transformers.BertForSequenceClassification(hf_config).eval()
    linears = {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    state = {}
    used = set()
    for name, module in linears.items():
        weight, scale = raw[name + ".weight"], raw[name + ".weight_scale"]
        if weight.dtype != torch.int8 or scale.dtype != torch.float32 or scale.shape != (weight.shape[0],):
            fail("%s: %s.weight %s / weight_scale %s %s" % (path, name, weight.dtype, scale.dtype, list(scale.shape)))
        if int(weight.min()) < -127:
            fail("%s: %s.weight holds -128" % (path, name))
        state[name + ".weight"] = weight.float() * scale[:, None]
        state[name + ".bias"] = raw[name + ".bias"]
        used.update([name + ".weight", name + ".weight_scale", name + ".bias"])
        if static:
            input_scale, zero_point = raw[name + ".input_scale"], raw[name + ".input_zero_point"]
            if input_scale.dtype != torch.float32 or zero_point.dtype != torch.uint8 or input_scale.shape != (1,):
                fail("%s: %s input quantization %s %s" % (path, name, input_scale.dtype, zero_point.dtype))
            used.update([name + ".input_scale", name + ".input_zero_point"])
            s, z = float(input_scale[0]), int(zero_point[0])
            module.register_forward_pre_hook(lambda m, inputs, s=s, z=z: (fake_quantize(inputs[0], s, z),))
        else:
            module.register_forward_pre_hook(lambda m, inputs: (fake_quantize(inputs[0], *dynamic_params(inputs[0])),))
    for name, tensor in raw.items():
        if name not in used:
            if tensor.dtype != torch.float32:
                fail("%s: %s is %s, expected F32" % (path, name, tensor.dtype))
            state[name] = tensor
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        fail("%s: missing %s, unexpected %s" % (path, missing, unexpected))
    with contextlib.redirect_stdout(sys.stderr):
        tokenizer = transformers.BertTokenizer(os.path.join(args.model_dir, "vocab.txt"),
                                               do_lower_case=json.load(open(os.path.join(
                                                   args.model_dir, "tokenizer_config.json"))).get("do_lower_case", True))
    max_len = min(json.load(open(os.path.join(args.model_dir, "tokenizer_config.json"))).get("model_max_length", 512),
                  hf_config.max_position_embeddings)
    with open(args.input, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    for start in range(0, len(records), args.batch_size):
        chunk = records[start:start + args.batch_size]
        enc = tokenizer([r[args.text_field] for r in chunk], padding=True, truncation=True, max_length=max_len,
                        return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits
        probabilities = torch.softmax(logits.double(), dim=-1)
        for row in probabilities.tolist():
            best = max(range(len(row)), key=lambda k: row[k])
            print(json.dumps({"label": hf_config.id2label[best],
                              "probabilities": {hf_config.id2label[k]: v for k, v in enumerate(row)}}))


if __name__ == "__main__":
    main()
