#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (a few valid inputs each).

Files named regress_* are crash inputs the fuzzers found (kept by hand, not
written here), so that every short CI run replays them first.

Run from anywhere: python3 fuzz/make_seeds.py. Standard library only. Inputs
with checksums (batches, shards) need no valid checksum: the fuzz targets
compute it themselves (see batch_codec_fuzz.cc, shard_header_fuzz.cc).
"""
import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(ROOT, "corpus")


def put(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


# --- protocol: protobuf wire format by hand (common/protocol.proto) ---------
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def vfield(num, value):
    return varint(num << 3) + varint(value)


def sfield(num, data):
    data = data.encode() if isinstance(data, str) else data
    return varint((num << 3) | 2) + varint(len(data)) + data


def ffield(num, value):  # float32
    return varint((num << 3) | 5) + struct.pack("<f", value)


def dfield(num, value):  # double
    return varint((num << 3) | 1) + struct.pack("<d", value)


def envelope(body_field, body):
    return vfield(1, 1) + sfield(body_field, body)


register = (sfield(1, "tiny") + vfield(2, 1) + vfield(3, 2) + sfield(4, "node1") + sfield(5, "cpu") +
            vfield(6, 4242) + vfield(7, 0) + vfield(8, 1))
put("protocol", "register", envelope(10, register))
reply = (vfield(1, 1) + vfield(3, 0) + vfield(4, 100) + vfield(5, 64) + vfield(6, 32) + vfield(7, 1) +
         vfield(8, 2) + vfield(9, 4) + vfield(10, 500) + vfield(11, 3000) + vfield(12, 12345) +
         vfield(13, 64) + vfield(14, 10) + dfield(15, 0.15) + vfield(17, 8192) + sfield(18, "tiny"))
put("protocol", "register_reply", envelope(11, reply))
put("protocol", "credit", envelope(12, vfield(1, 1)))
put("protocol", "batch_header", envelope(13, vfield(1, 3) + vfield(2, 0) + vfield(3, 1) + vfield(4, 1) + vfield(5, 0) +
                                              vfield(6, 32) + vfield(7, 64) + vfield(8, 92) + vfield(9, 77)))
figures = (ffield(1, 0.25) + ffield(2, 0.5) + dfield(3, 1e-3) + ffield(4, 1.5) + vfield(5, 64) + vfield(6, 4096) +
           vfield(7, 600) + dfield(8, 1e9) + dfield(9, 1e11) + ffield(10, 12.5) + ffield(11, 0.5))
put("protocol", "ack", envelope(14, vfield(1, 3) + vfield(2, 0) + ffield(3, 7.5) + ffield(4, 10.0) + ffield(5, 0.1) +
                                    sfield(6, figures)))
put("protocol", "heartbeat", envelope(15, vfield(1, 1700000000000) + vfield(2, 3) + vfield(3, 1 << 20)))
put("protocol", "abort", envelope(16, sfield(1, "rank 1 died") + vfield(2, 1)))
put("protocol", "done", envelope(17, vfield(1, 100)))
put("protocol", "shard_durable", envelope(18, vfield(1, 500) + sfield(2, "shard-00001-of-00002.bin") + vfield(3, 5) +
                                              vfield(4, 10) + vfield(5, 100) + sfield(6, "0123456789abcdef") +
                                              sfield(7, '{"dropout_seed": 7}')))
put("protocol", "checkpoint_committed", envelope(19, vfield(1, 500) + sfield(2, "step-000500")))
put("protocol", "checkpoint_request", envelope(20, vfield(1, 500)))


# --- batch codec (datapipe/batch_codec.h, version 1) ------------------------
def batch(samples, seq_len, width, vocab=100, pad=0, cls=2, sep=3, epoch=1, first_index=40):
    num_masked = sum(len(s["masked"]) for s in samples)
    out = b"BRTB" + struct.pack("<HHIIIIIIII", 1, width, len(samples), seq_len, vocab, pad, cls, sep, num_masked, 0)
    out += struct.pack("<QQQ", epoch, first_index, 0)  # checksum: fixed up by the fuzz target
    for s in samples:
        out += struct.pack("<HHHBB", len(s["ids"]), s["b"], len(s["masked"]), s["random_next"], 0)
    fmt = "<H" if width == 2 else "<I"
    for s in samples:
        ids = s["ids"] + [pad] * (seq_len - len(s["ids"]))
        out += b"".join(struct.pack(fmt, i) for i in ids)
    for s in samples:
        out += b"".join(struct.pack("<H", p) for p, _ in s["masked"])
    for s in samples:
        out += b"".join(struct.pack(fmt, label) for _, label in s["masked"])
    return out


one = {"ids": [2, 10, 11, 3, 12, 13, 3], "b": 4, "masked": [(1, 10)], "random_next": 0}
two = {"ids": [2, 20, 3, 21, 22, 23, 3], "b": 3, "masked": [(1, 20), (4, 22)], "random_next": 1}
put("batch_codec", "one_sample", batch([one], 7, 2))
put("batch_codec", "two_samples_padded", batch([one, two], 8, 2))
put("batch_codec", "width4", batch([two, one], 7, 4, vocab=70000))
b1 = batch([one], 7, 2)
put("batch_codec", "stream", struct.pack("<Q", len(b1)) + b1 + struct.pack("<Q", len(b1)) + b1)


# --- manifest.json (checkpoint/manifest.cc) ---------------------------------
manifest = {
    "format_version": 1, "run_id": "tiny", "step": 500, "epoch": 0, "data_cursor": 500, "world_size": 2,
    "total_elements": 10, "sections": ["params", "exp_avg", "exp_avg_sq"],
    "layout": [{"name": "bert.embeddings.word_embeddings.weight", "dtype": "float32", "shape": [2, 3], "offset": 0},
               {"name": "cls.predictions.bias", "dtype": "float32", "shape": [4], "offset": 6}],
    "shards": [{"file": "shard-00000-of-00002.bin", "rank": 0, "begin": 0, "end": 5, "bytes": 200,
                "xxh3": "0123456789abcdef", "rank_state": {"dropout_seed": 1}},
               {"file": "shard-00001-of-00002.bin", "rank": 1, "begin": 5, "end": 10, "bytes": 200,
                "xxh3": "fedcba9876543210", "rank_state": {"dropout_seed": 2}}],
    "optimizer": {"kind": "adamw", "lr": 0.002}, "scheduler": {"kind": "linear", "warmup_steps": 100},
    "rng": {"seed": 42}, "config_yaml": "name: tiny\n", "vocab_checksum": "00112233aabbccdd",
    "created_at": "2024-01-01T00:00:00Z", "model_config": {"hidden_size": 128}}
put("manifest", "two_ranks.json", json.dumps(manifest, indent=1))
m1 = dict(manifest, world_size=1, sections=["params"], model_config=None,
          shards=[dict(manifest["shards"][0], file="shard-00000-of-00001.bin", end=10)])
put("manifest", "one_rank.json", json.dumps(m1))


# --- shard files: selector byte + file (checkpoint/checkpoint.h) -------------
def shard(rank, world, begin, end, sections):
    out = b"BERTSHRD" + struct.pack("<IIIIQQ", 1, rank, world, len(sections), begin, end)
    for s in sections:
        out += struct.pack("<I", len(s)) + s.encode()
    for k in range(len(sections)):
        out += b"".join(struct.pack("<f", 0.5 * k + i) for i in range(end - begin))
    return out


put("shard_header", "rank0_of1", b"\x00" + shard(0, 1, 0, 8, ["params"]))
put("shard_header", "rank1_of2", b"\x01" + shard(1, 2, 4, 8, ["params", "exp_avg", "exp_avg_sq"]))
put("shard_header", "rank2_of3_truncated", b"\x02" + shard(2, 3, 6, 8, ["p"])[:-3])


# --- configs -----------------------------------------------------------------
for name, src in (("run_config", "configs/runs/tiny.yaml"), ("finetune_config", "configs/finetune/fortunes.yaml")):
    with open(os.path.join(ROOT, "..", src), "rb") as f:
        put(name, os.path.basename(src), f.read())
put("run_config", "minimal.yaml", "model: m.json\ndata:\n  db: [corpus]\ntrain:\n  steps: 10\n  global_batch_size: 8\n")
put("finetune_config", "minimal.yaml", "train:\n  epochs: 1\n  lr: 1.0e-4\n")

# --- corpus lines: selector byte (0 jsonl, 1 lines, 2 text) + file -----------
put("corpus_lines", "jsonl", b"\x00" + '{"text": "Hello world. Second sentence."}\n{"text": "caf\u00e9 \u4e2d\u6587"}\n'
    '{"id": 3}\nnot json\n'.encode())
put("corpus_lines", "lines", b"\x01" + b"First sentence.\nSecond one.\n\nNew document here.\n")
put("corpus_lines", "text", b"\x02" + "Un texte accentu\u00e9, with \u00e9mojis \U0001F600 and\ttabs.\n".encode())
put("corpus_lines", "jsonl_bad_utf8", b"\x00" + b'{"text": "bad \xff byte"}\n')

# --- classification data: selector (0 jsonl, 1 csv, 2 tsv; +3 pairs; +6 no label) + file
put("classification_data", "jsonl", b"\x00" + b'{"text": "great film", "label": "pos"}\n{"text": "bad", "label": 0}\n')
put("classification_data", "csv", b"\x01" + b'text,label\n"a, quoted ""field""",pos\nplain,neg\n')
put("classification_data", "tsv_pairs", b"\x05" + b"text\ttext_b\tlabel\nq one\ta one\tyes\nq two\ta two\tno\n")
put("classification_data", "csv_multiline_nolabel", b"\x07" + b'text,text_b\r\n"line one\nline two",b\r\n')


# --- safetensors (interop/safetensors.h) --------------------------------------
def safetensors(tensors, metadata=None):
    header, buf = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(buf), len(buf) + len(raw)]}
        buf += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + buf


put("safetensors", "f32", safetensors([("a.weight", "F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
                                       ("a.bias", "F32", [2], struct.pack("<2f", 0.5, -0.5))], {"format": "pt"}))
put("safetensors", "mixed", safetensors([("h", "F16", [2], b"\x00\x3c\x00\xc0"), ("b", "BF16", [1], b"\x80\x3f"),
                                         ("d", "F64", [1], struct.pack("<d", 2.5)), ("i", "I64", [1], b"\x01" + b"\x00" * 7),
                                         ("e", "F32", [0], b"")]))
put("safetensors", "empty", safetensors([]))
print("seeds written under", CORPUS)
