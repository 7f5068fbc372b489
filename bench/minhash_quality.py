"""MinHash dedup quality on a planted set: real Reuters-21578 newswire stories
(../shared/data/news/reuters21578, 21,578 stories, SGML) as bases, one
near-duplicate planted per base with random word substitutions and deletions
at an edit rate drawn to aim at a Jaccard band, the true Jaccard of every
planted pair measured on the exact shingle sets (datatrove's
`get_shingles`: same normalisation, words and 5-gram hashes as smelt).
smelt runs `dedup_minhash` with `explain: true` (default bands 14 x 8), and
the clusters are read back from the version (`dup_cluster`, `dup_members`).

    bench/minhash_quality.sh
    python bench/minhash_quality.py WORK [BASES]

Reported by band of true Jaccard: planted pairs, and the share that smelt put
in one cluster (recall for the high bands; for the low ones the LSH
S-curve 1 - (1 - s^8)^14 predicts it). Precision: of the pairs (kept,
member) of smelt's clusters, the share with true Jaccard >= 0.6 and >= 0.5.
False-positive rate below 0.6: clustered pairs with true Jaccard < 0.6 over
all pairs of documents with Jaccard < 0.6 (all pairs of the set but the few
near-duplicates).
"""
import glob
import html
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time

PEERS = os.path.expanduser("~/.cache/smelt-peers")
sys.path.insert(0, PEERS)
import common  # noqa: E402,F401  (offline environment)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMELT = os.environ.get("SMELT_BIN", os.path.join(ROOT, "target", "release", "smelt"))
REUTERS = os.path.join(ROOT, "..", "shared", "data", "news", "reuters21578")
BANDS = [(0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0)]


def reuters_bodies():
    out = []
    for f in sorted(glob.glob(os.path.join(REUTERS, "reut2-*.sgm"))):
        raw = open(f, encoding="latin-1").read()
        for m in re.finditer(r'<REUTERS[^>]*NEWID="(\d+)"[^>]*>(.*?)</REUTERS>', raw, re.S):
            body = re.search(r"<BODY>(.*?)</BODY>", m.group(2), re.S)
            if body:
                text = html.unescape(body.group(1)).replace("\x03", "").strip()
                text = re.sub(r"\s*Reuter\s*$", "", text)
                out.append((f"r{m.group(1)}", text))
    return out


def plant(text, target, rng, vocab):
    """Substitute or delete words at the rate that makes 5-gram Jaccard about `target`."""
    s = 2 * target / (1 + target)  # share of shingles that survive
    p = 1 - s ** (1 / 5)
    words = text.split()
    out = []
    for w in words:
        if rng.random() < p:
            if rng.random() < 0.5:
                out.append(rng.choice(vocab))
            continue
        out.append(w)
    return " ".join(out)


def jaccard(a, b):
    return len(a & b) / len(a | b) if a or b else 1.0


