#!/usr/bin/env python3
"""Test oracle: the bert-int8 format (version 1) from its written spec, in NumPy.

Two things, written from the format description (docs/export.md, "int8
directories"; interop/int8_model.h) and the ONNX operator spec, not from the
C++ exporter:

1. A reference quantizer. From a fine-tuned fp32 HF directory it writes an
   int8 directory: per Linear X (attention query/key/value, attention output
   dense, intermediate dense, output dense, pooler dense, classifier)
     X.weight        I8  [out, in]  round(W / weight_scale[row]), clipped to [-127, 127]
     X.weight_scale  F32 [out]      max |W[row]| / 127 (1 for an all-zero row)
     X.bias          F32 [out]
   and for --activations static, from an fp32 forward over --calibration texts:
     X.input_scale       F32 [1]  (max(0, max x) - min(0, min x)) / 255
     X.input_zero_point  U8  [1]  round(-min(0, min x) / input_scale), clipped to [0, 255]
   everything else F32 under the same name; config.json gains the
   "quantization" block; vocab.txt and tokenizer_config.json are copied.

2. A NumPy float32 forward of such a model (or of the fp32 directory) with
   the quantization math of the ONNX graph: DynamicQuantizeLinear (uint8,
   per tensor over the whole batch), or QuantizeLinear with the stored
   scale and zero point, then the integer product, Cast, Mul by
   activation scale * weight_scale, Add bias.

Usage:
  int8_ref.py quantize FP32_DIR OUT_DIR --activations dynamic|static [--calibration TRAIN.jsonl]

Needs NumPy, SciPy (erf) and safetensors (the project venv, BERT_PYTHON).
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np
from safetensors.numpy import load_file, save_file
from scipy.special import erf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bert_tokenization_ref as tokenization  # noqa: E402

F32 = np.float32
LINEAR_PARTS = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                "intermediate.dense", "output.dense"]


def fail(message):
    print("int8_ref: " + message, file=sys.stderr)
    sys.exit(1)


def linear_prefixes(config):
    prefixes = ["bert.encoder.layer.%d.%s" % (i, part) for i in range(config["num_hidden_layers"])
                for part in LINEAR_PARTS]
    return prefixes + ["bert.pooler.dense", "classifier"]


class Model:
    """A classifier directory (fp32 or int8) and how its Linear layers compute."""

    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.config = json.load(f)
        quantization = self.config.get("quantization")
        if quantization is None:
            self.mode = "fp32"
            self.tensors = load_file(os.path.join(model_dir, "model.safetensors"))
        else:
            if quantization.get("format") != "bert-int8" or quantization.get("version") != 1:
                fail("config.json: not bert-int8 version 1")
            self.mode = quantization["activations"]
            self.tensors = load_file(os.path.join(model_dir, "model.int8.safetensors"))
        self.ranges = None  # {prefix: [min, max]} while calibrating

    def t(self, name):
        return self.tensors[name]

    def linear(self, prefix, x):
        if self.ranges is not None:
            low, high = self.ranges.setdefault(prefix, [np.inf, -np.inf])
            self.ranges[prefix] = [min(low, float(x.min())), max(high, float(x.max()))]
        bias = self.t(prefix + ".bias").astype(F32)
        if self.mode == "fp32":
            return (x @ self.t(prefix + ".weight").astype(F32).T + bias).astype(F32)
        if self.mode == "dynamic":
            q, scale, zero = dynamic_quantize_linear(x)
        else:
            scale = self.t(prefix + ".input_scale").astype(F32)[0]
            zero = int(self.t(prefix + ".input_zero_point")[0])
            q = quantize_linear(x, scale, zero)
        w = self.t(prefix + ".weight").astype(np.int32).T  # [in, out], zero point 0
        product = (q.astype(np.int32) - zero) @ w           # MatMulInteger: int32 accumulation
        combined = (F32(scale) * self.t(prefix + ".weight_scale").astype(F32)).astype(F32)
        return (product.astype(F32) * combined + bias).astype(F32)


def dynamic_quantize_linear(x):
    """ONNX DynamicQuantizeLinear: uint8, scale and zero point over the whole tensor."""
    low, high = min(F32(0), x.min()), max(F32(0), x.max())
    scale = F32((high - low) / F32(255))
    if scale == 0:
        return np.zeros(x.shape, np.uint8), F32(0), 0
    zero = int(np.clip(np.rint(F32(0) - low / scale), 0, 255))
    return quantize_linear(x, scale, zero), scale, zero


def quantize_linear(x, scale, zero):
    """ONNX QuantizeLinear to uint8: saturate(round_half_even(x / scale) + zero)."""
    return np.clip(np.rint(x / F32(scale)) + zero, 0, 255).astype(np.uint8)


def layer_norm(model, prefix, x, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + F32(eps)) * model.t(prefix + ".weight") + model.t(prefix + ".bias")).astype(F32)


def activation(name, x):
    if name == "gelu":
        return (F32(0.5) * x * (F32(1) + erf(x / F32(np.sqrt(2.0))))).astype(F32)
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        inner = F32(np.sqrt(2.0 / np.pi)) * (x + F32(0.044715) * x * x * x)
        return (F32(0.5) * x * (F32(1) + np.tanh(inner))).astype(F32)
    if name == "relu":
        return np.maximum(x, F32(0))
    fail("unsupported hidden_act " + name)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(F32)


def forward(model, input_ids, attention_mask, token_type_ids):
    """Logits [B, num_labels] of BertForSequenceClassification (HF's modeling_bert, post-LN)."""
    c = model.config
    hidden, heads = c["hidden_size"], c["num_attention_heads"]
    head_dim = hidden // heads
    eps = c.get("layer_norm_eps", 1e-12)
    batch, seq = input_ids.shape
    x = (model.t("bert.embeddings.word_embeddings.weight")[input_ids] +
         model.t("bert.embeddings.position_embeddings.weight")[np.arange(seq)][None] +
         model.t("bert.embeddings.token_type_embeddings.weight")[token_type_ids]).astype(F32)
    x = layer_norm(model, "bert.embeddings.LayerNorm", x, eps)
    mask = ((F32(1) - attention_mask[:, None, None, :].astype(F32)) * np.finfo(F32).min).astype(F32)

    def split(t):
        return t.reshape(batch, seq, heads, head_dim).transpose(0, 2, 1, 3)

    for i in range(c["num_hidden_layers"]):
        p = "bert.encoder.layer.%d." % i
        q = split(model.linear(p + "attention.self.query", x))
        k = split(model.linear(p + "attention.self.key", x))
        v = split(model.linear(p + "attention.self.value", x))
        scores = (q @ k.transpose(0, 1, 3, 2)) / F32(np.sqrt(head_dim)) + mask
        context = (softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
        attention = layer_norm(model, p + "attention.output.LayerNorm",
                               model.linear(p + "attention.output.dense", context) + x, eps)
        intermediate = activation(c.get("hidden_act", "gelu"), model.linear(p + "intermediate.dense", attention))
        x = layer_norm(model, p + "output.LayerNorm", model.linear(p + "output.dense", intermediate) + attention, eps)
    pooled = np.tanh(model.linear("bert.pooler.dense", x[:, 0]))
    return model.linear("classifier", pooled)


def encode(tokenizer, vocab, text, max_len, pair=None):
    """[CLS] a [SEP] (b [SEP]), cut to max_len trimming the longer text first: ids and token types."""
    a = tokenizer.tokenize(text)
    b = tokenizer.tokenize(pair) if pair is not None else []
    while len(a) + len(b) > max_len - (3 if pair is not None else 2):
        (a if len(a) > len(b) else b).pop()
    tokens = ["[CLS]"] + a + ["[SEP]"]
    types = [0] * len(tokens)
    if pair is not None:
        tokens += b + ["[SEP]"]
        types += [1] * (len(b) + 1)
    return [vocab[t] for t in tokens], types


def read_tokenizer(model_dir, config):
    path = os.path.join(model_dir, "tokenizer_config.json")
    tokenizer_config = {}
    if os.path.exists(path):
        with open(path) as f:
            tokenizer_config = json.load(f)
    max_len = min(tokenizer_config.get("model_max_length", 512), config["max_position_embeddings"])
    vocab_file = os.path.join(model_dir, "vocab.txt")
    tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=tokenizer_config.get("do_lower_case", True))
    return tokenizer, tokenization.load_vocab(vocab_file), max_len


def pad(rows, value=0):
    width = max(len(r) for r in rows)
    return np.array([r + [value] * (width - len(r)) for r in rows], dtype=np.int64)


def calibrate(model, model_dir, calibration_file, batch_size=16):
    tokenizer, vocab, max_len = read_tokenizer(model_dir, model.config)
    with open(calibration_file, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    model.ranges = {}
    for start in range(0, len(texts), batch_size):
        encoded = [encode(tokenizer, vocab, t, max_len) for t in texts[start:start + batch_size]]
        ids = pad([e[0] for e in encoded])
        forward(model, ids, pad([[1] * len(e[0]) for e in encoded]), pad([e[1] for e in encoded]))
    ranges, model.ranges = model.ranges, None
    return ranges


def quantize(args):
    model = Model(args.fp32_dir)
    if model.mode != "fp32":
        fail(args.fp32_dir + ": already quantized")
    config = model.config
    ranges = None
    if args.activations == "static":
        if not args.calibration:
            fail("--activations static needs --calibration")
        ranges = calibrate(model, args.fp32_dir, args.calibration)
    out = {}
    prefixes = linear_prefixes(config)
    for prefix in prefixes:
        w = model.t(prefix + ".weight").astype(F32)
        absmax = np.abs(w).max(axis=1)
        scale = np.where(absmax > 0, absmax / F32(127), F32(1)).astype(F32)
        out[prefix + ".weight"] = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
        out[prefix + ".weight_scale"] = scale
        out[prefix + ".bias"] = model.t(prefix + ".bias").astype(F32)
        if ranges is not None:
            low, high = min(0.0, ranges[prefix][0]), max(0.0, ranges[prefix][1])
            input_scale = F32((high - low) / 255.0)
            out[prefix + ".input_scale"] = np.array([input_scale], dtype=F32)
            out[prefix + ".input_zero_point"] = np.array([np.clip(np.rint(-low / input_scale), 0, 255)],
                                                         dtype=np.uint8)
    for name, tensor in model.tensors.items():
        if not any(name.startswith(p + ".") for p in prefixes) and not name.startswith("cls."):
            out[name] = tensor.astype(F32)
    os.makedirs(args.out_dir, exist_ok=True)
    save_file(out, os.path.join(args.out_dir, "model.int8.safetensors"),
              metadata={"format": "pt", "bert_format": "bert-int8", "version": "1"})
    config = dict(config)
    config["quantization"] = {"format": "bert-int8", "version": 1, "weights": "int8 symmetric per output channel",
                              "activations": args.activations, "quantizer": "tests/reference/int8_ref.py"}
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(args.fp32_dir, name), os.path.join(args.out_dir, name))
    print("quantized %d Linear layers (%s activations) into %s" % (len(prefixes), args.activations, args.out_dir))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quantize")
    q.add_argument("fp32_dir")
    q.add_argument("out_dir")
    q.add_argument("--activations", choices=["dynamic", "static"], required=True)
    q.add_argument("--calibration")
    args = parser.parse_args()
    if args.command == "quantize":
        quantize(args)


if __name__ == "__main__":
    main()
