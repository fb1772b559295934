#!/usr/bin/env python3
"""Test oracle: HuggingFace BertForSequenceClassification, inference only, in PyTorch.

Reads a HuggingFace model directory the way `transformers` does
(`from_pretrained`): config.json (BertConfig keys, id2label),
tokenizer_config.json (do_lower_case, model_max_length), vocab.txt and
model.safetensors, looking every tensor up by its HF state-dict name. The
forward pass is written from transformers' modeling_bert.py (BertEmbeddings,
BertSelfAttention with the additive extended mask, BertSelfOutput,
BertIntermediate, BertOutput, BertPooler, the classifier on the pooled
output), not from this project's C++ code. Tokenization is Google's reference
(bert_tokenization_ref.py), which HF's BertTokenizer matches.

So a directory written by `bertctl export` or `bertctl finetune` that this
script scores like `bertctl predict` is one whose names, shapes, layouts and
config keys a second implementation reads the same way.

Usage: hf_bert_ref.py MODEL_DIR INPUT.jsonl [--text-field text] [--pair-field F]
Prints one JSON line per input: {"label": ..., "probabilities": {label: p}}.

       hf_bert_ref.py MODEL_DIR --pretraining CASE.json
BertForPreTraining instead (an export of a pretraining checkpoint): CASE.json
holds input_ids and token_type_ids ([B][T]), lengths ([B], the rest of a row
is padding), masked_positions (flat b * T + t) and the other implementation's
mlm_logits ([M][V]) and nsp_logits ([B][2]). The MLM head is transform
(dense, hidden_act, LayerNorm) then the decoder tied to the word embeddings
(a stored cls.predictions.decoder.weight must equal them) plus
cls.predictions.bias; NSP is cls.seq_relationship on the pooled output.
Prints {"mlm_max_diff": ..., "nsp_max_diff": ..., "mlm_max_abs": ...}.

Needs torch and NumPy (the project venv, BERT_PYTHON).
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bert_tokenization_ref as tokenization  # noqa: E402

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def fail(message):
    print("hf_bert_ref: " + message, file=sys.stderr)
    sys.exit(1)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    body = data[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in DTYPES:
            fail("%s: unsupported dtype %s" % (name, info["dtype"]))
        begin, end = info["data_offsets"]
        array = np.frombuffer(body[begin:end], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        tensors[name] = torch.from_numpy(array.copy()).to(torch.float64 if array.dtype.kind == "f" else torch.int64)
    return tensors


class Weights:
    """State-dict lookup by HF name, with the shape BertConfig implies."""

    def __init__(self, tensors):
        self.tensors = tensors
        self.used = set()

    def __call__(self, name, shape):
        if name not in self.tensors:
            fail("missing tensor " + name)
        tensor = self.tensors[name]
        if list(tensor.shape) != list(shape):
            fail("%s: shape %s, BertConfig implies %s" % (name, list(tensor.shape), list(shape)))
        self.used.add(name)
        return tensor


def activation(name):
    if name == "gelu":  # transformers' GELUActivation: the exact erf form
        return lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name == "gelu_new":
        return lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    if name == "relu":
        return torch.relu
    fail("unsupported hidden_act " + name)


def linear(w, prefix, x, out_features, in_features):
    # nn.Linear: y = x W^T + b with W of shape [out, in].
    return x @ w(prefix + ".weight", [out_features, in_features]).T + w(prefix + ".bias", [out_features])


def layer_norm(w, prefix, x, hidden, eps):
    return torch.nn.functional.layer_norm(x, (hidden,), w(prefix + ".weight", [hidden]), w(prefix + ".bias", [hidden]),
                                          eps)


def encode_sequence(w, config, input_ids, token_type_ids, attention_mask):
    """BertModel: the final hidden states [B, T, H] and the pooled output [B, H]."""
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head_dim = hidden // heads
    inter = config["intermediate_size"]
    eps = config.get("layer_norm_eps", 1e-12)
    act = activation(config.get("hidden_act", "gelu"))
    batch, seq = input_ids.shape

    # BertEmbeddings (absolute positions, dropout off in eval).
    positions = torch.arange(seq).unsqueeze(0).expand(batch, seq)
    x = (w("bert.embeddings.word_embeddings.weight", [config["vocab_size"], hidden])[input_ids] +
         w("bert.embeddings.position_embeddings.weight", [config["max_position_embeddings"], hidden])[positions] +
         w("bert.embeddings.token_type_embeddings.weight", [config["type_vocab_size"], hidden])[token_type_ids])
    x = layer_norm(w, "bert.embeddings.LayerNorm", x, hidden, eps)

    # get_extended_attention_mask: (1 - mask) * finfo.min, broadcast over heads and queries.
    extended = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min

    def split(t):
        return t.view(batch, seq, heads, head_dim).permute(0, 2, 1, 3)

    for i in range(config["num_hidden_layers"]):
        p = "bert.encoder.layer.%d." % i
        q = split(linear(w, p + "attention.self.query", x, hidden, hidden))
        k = split(linear(w, p + "attention.self.key", x, hidden, hidden))
        v = split(linear(w, p + "attention.self.value", x, hidden, hidden))
        scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim) + extended
        context = (torch.softmax(scores, dim=-1) @ v).permute(0, 2, 1, 3).reshape(batch, seq, hidden)
        attention = layer_norm(w, p + "attention.output.LayerNorm",
                               linear(w, p + "attention.output.dense", context, hidden, hidden) + x, hidden, eps)
        intermediate = act(linear(w, p + "intermediate.dense", attention, inter, hidden))
        x = layer_norm(w, p + "output.LayerNorm", linear(w, p + "output.dense", intermediate, hidden, inter) + attention,
                       hidden, eps)

    pooled = torch.tanh(linear(w, "bert.pooler.dense", x[:, 0], hidden, hidden))
    return x, pooled


def classify(w, config, input_ids, token_type_ids, attention_mask):
    _, pooled = encode_sequence(w, config, input_ids, token_type_ids, attention_mask)
    return linear(w, "classifier", pooled, config["num_labels"], config["hidden_size"])


def pretraining(w, config, case):
    """BertForPreTraining's MLM logits at case's masked positions and its NSP logits."""
    hidden, vocab = config["hidden_size"], config["vocab_size"]
    input_ids = torch.tensor(case["input_ids"])
    batch, seq = input_ids.shape
    mask = (torch.arange(seq)[None, :] < torch.tensor(case["lengths"])[:, None]).to(torch.float64)
    x, pooled = encode_sequence(w, config, input_ids, torch.tensor(case["token_type_ids"]), mask)
    rows = x.reshape(batch * seq, hidden)[torch.tensor(case["masked_positions"])]
    t = activation(config.get("hidden_act", "gelu"))(linear(w, "cls.predictions.transform.dense", rows, hidden, hidden))
    t = layer_norm(w, "cls.predictions.transform.LayerNorm", t, hidden, config.get("layer_norm_eps", 1e-12))
    embeddings = w("bert.embeddings.word_embeddings.weight", [vocab, hidden])
    if "cls.predictions.decoder.weight" in w.tensors:
        if not torch.equal(w("cls.predictions.decoder.weight", [vocab, hidden]), embeddings):
            fail("cls.predictions.decoder.weight differs from the word embeddings it is tied to")
    mlm = t @ embeddings.T + w("cls.predictions.bias", [vocab])
    if "cls.predictions.decoder.bias" in w.tensors:
        if not torch.equal(w("cls.predictions.decoder.bias", [vocab]), w.tensors["cls.predictions.bias"]):
            fail("cls.predictions.decoder.bias differs from cls.predictions.bias")
    nsp = linear(w, "cls.seq_relationship", pooled, 2, hidden)
    return mlm, nsp


def encode(tokenizer, vocab, text, pair, max_len):
    a = tokenizer.tokenize(text)
    b = tokenizer.tokenize(pair) if pair is not None else []
    budget = max_len - (3 if pair is not None else 2)
    while len(a) + len(b) > budget:  # "longest_first": trim the longer one
        if len(a) > len(b):
            a.pop()
        else:
            b.pop()
    tokens = ["[CLS]"] + a + ["[SEP]"]
    types = [0] * len(tokens)
    if pair is not None:
        tokens += b + ["[SEP]"]
        types += [1] * (len(b) + 1)
    return [vocab[t] for t in tokens], types


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("input", nargs="?")
    parser.add_argument("--pretraining", metavar="CASE.json")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--pair-field")
    args = parser.parse_args()

    with open(os.path.join(args.model_dir, "config.json")) as f:
        config = json.load(f)
    if config.get("position_embedding_type", "absolute") != "absolute":
        fail("config.json: only absolute position embeddings are supported")
    if args.pretraining:
        return main_pretraining(args, config)
    if args.input is None:
        fail("give INPUT.jsonl or --pretraining CASE.json")
    if config.get("architectures") != ["BertForSequenceClassification"]:
        fail("config.json: architectures is %s, not BertForSequenceClassification" % config.get("architectures"))
    id2label = {int(k): v for k, v in config["id2label"].items()}
    config.setdefault("num_labels", len(id2label))
    if len(id2label) != config["num_labels"]:
        fail("config.json: id2label has %d labels, num_labels is %d" % (len(id2label), config["num_labels"]))
    tokenizer_config = {}
    path = os.path.join(args.model_dir, "tokenizer_config.json")
    if os.path.exists(path):
        with open(path) as f:
            tokenizer_config = json.load(f)
    max_len = min(tokenizer_config.get("model_max_length", 512), config["max_position_embeddings"])
    vocab_file = os.path.join(args.model_dir, "vocab.txt")
    tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=tokenizer_config.get("do_lower_case", True))
    vocab = tokenization.load_vocab(vocab_file)
    if len(vocab) != config["vocab_size"]:
        fail("vocab.txt has %d tokens, config.json's vocab_size is %d" % (len(vocab), config["vocab_size"]))

    w = Weights(read_safetensors(os.path.join(args.model_dir, "model.safetensors")))
    torch.set_grad_enabled(False)
    with open(args.input, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    for record in records:
        ids, types = encode(tokenizer, vocab, record[args.text_field],
                            record.get(args.pair_field) if args.pair_field else None, max_len)
        logits = classify(w, config, torch.tensor([ids]), torch.tensor([types]), torch.ones(1, len(ids)))
        probabilities = torch.softmax(logits[0], dim=-1).tolist()
        best = max(range(len(probabilities)), key=lambda i: probabilities[i])
        print(json.dumps({"label": id2label[best],
                          "probabilities": {id2label[i]: p for i, p in enumerate(probabilities)}}))
    # transformers warns about unused weights; here that is an error (the
    # pretraining heads are the only ones allowed beside the classifier's).
    unused = sorted(n for n in w.tensors if n not in w.used and not n.startswith("cls."))
    if unused:
        fail("tensors a BertForSequenceClassification does not use: " + ", ".join(unused[:5]))


def main_pretraining(args, config):
    if config.get("architectures") != ["BertForPreTraining"]:
        fail("config.json: architectures is %s, not BertForPreTraining" % config.get("architectures"))
    with open(args.pretraining) as f:
        case = json.load(f)
    w = Weights(read_safetensors(os.path.join(args.model_dir, "model.safetensors")))
    torch.set_grad_enabled(False)
    mlm, nsp = pretraining(w, config, case)
    theirs_mlm = torch.tensor(case["mlm_logits"], dtype=torch.float64)
    theirs_nsp = torch.tensor(case["nsp_logits"], dtype=torch.float64)
    if theirs_mlm.shape != mlm.shape or theirs_nsp.shape != nsp.shape:
        fail("logit shapes %s and %s, expected %s and %s" % (list(theirs_mlm.shape), list(theirs_nsp.shape),
                                                             list(mlm.shape), list(nsp.shape)))
    unused = sorted(n for n in w.tensors if n not in w.used)
    if unused:
        fail("tensors a BertForPreTraining does not use: " + ", ".join(unused[:5]))
    print(json.dumps({"mlm_max_diff": (mlm - theirs_mlm).abs().max().item(),
                      "nsp_max_diff": (nsp - theirs_nsp).abs().max().item(),
                      "mlm_max_abs": mlm.abs().max().item()}))


if __name__ == "__main__":
    main()
