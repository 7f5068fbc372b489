#!/usr/bin/env python3
"""Main-content extraction: smelt `extract` vs trafilatura and resiliparse.

  quality: pages with gold text, scored two ways
    * newspaper4k 0.9.6 tests/data (html/ + txt/ gold): token-level (bag of words)
      precision / recall / F1, per page, then the mean over pages (macro) and
      over all tokens (micro);
    * trafilatura tests/cache pages with the snippets of trafilatura's own
      evaluation (bench/data/trafilatura_evaldata.py): a 'with' snippet found
      is a true positive, missed a false negative; a 'without' snippet found a
      false positive, absent a true negative (as trafilatura's comparison.py);
      precision, recall, F1 and accuracy over all snippets.
  readability: Mozilla Readability's test pages, the 93 real ones (news,
    blog and reference pages saved from their sites; the 36 under 8 KB are
    hand-made tests of one feature each; ../shared/data/news/readability-test-pages), scored by
    bag of words against Readability.js's own extraction (expected.html: its
    output, not human gold, so the figures measure agreement with
    Readability), per page, macro and micro. The pages are split once, by a
    hash of their names, into a tuning half and a check half (split_part):
    rules may be tuned on the first; the second stays unseen and is reported
    beside it. Writes bench/results/extract_readability.json.
  speed: docs/s on one core, pages loaded into memory first (untimed); every
    extractor gets the raw bytes and decodes them itself (smelt: decode_html;
    trafilatura: its own decoding of bytes; resiliparse: detect_encoding +
    bytes_to_str), so decoding is timed for all three.

Run with the peers' venv: ~/.cache/smelt-peers/venv/bin/python bench/extract_bench.py quality|speed
  quality --only-smelt --snippets: smelt alone (any python; the results file is left as it is),
    listing every snippet it misses ('-') or wrongly keeps ('+'); SMELT_EXTRACT_BIN picks the binary.
Prints tables; writes the figures to bench/results/extract_quality.json / extract_speed.json
(scratch files under target/extract-bench/).
"""
import argparse
import collections
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data", "news")
PEERS = os.path.expanduser("~/.cache/smelt-peers")
OUT = os.path.join(REPO, "target", "extract-bench")  # scratch: page dumps, listings, texts
RESULTS = os.path.join(HERE, "results")  # the figures
SMELT = os.environ.get("SMELT_EXTRACT_BIN", os.path.join(REPO, "target", "release", "examples", "extract_pages"))
sys.path.insert(0, os.path.join(HERE, "data"))
sys.path.insert(0, PEERS)


# ---------------------------------------------------------------- extractors
def ex_traf_dt(html):
    from trafilatura import extract
    return extract(html, favor_precision=True, include_comments=False, deduplicate=True) or ""


def ex_traf_default(html):
    from trafilatura import extract
    return extract(html) or ""


def ex_resi_main(html):
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding
    return extract_plain_text(bytes_to_str(html, detect_encoding(html)), main_content=True)


PEER_EXTRACTORS = {
    "trafilatura(datatrove-args)": ex_traf_dt,
    "trafilatura(default)": ex_traf_default,
    "resiliparse(main_content)": ex_resi_main,
}


def reset_caches():
    try:
        from trafilatura.meta import reset_caches as r
        r()
    except Exception:
        pass


def smelt_texts(files):
    """{file: text} from the release example (one JSON line per page)."""
    if not os.path.exists(SMELT):
        raise SystemExit(f"{SMELT} missing: cargo build --release --example extract_pages")
    listing = os.path.join(OUT, "pages.txt")
    with open(listing, "w") as f:
        f.write("\n".join(files))
    res = subprocess.run([SMELT, "--list", listing], capture_output=True, check=True)
    out = {}
    for line in res.stdout.decode().splitlines():
        row = json.loads(line)
        out[row["file"]] = row["text"]
    return out


# ---------------------------------------------------------------- scoring
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\u0e00-\u0e7f\u1000-\u109f]")


def tokens(text):
    out = []
    for w in re.findall(r"\w+", text.lower()):
        if CJK.search(w):
            out.extend(w)  # scripts without spaces between words: characters
        else:
            out.append(w)
    return out


def bow_scores(pred, gold):
    p, g = collections.Counter(tokens(pred)), collections.Counter(tokens(gold))
    overlap = sum((p & g).values())
    np_, ng = sum(p.values()), sum(g.values())
    prec = overlap / np_ if np_ else 0.0
    rec = overlap / ng if ng else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"overlap": overlap, "pred": np_, "gold": ng, "p": prec, "r": rec, "f1": f1}


def norm(s):
    return " ".join(s.split())


