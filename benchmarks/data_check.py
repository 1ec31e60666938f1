"""Data check benchmark (issue 3): ftci's duplicate stages at scale vs a datasketch reference.

Generates N synthetic chat records (default 1,000,000) with planted defects: exact duplicates
(case/space variants), near-duplicates (one word replaced, inserted or deleted in a 30-80 word
input), conflicts (same input, another answer) and train -> test leaks (exact or edited copies
pinned to test; 10% of the other records are pinned to test, as a user's test file would be).

Measures, each part in a fresh process (so peak RSS is its own):
  1. ftci at N: every stage of this issue over one CheckContext -- normalise, near-duplicate
     clusters (shingle + MinHash + LSH + exact Jaccard), exact_duplicates, near_duplicates,
     conflicts, assign_splits, leakage -- seconds, records/s, peak RSS.
  2. ftci and 3. datasketch (`MinHash.bulk` + `MinHashLSH`, the same word 3-gram shingles, the
     same threshold and band shape, candidates verified by exact Jaccard) on the same corpus of
     --reference-n records (default 200,000: datasketch needs ~11 min for 1M here; pass
     --reference-n 1000000 to run it at full size): near-duplicate and leakage detection.
  4. with --engines: MinHash engines behind the same LSH + verification (numpy mod 2^32 as
     ftci ships, numpy mod 2^61-1 as datasketch computes it, rensa digest matrices).
Precision = reported pairs whose exact Jaccard (Python sets, independent of ftci) >= threshold;
recall = planted pairs with Jaccard >= threshold that end up in one cluster / finding.

Targets: near-duplicate stage >= 3x faster than datasketch at precision and recall >= 0.95;
all ftci stages at 1M <= 120 s with peak RSS <= 4 GiB.
Run:  .venv/bin/python benchmarks/data_check.py [--n N] [--reference-n M] [--engines] [--json]
Exit status: 0 every target met, 1 a target missed.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

THRESHOLD = 0.8
TARGET_SPEEDUP, TARGET_QUALITY, TARGET_SECONDS, TARGET_RSS_GIB = 3.0, 0.95, 120.0, 4.0


@dataclass
class Corpus:
    records: list[Any]
    near_pairs: list[tuple[int, int]] = field(default_factory=list)  # (base, edited copy)
    leak_pairs: list[tuple[int, int]] = field(default_factory=list)  # (test copy, train base)


def make_corpus(n: int, seed: int = 0) -> Corpus:
    """n records: 90% distinct, 3% exact copies, 5% edited copies, 1% conflicts, 1% leaks."""
    from ftci.data.records import Record

    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocabulary = sorted({"".join(rng.choice(letters, rng.integers(2, 11))) for _ in range(60_000)})
    cdf = np.cumsum(1.0 / (np.arange(len(vocabulary)) + 10.0))
    cdf /= cdf[-1]

    def sentences(lengths: np.ndarray) -> list[str]:
        words = np.searchsorted(cdf, rng.random(int(lengths.sum())))
        flat = [vocabulary[w] for w in words.tolist()]
        ends = np.cumsum(lengths).tolist()
        return [" ".join(flat[end - size:end]) for end, size in zip(ends, lengths.tolist(),
                                                                    strict=True)]

    counts = {kind: int(n * share) for kind, share in
              (("exact", 0.03), ("near", 0.05), ("conflict", 0.01), ("leak", 0.01))}
    n_base = n - sum(counts.values())
    inputs: list[str] = []
    outputs: list[str] = []
    for start in range(0, n_base, 100_000):
        size = min(100_000, n_base - start)
        inputs += sentences(rng.integers(12, 81, size))
        outputs += sentences(rng.integers(5, 41, size))
    splits = np.where(rng.random(n_base) < 0.1, "test", "train").tolist()
    corpus = Corpus(records=[])
    # 30+ words: one edited word keeps word 3-gram Jaccard >= 0.8 (at least 26/32)
    long_ones = np.flatnonzero(np.array([t.count(" ") + 1 for t in inputs]) >= 30)

    def edit(text: str) -> str:
        words = text.split()
        at, kind = int(rng.integers(1, len(words) - 1)), int(rng.integers(3))
        new = vocabulary[int(rng.integers(len(vocabulary)))]
        if kind == 0:
            words[at] = new
        elif kind == 1:
            words.insert(at, new)
        else:
            del words[at]
        return " ".join(words)

    for base in rng.choice(n_base, counts["exact"]).tolist():
        inputs.append(inputs[base].upper() if rng.random() < 0.5 else "  " + inputs[base])
        outputs.append(outputs[base])
        splits.append(splits[base])
    for base in rng.choice(long_ones, counts["near"]).tolist():
        corpus.near_pairs.append((base, len(inputs)))
        inputs.append(edit(inputs[base]))
        outputs.append(outputs[base])
        splits.append(splits[base])
    for base in rng.choice(n_base, counts["conflict"]).tolist():
        inputs.append(inputs[base].lower())
        outputs.append(sentences(rng.integers(5, 41, 1))[0])
        splits.append(splits[base])
    train_long = [i for i in long_ones.tolist() if splits[i] == "train"]
    for base in rng.choice(train_long, counts["leak"]).tolist():
        corpus.leak_pairs.append((len(inputs), base))
        inputs.append(inputs[base] if rng.random() < 0.5 else edit(inputs[base]))
        outputs.append(outputs[base])
        splits.append("test")
    for index, (text, answer, split) in enumerate(zip(inputs, outputs, splits, strict=True)):
        corpus.records.append(Record(
            messages=[{"role": "user", "content": text}, {"role": "assistant", "content": answer}],
            id=f"r{index}", explicit_id=True, split=split, file=f"data/{split}.jsonl",
            line=index + 1))
    return corpus


# --- evaluation: an exact Jaccard independent of ftci's hashing ---------------------------

def shingles(text: str) -> set[tuple[str, ...]]:
    from ftci.data.records import normalise_text

    words = normalise_text(text).split()  # generated text: ASCII words, single spaces
    k = min(3, len(words))
    return {tuple(words[i:i + k]) for i in range(len(words) - k + 1)}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 0.0


def quality(texts: list[str], reported: list[tuple[int, int]], groups: list[list[int]],
            planted: list[tuple[int, int]]) -> dict[str, float]:
    """Precision over reported pairs, recall over planted pairs >= THRESHOLD found together."""
    good = sum(jaccard(texts[a], texts[b]) >= THRESHOLD for a, b in reported)
    group_of = {i: g for g, members in enumerate(groups) for i in members}
    due = [(a, b) for a, b in planted if jaccard(texts[a], texts[b]) >= THRESHOLD]
    found = sum(a in group_of and group_of[a] == group_of.get(b) for a, b in due)
    return {"precision": good / len(reported) if reported else 1.0,
            "recall": found / len(due) if due else 1.0, "pairs": len(reported),
            "planted_due": len(due), "planted": len(planted)}


class Meter:
    """Seconds and peak RSS of each stage (VmHWM, reset between stages via clear_refs)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    @staticmethod
    def _status(key: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
        return float("nan")

    def __call__(self, name: str, n: int, step: Callable[[], Any]) -> Any:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        start = time.perf_counter()
        result = step()
        seconds = time.perf_counter() - start
        self.rows.append({"stage": name, "seconds": seconds, "records_per_s": n / seconds,
                          "peak_rss_mib": self._status("VmHWM")})
        return result


def run_ftci(n: int, full: bool) -> dict[str, Any]:
    from ftci.config.schema import FtciConfig
    from ftci.data.checks import conflicts, duplicates, leakage, near_duplicates
    from ftci.data.findings import CheckContext
    from ftci.data.minhash import clusters_from_edges, near_duplicate_pairs, shingle_sets
    from ftci.data.split import assign_splits

    corpus = make_corpus(n)
    records = corpus.records
    config = FtciConfig.model_validate({"project": {"name": "bench"}, "task": {"type": "chat"},
                                        "base_model": "starter:smollm2-135m-instruct"})
    ctx = CheckContext(records=records, config=config, root=Path("."))
    meter = Meter()
    baseline = Meter._status("VmRSS")
    fields = meter("normalise inputs+outputs", n, lambda: duplicates.normalised_fields(ctx))

    def near() -> tuple[np.ndarray, np.ndarray]:
        edges = near_duplicate_pairs(shingle_sets(fields.inputs, "word", normalised=True),
                                     THRESHOLD)
        ctx.near_duplicate_clusters = clusters_from_edges(*edges)
        return edges

    left, right = meter("near-duplicate clusters", n, near)
    if full:
        meter("exact_duplicates", n, lambda: duplicates.check(ctx))
        meter("near_duplicates findings", n, lambda: near_duplicates.check(ctx))
        meter("conflicts", n, lambda: conflicts.check(ctx))
    ctx.splits = meter("assign_splits", n, lambda: assign_splits(
        records, config.data.split, ctx.near_duplicate_clusters))
    leaks = meter("leakage", n, lambda: leakage.check(ctx))
    texts = [r.input_text() for r in records]
    index = {r.id: i for i, r in enumerate(records)}
    leak_pairs = [(index[p["held_out"]], index[p["train"]]) for f in leaks
                  for p in f.details["pairs"]]
    leak_groups = [[index[ref.id] for ref in f.records] for f in leaks]
    clusters = ctx.near_duplicate_clusters or []
    return {"n": n, "stages": meter.rows, "baseline_rss_mib": baseline,
            "near": quality(texts, list(zip(left.tolist(), right.tolist(), strict=True)),
                            clusters, corpus.near_pairs),
            "leak": quality(texts, leak_pairs, leak_groups, corpus.leak_pairs)}


def run_datasketch(n: int) -> dict[str, Any]:
    from datasketch import MinHash, MinHashLSH

    from ftci.data.minhash import NUM_PERM, clusters_from_edges, lsh_shape, normalise_many

    corpus = make_corpus(n)
    records = corpus.records
    texts = [r.input_text() for r in records]
    meter = Meter()
    params = lsh_shape(THRESHOLD)
    state: dict[str, Any] = {}

    def verified(pairs: set[tuple[int, int]]) -> list[tuple[int, int]]:
        sets = state["sets"]
        return sorted((a, b) for a, b in pairs
                      if len(sets[a] & sets[b]) / len(sets[a] | sets[b]) >= THRESHOLD)

    def near() -> list[tuple[int, int]]:
        sets = state["sets"] = []
        for text in normalise_many(texts):
            words = text.split()
            k = min(3, len(words))
            sets.append({" ".join(words[i:i + k]).encode() for i in range(len(words) - k + 1)})
        state["sketches"] = sketches = MinHash.bulk(sets, num_perm=NUM_PERM)
        lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, params=params)
        with lsh.insertion_session() as session:
            for i, sketch in enumerate(sketches):
                if sets[i]:
                    session.insert(i, sketch)
        return verified({(min(i, j), max(i, j)) for i, sketch in enumerate(sketches)
                         if sets[i] for j in lsh.query(sketch) if j != i})

    def leaks() -> list[tuple[int, int]]:
        sets, sketches = state["sets"], state["sketches"]
        lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, params=params)
        with lsh.insertion_session() as session:
            for i, record in enumerate(records):
                if record.split == "train" and sets[i]:
                    session.insert(i, sketches[i])
        candidates = {(i, j) for i, record in enumerate(records)
                      if record.split != "train" and sets[i] for j in lsh.query(sketches[i])}
        return verified(candidates)

    pairs = meter("near-duplicate pairs", n, near)
    leak_pairs = meter("leakage", n, leaks)
    def groups(found: list[tuple[int, int]]) -> list[list[int]]:
        return clusters_from_edges([a for a, _ in found], [b for _, b in found])

    return {"n": n, "stages": meter.rows,
            "near": quality(texts, pairs, groups(pairs), corpus.near_pairs),
            "leak": quality(texts, leak_pairs, groups(leak_pairs), corpus.leak_pairs)}