def main():
    work = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "minhash-quality"))
    n_bases = int(sys.argv[2]) if len(sys.argv) > 2 else 2500
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
    import tempfile

    sig = MinhashDedupSignature(output_folder=tempfile.mkdtemp(), config=MinhashConfig())
    shingles = lambda t: set(sig.get_shingles(t).reshape(-1).tolist())  # noqa: E731

    rng = random.Random(20240601)
    bodies = [(i, t) for i, t in reuters_bodies() if len(t.split()) >= 100]
    # Bases: the first stories in corpus order (real near-duplicates among them stay, and count below).
    bases = []
    vocab = sorted({w for _, t in bodies[:3000] for w in t.split() if w.isalpha()})
    for i, t in bodies:
        if len(bases) == n_bases:
            break
        bases.append((i, t, shingles(t)))
    docs, planted = [], []
    for k, (i, t, sh) in enumerate(bases):
        lo, hi = BANDS[k % len(BANDS)]
        target = rng.uniform(lo, hi)
        v = plant(t, target, rng, vocab)
        vid = f"{i}-v"
        vsh = shingles(v)
        planted.append((i, vid, jaccard(sh, vsh)))
        docs.append((i, t, sh))
        docs.append((vid, v, vsh))
    order = list(range(len(docs)))
    rng.shuffle(order)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "in"))
    # Four input files, so that pairs cross splits.
    files = [open(os.path.join(work, "in", f"{j}.jsonl"), "w") for j in range(4)]
    for pos, d in enumerate(order):
        files[pos % 4].write(json.dumps({"id": docs[d][0], "text": docs[d][1]}) + "\n")
    for f in files:
        f.close()
    yaml = os.path.join(work, "quality.yaml")
    with open(yaml, "w") as f:
        f.write(f"""dataset: mhq
stages:
  docs: {{type: jsonl, paths: ["{os.path.join(work, 'in', '*.jsonl')}"]}}
  hashed: {{type: content_hash, inputs: [docs]}}
  unique: {{type: dedup_minhash, inputs: [hashed], explain: true}}
  out: {{type: parquet, inputs: [unique]}}
""")
    env = dict(os.environ, SMELT_DATA_DIR=os.path.join(work, "data"))
    t0 = time.perf_counter()
    p = subprocess.run([SMELT, "run", yaml, "--format", "json"], capture_output=True, text=True, env=env)
    if p.returncode:
        sys.exit(p.stderr[-3000:])
    wall = time.perf_counter() - t0
    out = os.path.join(work, "clusters.json")
    subprocess.run([SMELT, "sql", 'SELECT id, dup_cluster, dup_members FROM "mhq@1" WHERE dup_cluster IS NOT NULL',
                    "--format", "json", "--output", out], check=True, env=env, capture_output=True)
    cluster_of, clustered_pairs = {}, []
    for r in json.load(open(out)):
        cluster_of[r["id"]] = r["dup_cluster"]
        for m in r["dup_members"] or []:
            cluster_of[m["id"]] = r["dup_cluster"]
            clustered_pairs.append((r["id"], m["id"]))
    sh_of = {d[0]: d[2] for d in docs}
    rows = []
    for lo, hi in BANDS:
        pairs = [x for x in planted if lo <= x[2] < hi or (hi == 1.0 and x[2] == 1.0)]
        found = sum(1 for a, b, _ in pairs if a in cluster_of and cluster_of.get(a) == cluster_of.get(b))
        s = (lo + hi) / 2
        rows.append({"band": f"{lo:.1f}-{hi:.1f}", "planted_pairs": len(pairs), "clustered": found,
                     "share_clustered": round(found / len(pairs), 4) if pairs else None,
                     "lsh_curve_at_mid": round(1 - (1 - s ** 8) ** 14, 3)})
    below = [x for x in planted if x[2] < 0.5]
    true_j = [jaccard(sh_of[a], sh_of[b]) for a, b in clustered_pairs]
    n = len(docs)
    near_pairs_ge_06 = sum(1 for x in planted if x[2] >= 0.6)
    low_pairs_clustered = sum(1 for j in true_j if j < 0.6)
    all_low_pairs = n * (n - 1) // 2 - near_pairs_ge_06
    hi_rows = [r for r in rows if r["band"] in ("0.8-0.9", "0.9-1.0")]
    recall_08 = sum(r["clustered"] for r in hi_rows) / max(1, sum(r["planted_pairs"] for r in hi_rows))
    fig = {
        "input": f"{len(bases)} Reuters-21578 stories (>= 100 words) + one planted near-duplicate each",
        "documents": n, "smelt_wall_s": round(wall, 2), "bands": rows,
        "planted_below_0.5": len(below),
        "recall_at_jaccard_ge_0.8": round(recall_08, 4),
        "clustered_pairs_kept_member": len(true_j),
        "precision_j_ge_0.6": round(sum(j >= 0.6 for j in true_j) / len(true_j), 4) if true_j else None,
        "precision_j_ge_0.5": round(sum(j >= 0.5 for j in true_j) / len(true_j), 4) if true_j else None,
        "clustered_pairs_below_0.6": low_pairs_clustered,
        "false_positive_rate_below_0.6_all_pairs": low_pairs_clustered / all_low_pairs,
    }
    print(f"input: {fig['input']} = {n} documents; smelt wall {fig['smelt_wall_s']} s")
    print("| true 5-gram Jaccard | planted pairs | put in one cluster | share | LSH curve at band middle |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['band']} | {r['planted_pairs']} | {r['clustered']} | {r['share_clustered']} | {r['lsh_curve_at_mid']} |")
    print(f"recall at Jaccard >= 0.8: {fig['recall_at_jaccard_ge_0.8']}; "
          f"precision of (kept, member) pairs: {fig['precision_j_ge_0.6']} with J >= 0.6, {fig['precision_j_ge_0.5']} with J >= 0.5 "
          f"({len(true_j)} pairs); false-positive rate below 0.6 over all pairs: "
          f"{low_pairs_clustered}/{all_low_pairs} = {fig['false_positive_rate_below_0.6_all_pairs']:.2e}")
    with open(os.path.join(work, "figures.json"), "w") as f:
        json.dump(fig, f, indent=1)
    print(f"figures: {os.path.join(work, 'figures.json')}")


if __name__ == "__main__":
    main()
