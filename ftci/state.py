"""ftci's state directory `.ftci/` beside ftci.yaml: its layout, and why nothing committed there
is read.

This module is the only one that spells the directory's name. The layout:

    .ftci/
      splits/            train/val/test.jsonl and manifest.json (`ftci data split`)
      runs/<key>/        one training run (adapter/, manifest.json); runs/.stale/ holds runs
                         moved aside, never trained into
      cache/             split-inputs.json, eval-outputs.sqlite, digest caches
      reports/<time>/    one eval or pipeline run: results.json, junit.xml, report.{md,html}
      releases/<v>-<key>/  one release being built (merged model, artifact, gate); the
                         registry (ftci release, default $FTCI_HOME/registry/) keeps the result
      deployments/       what is serving where (ftci deploy)
      ci-<command>.json  the Action's saved step JSON

`.ftci/` holds what ftci computed on this machine: splits, runs, caches, reports. A pull
request can force-add files there (`git add -f .ftci/...`): split files with a recomputed
stamp (training on rows that are not in `data/`), a run manifest (a cache hit on an adapter
nobody trained here), a results.json (a report whose gates all pass). So a file git tracks
under `.ftci/` is never state: the data gate fails on it, `ftci plan` counts it as a change
to every stage, and training and eval refuse to start until it is removed from git.
"""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path

from ftci.errors import BadInputError

STATE_DIR = ".ftci"
SHOWN = 5


def state_dir(root: Path) -> Path:
    """`.ftci/` of the repository whose ftci.yaml lies in `root`."""
    return root / STATE_DIR


def splits_dir(root: Path) -> Path:
    return state_dir(root) / "splits"


def split_path(root: Path, split: str) -> Path:
    """`.ftci/splits/<split>.jsonl`."""
    return splits_dir(root) / f"{split}.jsonl"


def runs_dir(root: Path) -> Path:
    return state_dir(root) / "runs"


def stale_runs_dir(root: Path) -> Path:
    """Where a run directory that belongs to another key is moved aside."""
    return runs_dir(root) / ".stale"


def is_runs_dir(path: Path) -> bool:
    """Is `path` some repository's `.ftci/runs/` (so its children are run directories)?"""
    return path.name == "runs" and path.parent.name == STATE_DIR


def root_of_run(run_dir: Path) -> Path:
    """The repository root of `<root>/.ftci/runs/<key>`."""
    return run_dir.parent.parent.parent


def cache_dir(root: Path) -> Path:
    return state_dir(root) / "cache"


def reports_dir(root: Path) -> Path:
    return state_dir(root) / "reports"


def releases_dir(root: Path) -> Path:
    """Where `ftci release` builds a version before the registry stores it."""
    return state_dir(root) / "releases"


def deployments_dir(root: Path) -> Path:
    return state_dir(root) / "deployments"


def ci_output_path(root: Path, command: str) -> Path:
    """The Action's saved step JSON for `command`."""
    return state_dir(root) / f"ci-{command}.json"


def new_report_dir(root: Path) -> Path:
    """A new, empty `.ftci/reports/<UTC time>/`, created here and unique: two runs that start
    in the same second get `<time>` and `<time>-2` (mkdir is the lock, so this holds across
    processes)."""
    reports = reports_dir(root)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    reports.mkdir(parents=True, exist_ok=True)
    for suffix in ("", *(f"-{n}" for n in range(2, 10_000))):
        candidate = reports / f"{stamp}{suffix}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free report directory under {reports}")


def display(path: str) -> str:
    """`path` (relative to the state directory) as users see it in help texts: `.ftci/<path>`."""
    return f"{STATE_DIR}/{path}" if path else f"{STATE_DIR}/"


def committed_state(root: Path) -> list[str]:
    """Paths under `root/.ftci/` that git tracks (relative to `root`); [] outside git."""
    try:
        done = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--", STATE_DIR],
                              capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return []  # no git: nothing can be committed
    if done.returncode != 0:
        return []  # not a git repository
    return sorted(name for name in done.stdout.split("\0") if name)


def committed_state_message(tracked: list[str]) -> str:
    shown = ", ".join(tracked[:SHOWN]) + (f" (+{len(tracked) - SHOWN} more)"
                                          if len(tracked) > SHOWN else "")
    return (f"git tracks {len(tracked)} file(s) under {STATE_DIR}/ ({shown}): ftci's state is "
            "computed on each machine and never read from the repository")


COMMITTED_STATE_HINT = (f"`git rm -r --cached {STATE_DIR}` and keep `{STATE_DIR}/` in "
                        ".gitignore (ftci init adds it)")


def refuse_committed_state(root: Path) -> None:
    """Raise BadInputError (exit 2) when git tracks anything under `root/.ftci/`."""
    tracked = committed_state(root)
    if tracked:
        raise BadInputError(committed_state_message(tracked), hint=COMMITTED_STATE_HINT)