def snippet_counts(text, with_, without):
    t = norm(text)
    tp = sum(norm(s) in t for s in with_)
    fp = sum(norm(s) in t for s in without)
    return {"tp": tp, "fn": len(with_) - tp, "fp": fp, "tn": len(without) - fp}


def prf(c):
    p = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
    r = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    acc = (c["tp"] + c["tn"]) / sum(c.values())
    return p, r, f, acc


# ---------------------------------------------------------------- quality
def gold_pages():
    base = os.path.join(SHARED, "newspaper4k-0.9.6-tests-data")
    pages = []
    for html in sorted(glob.glob(os.path.join(base, "html", "*.html"))):
        stem = os.path.basename(html)[:-5]
        txt = os.path.join(base, "txt", stem + ".txt")
        if os.path.exists(txt):
            gold = open(txt, encoding="utf-8", errors="replace").read()
            if gold.strip():
                pages.append((html, gold))
    return pages


def snippet_pages():
    from trafilatura_evaldata import EVAL
    base = os.path.join(SHARED, "trafilatura-tests-cache")
    return [(os.path.join(base, f), w, wo) for f, (w, wo) in sorted(EVAL.items()) if os.path.exists(os.path.join(base, f))]


def extract_all(files, only_smelt):
    """{extractor: {file: text}}: smelt, then each peer unless only_smelt."""
    if not only_smelt:
        import common  # noqa: F401  (offline environment for the peers)
    outputs = {"smelt extract": smelt_texts(files)}
    for name, fn in PEER_EXTRACTORS.items():
        if only_smelt:
            break
        reset_caches()
        outputs[name] = {f: fn(open(f, "rb").read()) for f in files}
    return outputs


def bow_summary(scores):
    """Macro (mean over pages) and micro (over all tokens) P/R/F1 of several pages' bow_scores."""
    tot = collections.Counter()
    for s in scores:
        tot.update({"overlap": s["overlap"], "pred": s["pred"], "gold": s["gold"]})
    mp, mr = tot["overlap"] / max(tot["pred"], 1), tot["overlap"] / max(tot["gold"], 1)
    return {
        "bow_macro_p": statistics.mean(s["p"] for s in scores),
        "bow_macro_r": statistics.mean(s["r"] for s in scores),
        "bow_macro_f1": statistics.mean(s["f1"] for s in scores),
        "bow_micro_p": mp, "bow_micro_r": mr, "bow_micro_f1": 2 * mp * mr / (mp + mr) if mp + mr else 0.0,
    }


def quality(args):
    gp, sp = gold_pages(), snippet_pages()
    outputs = extract_all([p for p, _ in gp] + [p for p, _, _ in sp], args.only_smelt)
    rows, per_page = [], {}
    for name, texts in outputs.items():
        bows = [bow_scores(texts[f], gold) for f, gold in gp]
        per_page[name] = {os.path.basename(f): round(s["f1"], 3) for (f, _), s in zip(gp, bows)}
        counts = collections.Counter()
        snip_fail = {}
        for f, w, wo in sp:
            c = snippet_counts(texts[f], w, wo)
            counts.update(c)
            if c["fn"] or c["fp"]:
                snip_fail[os.path.basename(f)] = c
        sp_, sr, sf, sa = prf(counts)
        rows.append({
            "extractor": name,
            "gold_pages": len(gp),
            **bow_summary(bows),
            "snippet_pages": len(sp), **dict(counts),
            "snip_p": sp_, "snip_r": sr, "snip_f1": sf, "snip_acc": sa,
            "snip_fail": snip_fail,
        })
    print(f"newspaper4k gold pages: {len(gp)}; trafilatura cache pages with snippets: {len(sp)}")
    print(f"{'extractor':30s} | {'BoW P':>6s} {'BoW R':>6s} {'BoW F1':>6s} (macro) | {'F1 micro':>8s} | {'snip P':>6s} {'snip R':>6s} {'snip F1':>7s} {'acc':>6s}")
    for r in rows:
        print(f"{r['extractor']:30s} | {r['bow_macro_p']:6.3f} {r['bow_macro_r']:6.3f} {r['bow_macro_f1']:6.3f}         | {r['bow_micro_f1']:8.3f} | "
              f"{r['snip_p']:6.3f} {r['snip_r']:6.3f} {r['snip_f1']:7.3f} {r['snip_acc']:6.3f}")
    if args.snippets:
        # Every snippet smelt gets wrong: '-' a 'with' snippet missed, '+' a 'without' one kept.
        t = {f: norm(x) for f, x in outputs["smelt extract"].items()}
        for f, w, wo in sp:
            bad = [("-", s) for s in w if norm(s) not in t[f]] + [("+", s) for s in wo if norm(s) in t[f]]
            for sign, s in bad:
                print(f"{sign} {os.path.basename(f)}: {s}")
    if args.verbose:
        for name in outputs:
            print(name, json.dumps(per_page[name]))
            r = next(x for x in rows if x["extractor"] == name)
            print("  snippet misses:", json.dumps(r["snip_fail"], ensure_ascii=False))
    if not args.only_smelt:  # a smelt-only run leaves the recorded figures as they are
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, "extract_quality.json"), "w") as f:
            json.dump({"rows": rows, "per_page_bow_f1": per_page}, f, indent=1, ensure_ascii=False)
    if args.dump:
        d = os.path.join(OUT, "texts")
        for name, texts in outputs.items():
            sub = os.path.join(d, re.sub(r"\W+", "_", name))
            os.makedirs(sub, exist_ok=True)
            for f, t in texts.items():
                with open(os.path.join(sub, os.path.basename(f) + ".txt"), "w") as g:
                    g.write(t)


