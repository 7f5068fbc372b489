#!/usr/bin/env python3
"""Builds the real-page WARC input for bench/clean_e2e.sh (INPUT=realweb):
every distinct HTML page that real sites served and that ../shared/data holds,
written as Common Crawl-style WARC shards (one gzip member per record,
warcinfo + response records), so that smelt and datatrove read the same bytes.

    python3 bench/realweb_warc.py OUT_DIR [SHARED_DATA_DIR] [--shards 4]

Sources (their licences and origin: ../shared/data/PROVENANCE.md):
- the response records (HTTP 200, text/html) of the real WARC files under
  cc/ (Common Crawl excerpts, Internet Archive and wget crawls) and of
  ../shared/peers/data/samples (ClueWeb09 and CC-MAIN-2020-34 excerpts),
  their HTTP headers and payloads byte for byte;
- the saved pages of news/: Mozilla Readability's test pages (source.html),
  trafilatura's tests/cache and newspaper4k's tests/data/html, wrapped in a
  response record (HTTP 200, text/html, no charset: both tools detect it)
  under a stable https://<source>.invalid/<name> URL (the saved pages do
  not record where they were fetched from).
Pages are deduplicated by payload hash and ordered by SHA-256 of their URL,
then dealt round-robin onto the shards: the same files on every machine.
"""
import argparse
import glob
import gzip
import hashlib
import io
import os
import re
import sys


def warc_records(path):
    """(header text, body bytes) of each record of a WARC file (gzip per
    record, whole-file gzip or plain)."""
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)  # every member, in order
    pos = 0
    while True:
        start = raw.find(b"WARC/", pos)
        if start < 0:
            return
        end = raw.find(b"\r\n\r\n", start)
        if end < 0:
            return
        head = raw[start:end].decode("latin-1")
        m = re.search(r"(?im)^content-length:\s*(\d+)", head)
        length = int(m.group(1)) if m else 0
        yield head, raw[end + 4:end + 4 + length]
        pos = end + 4 + length


def field(head, name):
    m = re.search(r"(?im)^" + re.escape(name) + r":\s*(.*?)\s*$", head)
    return m.group(1) if m else None


def from_warcs(paths):
    for path in paths:
        for head, body in warc_records(path):
            if (field(head, "WARC-Type") or "").lower() != "response":
                continue
            split = body.find(b"\r\n\r\n")
            if split < 0:
                continue
            http = body[:split].decode("latin-1").lower()
            if not re.match(r"http/1\.[01] 200", http) or "text/html" not in http:
                continue
            url = field(head, "WARC-Target-URI") or ""
            yield url.strip("<>"), body  # the HTTP block as served


def http_block(payload):
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
            + str(len(payload)).encode() + b"\r\n\r\n" + payload)


def from_pages(shared):
    news = os.path.join(shared, "news")
    for page in sorted(glob.glob(os.path.join(news, "readability-test-pages", "*", "source.html"))):
        name = os.path.basename(os.path.dirname(page))
        yield f"https://readability-test-pages.invalid/{name}/", http_block(open(page, "rb").read())
    for page in sorted(glob.glob(os.path.join(news, "trafilatura-tests-cache", "*.html"))):
        yield f"https://trafilatura-tests.invalid/{os.path.basename(page)}", http_block(open(page, "rb").read())
    for page in sorted(glob.glob(os.path.join(news, "newspaper4k-0.9.6-tests-data", "html", "*.html"))):
        yield f"https://newspaper4k-tests.invalid/{os.path.basename(page)}", http_block(open(page, "rb").read())


def record(kind, headers, block):
    lines = [b"WARC/1.0", b"WARC-Type: " + kind.encode()]
    lines += [f"{k}: {v}".encode() for k, v in headers]
    lines += [b"Content-Length: " + str(len(block)).encode()]
    raw = b"\r\n".join(lines) + b"\r\n\r\n" + block + b"\r\n\r\n"
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as g:
        g.write(raw)
    return out.getvalue()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("shared", nargs="?", default=os.path.join(here, "..", "..", "shared", "data"))
    ap.add_argument("--shards", type=int, default=4)
    a = ap.parse_args()
    peers_samples = os.path.join(a.shared, "..", "peers", "data", "samples")
    warcs = sorted(glob.glob(os.path.join(a.shared, "cc", "*", "*.warc*")))
    warcs += sorted(glob.glob(os.path.join(peers_samples, "*.warc*")))
    warcs = [w for w in warcs if not re.search(r"\.(wet|wat)(\.gz)?$", w)]
    seen, pages = set(), []
    for url, block in list(from_warcs(warcs)) + list(from_pages(a.shared)):
        payload = block[block.find(b"\r\n\r\n") + 4:]
        digest = hashlib.sha256(payload).hexdigest()
        if digest in seen or len(payload) < 512:
            continue
        seen.add(digest)
        pages.append((hashlib.sha256(url.encode()).hexdigest(), url, block, digest))
    pages.sort()
    os.makedirs(a.out, exist_ok=True)
    shards = [[] for _ in range(a.shards)]
    for i, page in enumerate(pages):
        shards[i % a.shards].append(page)
    html_bytes = 0
    for n, shard in enumerate(shards):
        name = f"REALWEB-{n:05d}.warc.gz"
        with open(os.path.join(a.out, name), "wb") as f:
            f.write(record("warcinfo", [("WARC-Record-ID", f"<urn:uuid:realweb-{n:05d}>"),
                                        ("WARC-Filename", name), ("Content-Type", "application/warc-fields")],
                           b"software: smelt bench/realweb_warc.py\r\n"))
            for key, url, block, digest in shard:
                html_bytes += len(block)
                f.write(record("response", [
                    ("WARC-Target-URI", url),
                    ("WARC-Date", "2026-01-01T00:00:00Z"),
                    ("WARC-Record-ID", f"<urn:sha256:{key[:32]}>"),
                    ("WARC-Payload-Digest", f"sha256:{digest}"),
                    ("WARC-Identified-Payload-Type", "text/html"),  # as Common Crawl writes it
                    ("Content-Type", "application/http; msgtype=response"),
                ], block))
    print(f"{len(pages)} real pages ({html_bytes / 1e6:.1f} MB of HTTP responses) in {a.shards} shards -> {a.out}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
