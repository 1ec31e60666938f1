"""CLI start-up benchmark: how long `ftci` takes before it does anything useful.

Measures, side by side in one run, the wall time of fresh subprocesses of:

  1. `python -c pass`              the interpreter floor (this venv's python)
  2. `ftci --help`                 the console script next to sys.executable
  3. `ftci config validate CFG`    CFG made once by `ftci init TMP/repo --task classification`
  4. `lm_eval --help`              for scale; skipped with a note if lm-eval is not installed

Each command gets one warm-up run, then N timed runs (lm_eval fewer: max(5, N // 4)),
interleaved round-robin so machine noise hits every command alike. Every run must exit 0.
HF_HUB_OFFLINE=1 is set for all of them. It also runs `python -X importtime -m ftci --help`
and reports the cumulative import time of ftci.cli, the top 5 self-time imports, and
whether any heavy library (torch, transformers, ...) got imported.

Targets: (a) `ftci --help` median within 0.25 s of `python -c pass`;
         (b) `lm_eval --help` median at least 10x the `ftci --help` median.

Run:  .venv/bin/python benchmarks/cli_startup.py [--runs N] [--json]
Exit status: 0 all checks pass, 1 a target failed or a heavy module was imported,
2 a command failed. Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "datasets", "vllm", "lm_eval")
TARGET_A_S = 0.25
TARGET_B_RATIO = 10.0
BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def die(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def run_once(argv: list[str]) -> float:
    """Wall time of one fresh subprocess; aborts (exit 2) if it does not exit 0."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        die(f"`{' '.join(argv)}` exited {proc.returncode}:\n"
            f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


def stats(samples: list[float]) -> dict[str, float]:
    deciles = statistics.quantiles(samples, n=10, method="inclusive")
    return {"median": statistics.median(samples), "p10": deciles[0], "p90": deciles[-1],
            "n": len(samples)}


