#!/usr/bin/env python3
"""The pretraining recipe study: one pretraining run per recipe at the same
budget, on the demo's corpus, each fine-tuned on the fortunes set for
several seeds with configs/finetune/fortunes.yaml, beside a from-scratch
model and the TF-IDF + logistic-regression baseline on the same split.

Usage (after scripts/demo.sh has built the corpus and the fortunes set):
    .venv/bin/python scripts/recipe_study.py [--budget 5m] [--only NAME ...] [--seeds 1 2 3]

Without --budget every recipe runs configs/runs/tiny.yaml's steps (RECIPES
below: equal steps). With --budget every recipe gets the same wall-clock
budget (train.time_budget; the rate decays over it and the run ends when it
is spent) and BUDGET_RECIPES are run, to runs/study/budget-BUDGET/: a
recipe that makes a step slower pays for it in steps. Nothing else may run
on the machine meanwhile, or the rows get different compute.

Each recipe is the demo's config with a few keys changed; "model.KEY" keys
change the model config (written beside the run's config).
"dapt" rows continue an earlier row's model on the fortunes training texts
(their labels unused: domain-adaptive pretraining). Runs go to
runs/study/NAME, fine-tuned models to runs/study/NAME-ft/seedK; what is
already done is reused. The table (Markdown) is printed and written to
runs/study/table.md. Fine-tuning runs two at a time (one per core); the
pretraining runs use 2 workers.
"""
import argparse
import copy
import json
import os
import statistics
import subprocess
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BERTCTL = os.path.join(ROOT, "build/bin/bertctl")
STUDY = os.path.join(ROOT, "runs/study")
FORTUNES = os.path.join(ROOT, "runs/fortunes")
VOCAB = os.path.join(ROOT, "runs/default/vocab.txt")

# name, what changes, config overrides ("section.key": value), and for
# domain-adaptive rows the row whose model they continue.
RECIPES = [
    ("baseline", "today's recipe: MLM + NSP, dropout 0.1 (configs/runs/tiny.yaml)", {}, None),
    ("sop", "MLM + sentence order instead of NSP", {"data.objective": "mlm_sop"}, None),
    ("nodrop", "MLM + NSP without dropout", {"train.dropout": False}, None),
    ("long", "today's recipe, 3x the steps (4500: the demo's budget of 6 minutes before LibTorch 2.11)",
     {"train.steps": 4500, "train.warmup_steps": 300, "checkpoint.every_steps": 1500}, None),
    ("nodrop-long", "MLM + NSP without dropout, 4500 steps",
     {"train.dropout": False, "train.steps": 4500, "train.warmup_steps": 300, "checkpoint.every_steps": 1500}, None),
    ("mlm", "MLM only, one segment", {"data.objective": "mlm"}, None),
    ("mlm-packed", "MLM only, packed to full length", {"data.objective": "mlm", "data.packing": True}, None),
    ("mlm-packed-nodrop", "... and no dropout",
     {"data.objective": "mlm", "data.packing": True, "train.dropout": False}, None),
    ("mlm-packed-nodrop-mask25", "... and 25% masking",
     {"data.objective": "mlm", "data.packing": True, "train.dropout": False, "data.masked_lm_prob": 0.25,
      "data.max_predictions": 16}, None),
    ("dapt", "the best row, continued 300 steps on the fortunes training texts",
     {"data.objective": "mlm", "data.packing": True, "train.dropout": False, "train.steps": 300,
      "train.warmup_steps": 30, "train.lr": 0.001, "checkpoint.every_steps": 0}, "best"),
]

