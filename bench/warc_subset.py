#!/usr/bin/env python3
"""Copy the first N response records (with the records around them) of each
WARC file into a new file, byte for byte: both smelt and the peer then read
exactly the same documents.

    python3 bench/warc_subset.py --responses 250 OUT_DIR IN.warc.gz...

Works on Common Crawl-style files (one gzip member per record): members are
copied unchanged until the N-th response record and the members that follow
it up to the next request/response (its metadata record).
"""
import argparse
import os
import zlib


def members(data):
    """Yields (raw member bytes, decompressed head) per gzip member."""
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        head = d.decompress(data[pos:pos + (1 << 16)], 4096)
        # find the member's end: decompress fully from pos
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        d.decompress(data[pos:])
        used = len(data) - pos - len(d.unused_data)
        yield data[pos:pos + used], head
        pos += used


def warc_type(head):
    for line in head.split(b"\r\n")[:30]:
        if line.lower().startswith(b"warc-type:"):
            return line.split(b":", 1)[1].strip().decode()
    return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--responses", type=int, required=True)
    ap.add_argument("out")
    ap.add_argument("inputs", nargs="+")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    total = 0
    for path in a.inputs:
        data = open(path, "rb").read()
        out, n = [], 0
        for raw, head in members(data):
            t = warc_type(head)
            if t in ("request", "response") and n >= a.responses:
                break
            if t == "response":
                n += 1
            out.append(raw)
        with open(os.path.join(a.out, os.path.basename(path)), "wb") as f:
            f.write(b"".join(out))
        total += n
    print(f"{total} responses in {len(a.inputs)} files -> {a.out}")


if __name__ == "__main__":
    main()