def machine() -> dict[str, object]:
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {"nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "mem_gib": mem_gib, "platform": platform.platform(),
            "python": platform.python_version(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


@dataclass
class ImportProfile:
    ftci_cli_cumulative_s: float
    modules_imported: int
    top_self: list[tuple[str, float, float]]  # (module, self s, cumulative s)
    heavy_imported: list[str]


def import_profile() -> ImportProfile:
    """Parse `python -X importtime -m ftci --help` (stderr) into totals and top self-times."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ftci", "--help"],
                          env=ENV, capture_output=True, text=True)
    if proc.returncode != 0:
        die(f"importtime run exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    rows: list[tuple[int, int, str]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cum_us, name = line[len("import time:"):].split("|")
        rows.append((int(self_us), int(cum_us), name.strip()))
    modules = {name for _, _, name in rows}
    cli_us = max((cum for _, cum, name in rows if name == "ftci.cli"), default=0)
    top = sorted(rows, reverse=True)[:5]
    heavy = sorted({m for m in modules if m.split(".")[0] in HEAVY})
    return ImportProfile(cli_us / 1e6, len(modules),
                         [(n, s / 1e6, c / 1e6) for s, c, n in top], heavy)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per command (>= 2)")
    parser.add_argument("--json", action="store_true", help="print raw numbers as JSON")
    args = parser.parse_args()
    runs = max(2, args.runs)
    ftci, lm_eval = BIN / "ftci", BIN / "lm_eval"
    if not ftci.exists():
        die(f"{ftci} not found; install ftci into this venv (pip install -e .)")
    notes: list[str] = []

    with tempfile.TemporaryDirectory(prefix="ftci-bench-") as tmp:
        run_once([str(ftci), "init", f"{tmp}/repo", "--task", "classification"])
        commands: dict[str, list[str]] = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "ftci --help": [str(ftci), "--help"],
            "ftci config validate": [str(ftci), "config", "validate", f"{tmp}/repo/ftci.yaml"],
        }
        if lm_eval.exists():
            commands["lm_eval --help"] = [str(lm_eval), "--help"]
        else:
            notes.append("lm-eval is not installed: pip install 'ftci[eval]' (lm_eval row and "
                         "target (b) skipped)")
        lm_runs = min(runs, max(5, runs // 4))
        # lm_eval's fewer runs are spread evenly over the rounds, not bunched at the start.
        lm_rounds = {round(j * runs / lm_runs) for j in range(lm_runs)}
        samples: dict[str, list[float]] = {label: [] for label in commands}
        for argv in commands.values():  # warm-up: page cache, .pyc files
            run_once(argv)
        labels = list(commands)
        for i in range(runs):
            order = labels[i % len(labels):] + labels[:i % len(labels)]  # rotate positions
            for label in order:
                if label == "lm_eval --help" and i not in lm_rounds:
                    continue
                samples[label].append(run_once(commands[label]))

    result: dict[str, dict[str, float]] = {label: stats(s) for label, s in samples.items()}
    floor = result["python -c pass"]["median"]
    help_med = result["ftci --help"]["median"]
    lm_med = result.get("lm_eval --help", {}).get("median")
    targets: dict[str, bool | None] = {
        "a": help_med - floor <= TARGET_A_S,
        "b": None if lm_med is None else lm_med >= TARGET_B_RATIO * help_med,
    }
    profile = import_profile()
    ok = all(t is not False for t in targets.values()) and not profile.heavy_imported

    if args.json:
        print(json.dumps({"machine": machine(), "runs": runs, "samples_s": samples,
                          "stats_s": result, "targets": targets, "imports": asdict(profile),
                          "notes": notes, "ok": ok}, indent=2))
        return 0 if ok else 1

    m = machine()
    print(f"# ftci CLI start-up  {m['date']}")
    print(f"# machine: {m['nproc']} CPUs, {m['mem_gib']} GiB, {m['platform']}, "
          f"Python {m['python']}; runs: {runs} (lm_eval {lm_runs}), HF_HUB_OFFLINE=1\n")
    for note in notes:
        print(f"note: {note}\n")
    header = ("command", "median s", "p10", "p90", "vs python -c pass", "lm_eval --help / this")
    rows: list[tuple[str, ...]] = [header]
    for label, s in result.items():
        vs = "-" if label == "python -c pass" else \
            f"+{s['median'] - floor:.3f} s ({s['median'] / floor:.1f}x)"
        lm = "-" if lm_med is None else f"{lm_med / s['median']:.1f}x"
        rows.append((f"`{label}`", f"{s['median']:.3f}", f"{s['p10']:.3f}", f"{s['p90']:.3f}",
                     vs, lm))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    rows.insert(1, tuple("-" * w for w in widths))
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")

    verdict = {True: "PASS", False: "FAIL", None: "SKIP (lm-eval not installed)"}
    print(f"\n(a) `ftci --help` within {TARGET_A_S} s of `python -c pass`: "
          f"{verdict[targets['a']]} (+{help_med - floor:.3f} s)")
    ratio = "" if lm_med is None else f" ({lm_med / help_med:.1f}x)"
    print(f"(b) `lm_eval --help` >= {TARGET_B_RATIO:.0f}x `ftci --help`: "
          f"{verdict[targets['b']]}{ratio}")

    print(f"\nimports during `python -X importtime -m ftci --help`: "
          f"{profile.modules_imported} modules, ftci.cli cumulative "
          f"{profile.ftci_cli_cumulative_s:.3f} s (single run, includes importtime overhead)")
    print("top 5 by self time:")
    for module, self_s, cum_s in profile.top_self:
        print(f"  {self_s:.4f} s self  {cum_s:.4f} s cum  {module}")
    heavy = profile.heavy_imported
    print(f"heavy modules ({', '.join(HEAVY)}): "
          + (f"FAIL, imported: {', '.join(heavy)}" if heavy else "none imported, PASS"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
