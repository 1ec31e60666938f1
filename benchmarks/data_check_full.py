"""The whole `ftci data check` on N synthetic records, as a user runs it: one CLI process.

Writes the corpus of `data_check.py` (planted duplicates, near-duplicates, conflicts, leaks)
as a fine-tune repository (JSONL, train and pinned test files), then runs
`ftci --json data check --no-tokenizer` and reports wall time, peak RSS, records/s and the
seconds per stage that ftci itself reports. Target: 1,000,000 records in <= 120 s and <= 4 GB.

    .venv/bin/python benchmarks/data_check_full.py [--n 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_check import make_corpus  # noqa: E402

CONFIG = """\
project: {name: bench}
task: {type: chat}
base_model: starter:smollm2-135m-instruct
data:
  sources:
    - {path: data/train.jsonl, split: train}
    - {path: data/test.jsonl, split: test}
train: {max_seq_len: 512}
eval: {gates: [{metric: rouge_l, not_worse_than: baseline}]}
deploy: {target: vllm}
"""


def write_repo(root: Path, n: int) -> int:
    corpus = make_corpus(n)
    (root / "data").mkdir(parents=True)
    (root / "ftci.yaml").write_text(CONFIG)
    handles = {split: open(root / "data" / f"{split}.jsonl", "w", encoding="utf-8")
               for split in ("train", "test")}
    for record in corpus.records:
        row = {"id": record.id, "messages": record.messages}
        handles[record.split or "train"].write(json.dumps(row) + "\n")
    for handle in handles.values():
        handle.close()
    return sum((root / "data" / f"{s}.jsonl").stat().st_size for s in ("train", "test"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="write the repository here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch) / "repo"
        size = write_repo(root, args.n)
        ftci = Path(sys.executable).parent / "ftci"
        started = time.perf_counter()
        done = subprocess.run([str(ftci), "--json", "data", "check", "-c", str(root),
                               "--no-tokenizer"], capture_output=True, text=True)
        wall = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if done.returncode not in (0, 1):
        print(done.stderr[-2000:])
        return 2
    report = json.loads(done.stdout)
    print(f"ftci data check, {args.n:,} records ({size / 1e6:.0f} MB JSONL), 2-core CPU")
    print("| measure | value | target |\n|---|---|---|")
    print(f"| wall s | {wall:.1f} | <= 120 |")
    print(f"| peak RSS MB | {peak_mb:,.0f} | <= 4000 |")
    print(f"| records/s | {args.n / wall:,.0f} | |")
    print(f"| verdict / findings | {report['verdict']} / {len(report['findings']):,} | |")
    print("\n| stage | s |\n|---|---|")
    for stage, seconds in report["seconds"].items():
        print(f"| {stage} | {seconds:.1f} |")
    ok = wall <= 120 and peak_mb <= 4000
    print(f"\n1M full check within 120 s and 4 GB: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
