"""Install benchmark: what the GitHub-hosted data job installs, before and after the lean core.

Creates two fresh venvs side by side in one run, each with its own empty pip cache (so neither
reuses the other's downloads or built wheels):

  before   the data job's environment until the lean install: the CPU torch==2.13.0 first
           (as the Makefile and the Action do), then ftci with its old dependency list plus
           the `eval` extra the Action installed (OLD_REQUIREMENTS below, copied from
           pyproject.toml before the split)
  after    `pip install <repo>`: the lean core, no extras

For each: install wall time (every pip command), the size of site-packages (file bytes), the
number of installed distributions (*.dist-info), and whether `import torch` works; then the
before/after ratios. Both venvs must pass `ftci --version`.

Run:  .venv/bin/python benchmarks/install_size.py [--keep DIR] [--json]
Needs the package index pip is configured with (PyPI); takes minutes. Stdlib only.
Exit status: 0 ok, 1 the lean venv has torch or is not smaller, 2 an install failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TORCH_SPEC = "torch==2.13.0"
# pyproject.toml's dependencies and `eval` extra before the lean core (commit ee6d293).
OLD_REQUIREMENTS = (
    "click>=8.1", "pydantic>=2.7", "pyyaml>=6.0", "rich>=13.7", "torch>=2.4",
    "transformers>=5.0", "peft>=0.17", "accelerate>=1.10", "datasets>=4.0",
    "bitsandbytes>=0.46", "huggingface_hub>=1.0", "safetensors>=0.5", "gguf>=0.17",
    "orjson>=3.10", "pyarrow>=15.0", "numpy>=2.0", "matplotlib>=3.8", "detect-secrets>=1.5",
    "lm-eval[hf,api]>=0.4.9", "rouge-score>=0.1.2", "sacrebleu>=2.4", "jsonschema>=4.20",
)


@dataclass
class Env:
    name: str
    commands: list[str]
    install_s: float
    site_packages_bytes: int
    distributions: int
    has_torch: bool
    ftci_version: str


def copy_source(dest: Path) -> Path:
    """The working tree's files (tracked and not ignored) in `dest`: pip builds there, not in
    the checkout (an in-tree build writes build/ and *.egg-info beside other work)."""
    listed = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "-z", "-co",
                             "--exclude-standard"], capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def base_python() -> str:
    """The interpreter the venvs are made from: this one's base, not this venv."""
    return getattr(sys, "_base_executable", None) or sys.executable


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(dirpath) / name).lstat().st_size
            except OSError:
                pass
    return total


def build(name: str, requirements: list[list[str]], workdir: Path) -> Env:
    venv = workdir / name
    subprocess.run([base_python(), "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--cache-dir", str(workdir / f"pip-cache-{name}")]
    started = time.perf_counter()
    for args in requirements:
        print(f"[{name}] pip install {' '.join(args)}", file=sys.stderr, flush=True)
        done = subprocess.run([*pip, *args])
        if done.returncode != 0:
            raise SystemExit(2)
    install_s = time.perf_counter() - started
    packages = site_packages(venv)
    torch = subprocess.run([python, "-c", "import torch"], capture_output=True)
    version = subprocess.run([str(venv / "bin" / "ftci"), "--version"], capture_output=True,
                             text=True)
    if version.returncode != 0:
        print(f"[{name}] ftci --version failed: {version.stderr}", file=sys.stderr)
        raise SystemExit(2)
    return Env(name=name, commands=[" ".join(args) for args in requirements],
               install_s=install_s, site_packages_bytes=tree_bytes(packages),
               distributions=len(list(packages.glob("*.dist-info"))),
               has_torch=torch.returncode == 0, ftci_version=version.stdout.strip())


def table(before: Env, after: Env) -> str:
    rows = [("install wall time", f"{before.install_s:.1f} s", f"{after.install_s:.1f} s",
             before.install_s / after.install_s),
            ("site-packages", f"{before.site_packages_bytes / 1e6:,.0f} MB",
             f"{after.site_packages_bytes / 1e6:,.0f} MB",
             before.site_packages_bytes / after.site_packages_bytes),
            ("distributions", str(before.distributions), str(after.distributions),
             before.distributions / after.distributions)]
    lines = ["| measure | before (old full set) | after (lean `pip install .`) | before / after |",
             "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {old} | {new} | {ratio:.1f}x |" for name, old, new, ratio in rows]
    lines.append(f"| `import torch` | {'works' if before.has_torch else 'fails'} | "
                 f"{'works' if after.has_torch else 'fails'} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, default=None,
                        help="Build the venvs in this directory and keep them.")
    parser.add_argument("--json", action="store_true", help="Print the results as JSON.")
    args = parser.parse_args(argv)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="ftci-install-size-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        source = str(copy_source(workdir / "src"))
        before = build("before", [[TORCH_SPEC], [source, *OLD_REQUIREMENTS]], workdir)
        after = build("after", [[source]], workdir)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          "python": platform.python_version(), "cpus": os.cpu_count(),
                          "before": asdict(before), "after": asdict(after)}, indent=2))
    else:
        print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {before.ftci_version}")
        for env in (before, after):
            print(f"{env.name}: " + " && ".join(f"pip install {c}" for c in env.commands))
        print(table(before, after))
    ok = not after.has_torch and after.site_packages_bytes < before.site_packages_bytes
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