# ---------------------------------------------------------------- readability
def split_part(name):
    """'tuning' or 'check': fixed by the page's directory name (SHA-256, first byte's parity)."""
    import hashlib
    return "tuning" if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else "check"


def html_fragment_text(fragment):
    """The text of an HTML fragment: tags separate words, entities decoded, scripts and styles left out."""
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.parts, self.skip = [], 0

        def handle_starttag(self, tag, attrs):
            self.skip += tag in ("script", "style")
            self.parts.append(" ")

        def handle_endtag(self, tag):
            if tag in ("script", "style") and self.skip > 0:
                self.skip -= 1
            self.parts.append(" ")

        def handle_data(self, data):
            if not self.skip:
                self.parts.append(data)

    t = Text()
    t.feed(fragment)
    t.close()
    return norm("".join(t.parts))


# Readability's test pages under this size are its hand-made tests of one feature each (3.8 KB
# and less); the real saved pages start at 10 KB.
READABILITY_MIN_BYTES = 8000


def readability_pages():
    """(name, source.html path, Readability's text) of every real test page (both files, 8 KB or more)."""
    base = os.path.join(SHARED, "readability-test-pages")
    pages = []
    for d in sorted(glob.glob(os.path.join(base, "*", ""))):
        name = os.path.basename(os.path.dirname(d))
        src, exp = os.path.join(d, "source.html"), os.path.join(d, "expected.html")
        if os.path.exists(src) and os.path.exists(exp) and os.path.getsize(src) >= READABILITY_MIN_BYTES:
            pages.append((name, src, html_fragment_text(open(exp, encoding="utf-8", errors="replace").read())))
    return pages


def readability(args):
    pages = readability_pages()
    outputs = extract_all([src for _, src, _ in pages], args.only_smelt)
    rows, per_page = [], {}
    for name, texts in outputs.items():
        scores = {pname: bow_scores(texts[src], gold) for pname, src, gold in pages}
        per_page[name] = {k: round(v["f1"], 3) for k, v in scores.items()}
        for part in ("tuning", "check", "all"):
            mine = [v for k, v in scores.items() if part == "all" or split_part(k) == part]
            rows.append({"extractor": name, "part": part, "pages": len(mine), **bow_summary(mine)})
    parts = collections.Counter(split_part(n) for n, _, _ in pages)
    print(f"Readability test pages of {READABILITY_MIN_BYTES} bytes or more: {len(pages)} ({parts['tuning']} tuning, {parts['check']} check); reference: Readability.js's expected.html")
    print(f"{'extractor':30s} {'part':7s} {'pages':>5s} | {'P':>6s} {'R':>6s} {'F1':>6s} (macro) | {'P':>6s} {'R':>6s} {'F1':>6s} (micro)")
    for r in rows:
        print(f"{r['extractor']:30s} {r['part']:7s} {r['pages']:5d} | {r['bow_macro_p']:6.3f} {r['bow_macro_r']:6.3f} {r['bow_macro_f1']:6.3f}         | "
              f"{r['bow_micro_p']:6.3f} {r['bow_micro_r']:6.3f} {r['bow_micro_f1']:6.3f}")
    if args.verbose:
        for name in outputs:
            print(name, json.dumps({k: v for k, v in per_page[name].items() if split_part(k) == "tuning"}))
    if not args.only_smelt:
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, "extract_readability.json"), "w") as f:
            json.dump({"split": {n: split_part(n) for n, _, _ in pages}, "rows": rows,
                       "per_page_bow_f1": per_page}, f, indent=1, ensure_ascii=False)