def run_engines(n: int) -> list[dict[str, Any]]:
    """MinHash engines on the same word 3-gram sets, then the same LSH + exact verification."""
    from datasketch import MinHash
    from rensa import RMinHash

    from ftci.data import minhash as mh

    corpus = make_corpus(n)
    texts = [r.input_text() for r in corpus.records]
    sets = mh.shingle_sets(texts, "word")
    ids = np.flatnonzero(sets.counts > 0)
    flat = sets.hashes[mh._ragged_index(sets.offsets[ids], sets.counts[ids])]
    bounds = mh._offsets(sets.counts[ids])

    def mod_prime() -> np.ndarray:  # datasketch's arithmetic, vectorised like ftci's
        rng = np.random.default_rng(mh.SEED)
        prime = np.uint64((1 << 61) - 1)
        a = rng.integers(1, (1 << 61) - 1, mh.NUM_PERM, dtype=np.uint64)[:, None]
        b = rng.integers(0, (1 << 61) - 1, mh.NUM_PERM, dtype=np.uint64)[:, None]
        out = np.empty((ids.size, mh.NUM_PERM), np.uint32)
        for first in range(0, ids.size, 128):
            last = min(first + 128, ids.size)
            x = flat[bounds[first]: bounds[last]].astype(np.uint64)
            values = ((a * x + b) % prime) & np.uint64(0xFFFFFFFF)
            out[first:last] = np.minimum.reduceat(
                values, bounds[first:last] - bounds[first], axis=1).T
        return out

    rensa_matrix: list[Any] = []
    byte_sets = [{" ".join(gram).encode() for gram in shingles(texts[i])} for i in ids.tolist()]
    engines: list[tuple[str, Callable[[], Any], Callable[[Any], np.ndarray]]] = [
        ("numpy mod 2^32 (ftci)", lambda: mh.minhash_signatures(sets, ids), lambda m: m),
        ("numpy (a*h+b) mod 2^61-1", mod_prime, lambda m: m),
        ("rensa 0.5 RMinHash digest matrix", lambda: rensa_matrix.append(
            RMinHash.digest_matrix_from_flat_token_hashes(flat.astype(np.uint64),
                                                          bounds.astype(np.uint64),
                                                          mh.NUM_PERM, mh.SEED)),
         lambda _: np.array(rensa_matrix.pop().to_rows(), np.uint32)),  # no buffer export
        ("datasketch 2.0 MinHash.bulk", lambda: MinHash.bulk(byte_sets, num_perm=mh.NUM_PERM),
         lambda m: np.array([x.hashvalues for x in m], np.uint32)),
    ]
    rows = []
    for name, sketch, export in engines:
        start = time.perf_counter()
        made = sketch()
        sketch_s = time.perf_counter() - start
        start = time.perf_counter()
        signatures = np.zeros((sets.counts.size, mh.NUM_PERM), np.uint32)
        signatures[ids] = export(made)
        export_s = time.perf_counter() - start
        start = time.perf_counter()
        left, right = mh.near_duplicate_pairs(
            sets, THRESHOLD, sign=lambda _s, which, _p, _seed, known=signatures: known[which])
        lsh_s = time.perf_counter() - start
        pairs = list(zip(left.tolist(), right.tolist(), strict=True))
        rows.append({"engine": name, "n": n, "sketch_s": sketch_s, "export_s": export_s,
                     "lsh_and_verify_s": lsh_s,
                     **quality(texts, pairs, mh.clusters_from_edges(left, right),
                               corpus.near_pairs)})
    return rows