# The same wall-clock budget for every row (--budget): warmup 300 steps, as
# the demo's recipe; the step count is only a cap.
BUDGET_BASE = {"train.steps": 100000, "train.warmup_steps": 300, "checkpoint.every_steps": 1500}
NODROP = {"train.dropout": False}
BUDGET_RECIPES = [
    ("baseline", "today's recipe: MLM + NSP, dropout 0.1 (configs/runs/tiny.yaml)", {}, None),
    ("nodrop", "MLM + NSP without dropout (the demo's recipe, configs/runs/tiny-budget.yaml)", NODROP, None),
    ("sop", "`nodrop` with sentence order instead of NSP", {**NODROP, "data.objective": "mlm_sop"}, None),
    ("mlm", "`nodrop` with MLM only, one segment", {**NODROP, "data.objective": "mlm"}, None),
    ("mlm-packed", "`nodrop` with MLM only, packed to full length",
     {**NODROP, "data.objective": "mlm", "data.packing": True}, None),
    ("pre-ln", "`nodrop` with pre-LayerNorm", {**NODROP, "model.pre_layer_norm": True,
                                                "model.model_type": "bert-pre-ln"}, None),
    ("batch128", "`nodrop` with batches of 128 (2 micro-batches of 32 per worker)",
     {**NODROP, "train.global_batch_size": 128, "train.micro_batch_size": 32}, None),
    ("dapt", "the best row, continued 100 steps on the fortunes training texts at a quarter of the rate",
     {"data.objective": "mlm", "data.packing": True, "train.dropout": False, "train.steps": 100,
      "train.warmup_steps": 10, "train.lr": 0.0005, "train.time_budget": None, "checkpoint.every_steps": 0},
     "best"),
]


def run(cmd, log):
    with open(log, "w") as out:
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    if code != 0:
        sys.exit(f"[study] failed ({code}): {' '.join(cmd)}; see {log}")


def set_key(config, dotted, value):
    node = config
    *path, last = dotted.split(".")
    for part in path:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value