# ---------------------------------------------------------------- speed
def dump_warc_pages(pattern, dest, limit=None, seed=0):
    """Raw HTML payloads of 200 text/html responses (as the peers' harness selects them) into dest/."""
    import random
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    files = sorted(glob.glob(os.path.join(PEERS, "data", pattern)))
    pages = []
    for fp in files:
        with open(fp, "rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
                ptype = rec.headers.get("WARC-Identified-Payload-Type")
                ctype = (rec.http_headers.get("Content-Type") or "") if rec.http_headers else ""
                if ptype and ptype not in ("text/html", "application/xhtml+xml"):
                    continue
                if not ptype and ctype and "html" not in ctype.lower():
                    continue
                if rec.http_headers is not None and rec.http_headers.status_code != 200:
                    continue
                b = rec.reader.read()
                if not ptype and not ctype and b"<html" not in b[:4096].lower():
                    continue
                pages.append(b)
    if limit:
        random.Random(seed).shuffle(pages)
        pages = pages[:limit]
    os.makedirs(dest, exist_ok=True)
    out = []
    for i, b in enumerate(pages):
        p = os.path.join(dest, f"{i:05d}.html")
        with open(p, "wb") as f:
            f.write(b)
        out.append(p)
    return out


def speed(args):
    import common
    corpora = {
        "gold pages (newspaper4k + trafilatura cache)": [p for p, _ in gold_pages()] + [p for p, _, _ in snippet_pages()],
        "real-web WARC samples": dump_warc_pages("samples/*.warc*", os.path.join(OUT, "pages", "realweb")),
        f"DEBDOCS-SYNTH ({args.debdocs} pages)": dump_warc_pages("warc/*.warc.gz", os.path.join(OUT, "pages", "debdocs"), limit=args.debdocs),
    }
    rows = []
    for corpus, files in corpora.items():
        listing = os.path.join(OUT, "speed_pages.txt")
        with open(listing, "w") as f:
            f.write("\n".join(files))
        mb = sum(os.path.getsize(p) for p in files) / 1e6
        res = subprocess.run(["taskset", "-c", "0", SMELT, "--time", str(args.runs), "--list", listing], capture_output=True, check=True)
        s = json.loads(res.stdout)
        rows.append({"corpus": corpus, "extractor": "smelt extract", "docs": len(files), "html_mb": round(mb, 2),
                     "median_s": round(s["median_s"], 4), "docs_per_s": round(s["docs_per_s"], 1), "nonempty": s["nonempty"]})
        docs = [open(p, "rb").read() for p in files]
        for name in args.peers:
            fn = PEER_EXTRACTORS[name]
            fn(docs[0])  # warm-up (imports, lazy init)
            walls = []
            nonempty = 0
            for _ in range(args.runs):
                reset_caches()
                common.wait_idle() if hasattr(common, "wait_idle") else None
                t = time.perf_counter()
                nonempty = sum(bool(fn(d).strip()) for d in docs)
                walls.append(time.perf_counter() - t)
            med = statistics.median(walls)
            rows.append({"corpus": corpus, "extractor": name, "docs": len(docs), "html_mb": round(mb, 2),
                         "median_s": round(med, 4), "docs_per_s": round(len(docs) / med, 1), "nonempty": nonempty})
        for r in rows[-(1 + len(args.peers)):]:
            print(f"{r['corpus']:45s} {r['extractor']:30s} docs={r['docs']:6d} MB={r['html_mb']:7.2f} median={r['median_s']:8.3f}s docs/s={r['docs_per_s']:8.1f} nonempty={r['nonempty']}", flush=True)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "extract_speed.json"), "w") as f:
        json.dump({"rows": rows, "cpus": os.cpu_count()}, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality")
    q.add_argument("-v", "--verbose", action="store_true", help="per-page F1 and snippet misses")
    q.add_argument("--dump", action="store_true", help="write every extractor's texts under target/extract-bench/texts/")
    q.add_argument("--only-smelt", action="store_true", help="score smelt alone (no peers, results file untouched): for quick iteration")
    q.add_argument("--snippets", action="store_true", help="list every snippet smelt misses or wrongly keeps")
    r = sub.add_parser("readability")
    r.add_argument("-v", "--verbose", action="store_true", help="per-page F1 of the tuning half (the check half stays unseen)")
    r.add_argument("--only-smelt", action="store_true", help="score smelt alone (results file untouched)")
    s = sub.add_parser("speed")
    s.add_argument("--runs", type=int, default=3)
    s.add_argument("--debdocs", type=int, default=1500)
    s.add_argument("--peers", nargs="*", default=list(PEER_EXTRACTORS))
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    {"quality": quality, "readability": readability, "speed": speed}[a.cmd](a)


if __name__ == "__main__":
    main()