def in_child(function: Callable[..., Any], *args: Any) -> Any:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def stage_seconds(run: dict[str, Any], prefix: str) -> float:
    return sum(r["seconds"] for r in run["stages"] if r["stage"].startswith(prefix))


def verdicts(full: dict[str, Any], same: dict[str, Any], reference: dict[str, Any]
             ) -> dict[str, bool]:
    total = stage_seconds(full, "")
    peak = max(row["peak_rss_mib"] for row in full["stages"])
    speedup = stage_seconds(reference, "near-duplicate") / stage_seconds(same, "near-duplicate")
    quality_ok = all(run[kind][metric] >= TARGET_QUALITY for run in (full, same)
                     for kind in ("near", "leak") for metric in ("precision", "recall"))
    return {
        f"near-dup >= {TARGET_SPEEDUP:g}x datasketch at P, R >= {TARGET_QUALITY} "
        f"({speedup:.1f}x)": speedup >= TARGET_SPEEDUP and quality_ok,
        f"all stages at {full['n']:,} <= {TARGET_SECONDS:g} s ({total:.1f} s)":
            total <= TARGET_SECONDS,
        f"peak RSS <= {TARGET_RSS_GIB:g} GiB ({peak / 1024:.2f} GiB)":
            peak <= TARGET_RSS_GIB * 1024,
    }