def write_config(name, overrides, init_from, db):
    base_path = os.path.join(ROOT, "configs/runs/tiny.yaml")
    with open(base_path) as f:
        config = yaml.safe_load(f)
    base_dir = os.path.dirname(base_path)
    config = copy.deepcopy(config)
    config["name"] = name
    config["model"] = os.path.normpath(os.path.join(base_dir, config["model"]))
    config["data"]["db"] = [os.path.normpath(os.path.join(base_dir, d)) for d in config["data"]["db"]]
    config["run_dir"] = os.path.join(STUDY, name)
    model_overrides = {k[len("model."):]: v for k, v in overrides.items() if k.startswith("model.")}
    for key, value in overrides.items():
        if not key.startswith("model."):
            set_key(config, key, value)
    if model_overrides:
        with open(config["model"]) as f:
            model = json.load(f)
        model.update(model_overrides)
        config["model"] = os.path.join(STUDY, name + "-model.json")
        with open(config["model"], "w") as f:
            json.dump(model, f, indent=2)
    if init_from:
        config["train"]["init_from"] = init_from
        config["data"]["db"] = [db]
    path = os.path.join(STUDY, name + ".yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


def pretrain(name, overrides, init_from=None, db=None):
    config = write_config(name, overrides, init_from, db)
    print(f"[study] pretraining {name}", flush=True)
    run([BERTCTL, "pretrain", "--config", config, "--workers", "2"], os.path.join(STUDY, name + ".log"))
    with open(os.path.join(STUDY, name, "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    last = lines[-1]
    # Tokens seen: each logged window's real (unpadded) tokens.
    tokens = sum(line["tokens"] for line in lines)
    steps = last["step"]
    with open(os.path.join(STUDY, name + ".log")) as f:  # the last step, when it is not a logged one
        for line in f:
            if "all " in line and " steps acknowledged" in line:
                steps = int(line.split("all ")[1].split(" steps")[0])
    return {"mlm_accuracy": last["mlm_accuracy"], "elapsed_s": last["elapsed_s"], "steps": steps,
            "tokens_per_s": last["tokens_per_s"], "tokens": tokens}


def finetune(init, output, seed, extra=()):
    if os.path.exists(os.path.join(output, "metrics.json")):
        return None
    os.makedirs(os.path.dirname(output), exist_ok=True)
    cmd = [BERTCTL, "finetune", "--init", init, "--config", "configs/finetune/fortunes.yaml",
           "--train", f"{FORTUNES}/train.jsonl", "--dev", f"{FORTUNES}/dev.jsonl", "--test", f"{FORTUNES}/test.jsonl",
           "--output", output, "--seed", str(seed), "--overwrite", *extra]
    return subprocess.Popen(cmd, stdout=open(output + ".log", "w"), stderr=subprocess.STDOUT, cwd=ROOT)


def finetune_seeds(init, out_dir, seeds, extra=()):
    pending = list(seeds)
    while pending:
        batch, pending = pending[:2], pending[2:]
        procs = [(seed, finetune(init, f"{out_dir}/seed{seed}", seed, extra)) for seed in batch]
        for seed, proc in procs:
            if proc is not None and proc.wait() != 0:
                sys.exit(f"[study] fine-tuning {out_dir}/seed{seed} failed; see {out_dir}/seed{seed}.log")
    scores = []
    for seed in seeds:
        with open(f"{out_dir}/seed{seed}/metrics.json") as f:
            scores.append(json.load(f)["test"]["macro_f1"])
    return scores


def fortunes_corpus():
    db = os.path.join(STUDY, "fortunes-corpus")
    if not os.path.exists(os.path.join(db, "CURRENT")):
        run([BERTCTL, "prepare", "--input", f"{FORTUNES}/train.jsonl", "--vocab", VOCAB, "--db", db],
            os.path.join(STUDY, "fortunes-corpus.log"))
    return db


def fmt(scores):
    mean = statistics.mean(scores)
    spread = (max(scores) - min(scores)) / 2 if len(scores) > 1 else 0
    return f"{mean:.4f} ± {spread:.4f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="recipes to run (default: all)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3])
    parser.add_argument("--budget", help="the same wall-clock budget for every row (train.time_budget, e.g. 5m)")
    args = parser.parse_args()
    global STUDY
    recipes = RECIPES
    if args.budget:
        STUDY = os.path.join(STUDY, "budget-" + args.budget)
        recipes = [(name, what, {**BUDGET_BASE, "train.time_budget": args.budget, **overrides}, base)
                   for name, what, overrides, base in BUDGET_RECIPES]
    os.makedirs(STUDY, exist_ok=True)
    rows = []
    results = {}
    for name, what, overrides, base in recipes:
        if args.only and name not in args.only:
            continue
        init_from = db = None
        if base:
            done = [r for r in rows if r["base"] is None]
            if not done:
                sys.exit(f"[study] {name} continues the best row: run it with the others")
            best = max(done, key=lambda r: statistics.mean(r["scores"]))
            init_from = os.path.join(STUDY, best["name"])
            db = fortunes_corpus()
            what = what.replace("the best row", f"`{best['name']}`")
            name = f"{name}-{best['name']}"  # its own run: another best row is another run
        figures = pretrain(name, overrides, init_from, db)
        scores = finetune_seeds(os.path.join(STUDY, name), os.path.join(STUDY, name + "-ft"), args.seeds)
        rows.append({"name": name, "what": what, "base": base, "scores": scores, **figures})
        results[name] = scores
        print(f"[study] {name}: MLM accuracy {figures['mlm_accuracy']:.3f}, test macro-F1 {fmt(scores)}", flush=True)
    scratch = finetune_seeds("none", os.path.join(STUDY, "scratch-ft"), args.seeds,
                             ["--vocab", VOCAB, "--model", "configs/models/bert-tiny-8k.json"])
    tfidf_path = os.path.join(STUDY, "tfidf-metrics.json")
    subprocess.check_call([sys.executable, "scripts/tfidf_baseline.py", "--train", f"{FORTUNES}/train.jsonl",
                           "--dev", f"{FORTUNES}/dev.jsonl", "--test", f"{FORTUNES}/test.jsonl",
                           "--output", tfidf_path], cwd=ROOT, stdout=subprocess.DEVNULL)
    with open(tfidf_path) as f:
        tfidf = json.load(f)["test"]["macro_f1"]
    lines = ["| recipe | what changes | steps | pretraining s | tokens seen | final MLM acc | "
             "test macro-F1 (mean ± half-range) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['what']} | {r['steps']} | {r['elapsed_s']:.0f} | {r['tokens'] / 1e6:.2f}M | "
                     f"{r['mlm_accuracy']:.3f} | {fmt(r['scores'])} |")
    lines.append(f"| scratch | no pretraining | 0 | 0 | 0 | | {fmt(scratch)} |")
    lines.append(f"| TF-IDF + LR | word 1-2 grams, C on dev | | | | | {tfidf:.4f} |")
    table = "\n".join(lines)
    with open(os.path.join(STUDY, "table.md"), "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
