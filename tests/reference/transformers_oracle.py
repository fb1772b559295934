#!/usr/bin/env python3
"""Test oracle: HuggingFace `transformers` itself loads an exported directory.

The same command line and output as hf_bert_ref.py (this project's
independent float64 reading of modeling_bert), but the model, the weights and
the tokenizer come from `transformers.*.from_pretrained(MODEL_DIR)`, as a user
would load them. A missing or unexpected weight is an error, not a warning.

Usage: transformers_oracle.py MODEL_DIR INPUT.jsonl [--text-field text] [--pair-field F]
  BertForSequenceClassification and AutoTokenizer from MODEL_DIR; the records
  run in padded batches of 8. Prints one JSON line per input:
  {"label": ..., "probabilities": {label: p}, "ids": [...]}.

       transformers_oracle.py MODEL_DIR --pretraining CASE.json
  BertForPreTraining on CASE.json (see hf_bert_ref.py). Prints
  {"mlm_max_diff": ..., "nsp_max_diff": ..., "mlm_max_abs": ...}.

       transformers_oracle.py MODEL_DIR --encoder CASE.json
  BertModel (the encoder alone) on CASE.json: "input_ids", "token_type_ids"
  ([B, T], padded), "lengths" [B], and the hidden states to check: "hidden"
  (per row, the final hidden state of each of its lengths[b] real tokens)
  and "pooled" [B, H]. Prints {"hidden_max_diff": ..., "pooled_max_diff":
  ..., "hidden_max_abs": ..., "tokens": N}.

       transformers_oracle.py MODEL_DIR --fill-mask FILLED.jsonl
  BertForPreTraining's MLM head and AutoTokenizer from MODEL_DIR on the texts of
  `bertctl fill-mask --json` output: the same tokens, and at each [MASK]
  the same top-k tokens with the probabilities compared. Prints
  {"texts": N, "masks": M, "max_prob_diff": ..., "tokens_equal": bool,
  "top_equal": bool}.

Runs offline (HF_HUB_OFFLINE=1): nothing is downloaded. Needs the project venv.
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

transformers.utils.logging.disable_progress_bar()


def fail(message):
    print("transformers_oracle: " + message, file=sys.stderr)
    sys.exit(1)


def load(cls, model_dir):
    # Loading reports progress on stdout; stdout is for results only.
    with contextlib.redirect_stdout(sys.stderr):
        model, info = cls.from_pretrained(model_dir, output_loading_info=True, dtype=torch.float32)
    problems = {k: v for k, v in info.items() if v and k != "error_msgs" or (k == "error_msgs" and v)}
    if problems:
        fail("%s.from_pretrained(%s): %s" % (cls.__name__, model_dir, problems))
    return model.eval()


def main_classification(args):
    model = load(transformers.BertForSequenceClassification, args.model_dir)
    with contextlib.redirect_stdout(sys.stderr):
        tokenizer = transformers.AutoTokenizer.from_pretrained(args.model_dir)
    with open(args.input, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    id2label = model.config.id2label
    max_len = min(tokenizer.model_max_length, model.config.max_position_embeddings)
    for start in range(0, len(records), 8):
        chunk = records[start:start + 8]
        texts = [r[args.text_field] for r in chunk]
        pairs = [r[args.pair_field] for r in chunk] if args.pair_field else None
        enc = tokenizer(texts, pairs, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits
        probabilities = torch.softmax(logits.double(), dim=-1)
        for i in range(len(chunk)):
            p = probabilities[i].tolist()
            best = max(range(len(p)), key=lambda k: p[k])
            ids = enc["input_ids"][i][enc["attention_mask"][i].bool()].tolist()
            print(json.dumps({"label": id2label[best], "probabilities": {id2label[k]: v for k, v in enumerate(p)},
                              "ids": ids}))


def main_pretraining(args):
    model = load(transformers.BertForPreTraining, args.model_dir)
    with open(args.pretraining) as f:
        case = json.load(f)
    input_ids = torch.tensor(case["input_ids"])
    lengths = torch.tensor(case["lengths"])
    attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        out = model(input_ids=input_ids, token_type_ids=torch.tensor(case["token_type_ids"]),
                    attention_mask=attention_mask)
    mlm = out.prediction_logits.reshape(-1, out.prediction_logits.shape[-1])[torch.tensor(case["masked_positions"])]
    nsp = out.seq_relationship_logits
    theirs_mlm = torch.tensor(case["mlm_logits"])
    theirs_nsp = torch.tensor(case["nsp_logits"])
    if theirs_mlm.shape != mlm.shape or theirs_nsp.shape != nsp.shape:
        fail("logit shapes %s and %s, expected %s and %s" % (list(theirs_mlm.shape), list(theirs_nsp.shape),
                                                             list(mlm.shape), list(nsp.shape)))
    print(json.dumps({"mlm_max_diff": (mlm - theirs_mlm).abs().max().item(),
                      "nsp_max_diff": (nsp - theirs_nsp).abs().max().item(),
                      "mlm_max_abs": mlm.abs().max().item()}))


def main_encoder(args):
    model = load(transformers.BertModel, args.model_dir)
    with open(args.encoder) as f:
        case = json.load(f)
    input_ids = torch.tensor(case["input_ids"])
    lengths = case["lengths"]
    attention_mask = (torch.arange(input_ids.shape[1])[None, :] < torch.tensor(lengths)[:, None]).long()
    with torch.no_grad():
        out = model(input_ids=input_ids, token_type_ids=torch.tensor(case["token_type_ids"]),
                    attention_mask=attention_mask)
    if len(case["hidden"]) != len(lengths):
        fail("%d rows of hidden states for %d rows of input" % (len(case["hidden"]), len(lengths)))
    hidden_diff, hidden_abs, tokens = 0.0, 0.0, 0
    for b, n in enumerate(lengths):
        mine = out.last_hidden_state[b, :n]
        theirs = torch.tensor(case["hidden"][b])
        if theirs.shape != mine.shape:
            fail("row %d: hidden states of shape %s, expected %s" % (b, list(theirs.shape), list(mine.shape)))
        hidden_diff = max(hidden_diff, (mine - theirs).abs().max().item())
        hidden_abs = max(hidden_abs, mine.abs().max().item())
        tokens += n
    pooled = torch.tensor(case["pooled"])
    if pooled.shape != out.pooler_output.shape:
        fail("pooled output of shape %s, expected %s" % (list(pooled.shape), list(out.pooler_output.shape)))
    print(json.dumps({"hidden_max_diff": hidden_diff, "pooled_max_diff": (out.pooler_output - pooled).abs().max().item(),
                      "hidden_max_abs": hidden_abs, "tokens": tokens}))


def main_fill_mask(args):
    # A pretraining export: BertForPreTraining (BertForMaskedLM would call
    # its pooler and NSP head unexpected); its MLM logits are the same head's.
    model = load(transformers.BertForPreTraining, args.model_dir)
    with contextlib.redirect_stdout(sys.stderr):
        tokenizer = transformers.AutoTokenizer.from_pretrained(args.model_dir)
    with open(args.fill_mask) as f:
        records = [json.loads(line) for line in f if line.strip()]
    texts = masks = 0
    max_diff = 0.0
    tokens_equal = top_equal = True
    for record in records:
        encoded = tokenizer(record["text"], return_tensors="pt")
        tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0].tolist())
        tokens_equal &= tokens == record["tokens"]
        with torch.no_grad():
            logits = model(**encoded).prediction_logits[0]
        probabilities = torch.softmax(logits.double(), dim=-1)
        for mask in record["masks"]:
            ours = mask["candidates"]
            theirs = probabilities[mask["position"]]
            top = torch.topk(theirs, len(ours)).indices.tolist()
            top_equal &= top == [c["id"] for c in ours]
            for c in ours:
                max_diff = max(max_diff, abs(theirs[c["id"]].item() - c["probability"]))
            masks += 1
        texts += 1
    print(json.dumps({"texts": texts, "masks": masks, "max_prob_diff": max_diff, "tokens_equal": tokens_equal,
                      "top_equal": top_equal}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("input", nargs="?")
    parser.add_argument("--pretraining", metavar="CASE.json")
    parser.add_argument("--encoder", metavar="CASE.json")
    parser.add_argument("--fill-mask", metavar="FILLED.jsonl")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--pair-field")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.pretraining:
        return main_pretraining(args)
    if args.encoder:
        return main_encoder(args)
    if args.fill_mask:
        return main_fill_mask(args)
    if args.input is None:
        fail("give INPUT.jsonl, --pretraining CASE.json or --encoder CASE.json")
    main_classification(args)


if __name__ == "__main__":
    main()