def render(result: dict[str, Any]) -> str:
    full, same, reference = result["full"], result["ftci_at_reference_n"], result["datasketch"]
    total = stage_seconds(full, "")
    peak = max(row["peak_rss_mib"] for row in full["stages"])
    out = [f"{result['date']}, Python {result['python']}, {result['cpus']} CPUs, "
           f"{result['memory_gib']:.0f} GiB\n",
           f"ftci stages at {full['n']:,} records (RSS after generating the corpus: "
           f"{full['baseline_rss_mib']:,.0f} MiB)\n",
           table(["stage", "seconds", "records/s", "peak RSS MiB"], [
               [r["stage"], f"{r['seconds']:.1f}", f"{r['records_per_s']:,.0f}",
                f"{r['peak_rss_mib']:,.0f}"] for r in full["stages"]] + [
               ["**all stages**", f"{total:.1f}", f"{full['n'] / total:,.0f}", f"{peak:,.0f}"]]),
           ""]
    rows = []
    for name, run in (("ftci", full), ("ftci", same), ("datasketch reference", reference)):
        near_s, leak_s = stage_seconds(run, "near-duplicate"), stage_seconds(run, "leakage")
        rows.append([name, f"{run['n']:,}", f"{near_s:.1f}", f"{run['n'] / near_s:,.0f}",
                     f"{leak_s:.1f}", f"{max(r['peak_rss_mib'] for r in run['stages']):,.0f}",
                     *(f"{run[kind][metric]:.4f}" for kind in ("near", "leak")
                       for metric in ("precision", "recall"))])
    out.append(table(["implementation", "records", "near-dup s", "records/s", "leakage s",
                      "peak RSS MiB", "near P", "near R", "leak P", "leak R"], rows))
    ratio = stage_seconds(reference, "near-duplicate") / stage_seconds(same, "near-duplicate")
    leak_ratio = stage_seconds(reference, "leakage") / max(stage_seconds(same, "leakage"), 1e-9)
    out.append(f"\nspeed ratio at {same['n']:,} records (datasketch s / ftci s): "
               f"near-duplicates {ratio:.1f}x, leakage {leak_ratio:.1f}x\n")
    if result["engines"]:
        out.append(table(["MinHash engine", "texts", "sketch s", "to numpy s", "LSH+verify s",
                          "P", "R"], [
            [e["engine"], f"{e['n']:,}", f"{e['sketch_s']:.2f}", f"{e['export_s']:.2f}",
             f"{e['lsh_and_verify_s']:.2f}", f"{e['precision']:.4f}", f"{e['recall']:.4f}"]
            for e in result["engines"]]) + "\n")
    out += [f"{name}: {'PASS' if ok else 'FAIL'}" for name, ok in result["verdicts"].items()]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--reference-n", type=int, default=200_000)
    parser.add_argument("--engines", action="store_true", help="also compare MinHash engines")
    parser.add_argument("--json", action="store_true", help="print raw numbers as JSON")
    args = parser.parse_args()
    import psutil

    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "cpus": psutil.cpu_count(),
        "memory_gib": psutil.virtual_memory().total / 2**30,
        "full": in_child(run_ftci, args.n, True),
        "ftci_at_reference_n": in_child(run_ftci, args.reference_n, False),
        "datasketch": in_child(run_datasketch, args.reference_n),
        "engines": in_child(run_engines, min(args.reference_n, 100_000)) if args.engines else [],
    }
    result["verdicts"] = verdicts(result["full"], result["ftci_at_reference_n"],
                                  result["datasketch"])
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0 if all(result["verdicts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
