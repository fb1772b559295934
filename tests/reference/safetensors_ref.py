#!/usr/bin/env python3
"""An independent reader of the safetensors format (stdlib only).

Written from the format description in huggingface/safetensors' README, not
from our C++ code, so that tests/unit/interop/safetensors_test.cc can check
that files we write are read the same way by a second implementation.

Usage: safetensors_ref.py FILE
Prints one line per tensor, in data order:
    NAME<TAB>DTYPE<TAB>D0,D1,...<TAB>CRC-32 OF ITS BYTES (8 hex digits)<TAB>SUM OF ITS VALUES (F32 only, repr)
then "metadata<TAB>{json}". Exits 1 with a message on any violation.
"""
import json
import struct
import sys
import zlib

SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
         "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}


def fail(message):
    print("safetensors_ref: " + message, file=sys.stderr)
    sys.exit(1)


def no_duplicates(pairs):
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        fail("duplicate key in header")
    return dict(pairs)


def main(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        fail("file shorter than 8 bytes")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        fail("header length past end of file")
    header = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=no_duplicates)
    if not isinstance(header, dict):
        fail("header is not an object")
    metadata = header.pop("__metadata__", {})
    buffer = data[8 + n:]
    entries = sorted(header.items(), key=lambda item: tuple(item[1]["data_offsets"]))
    position = 0
    lines = []
    for name, info in entries:
        dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in SIZES:
            fail("unknown dtype " + dtype)
        count = 1
        for dim in shape:
            if not isinstance(dim, int) or dim < 0:
                fail("bad shape of " + name)
            count *= dim
        if begin != position or end - begin != count * SIZES[dtype]:
            fail("bad data_offsets of " + name)
        position = end
        chunk = buffer[begin:end]
        total = repr(sum(struct.unpack("<%df" % count, chunk))) if dtype == "F32" else "-"
        lines.append("%s\t%s\t%s\t%s\t%s" % (name, dtype, ",".join(map(str, shape)),
                                             "%08x" % zlib.crc32(chunk), total))
    if position != len(buffer):
        fail("tensors cover %d bytes of a %d-byte buffer" % (position, len(buffer)))
    print("\n".join(lines))
    print("metadata\t" + json.dumps(metadata, sort_keys=True))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        fail("usage: safetensors_ref.py FILE")
    main(sys.argv[1])
