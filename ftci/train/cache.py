"""Training runs on disk: `runs/<run key>/` in the state directory, reused only when complete
and truly theirs.

A run directory holds `inputs.json` (written before training: the key and every input),
checkpoints while it trains, the artifacts (`adapter/`, `model/` for full fine-tunes) and, last,
`manifest.json`. It is complete iff the manifest exists, says `"complete": true` and names this
run key, and every file it lists is still there with its recorded size (sizes only: a cache hit
must stay fast; the sha256 of each artifact is recorded for whoever wants to verify). A
directory whose `inputs.json` or manifest carries another key is never used.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.digests import sha256_file
from ftci.errors import InfraError
from ftci.io import atomic_write_text, read_json
from ftci.state import STATE_DIR, root_of_run, runs_dir

if TYPE_CHECKING:
    from ftci.train.runkey import RunInputs

MANIFEST_FORMAT = 1
MANIFEST_NAME = "manifest.json"
INPUTS_NAME = "inputs.json"
ADAPTER_WEIGHTS = "adapter/adapter_model.safetensors"
ARTIFACT_DIRS = ("adapter", "model")


@dataclass(frozen=True)
class CachedRun:
    """A complete run: where it is and what its manifest says."""

    run_dir: Path
    key: str
    manifest: dict[str, Any]

    @property
    def finished_at(self) -> datetime:
        return datetime.fromisoformat(str(self.manifest["finished_at"]))

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / "adapter"


def run_dir_for(root: Path, key: str) -> Path:
    return runs_dir(root) / key


def find_cached(root: Path, key: str) -> CachedRun | None:
    """The complete run for `key`, or None (no directory, no manifest, another key's, or an
    artifact gone missing)."""
    run_dir = run_dir_for(root, key)
    manifest = read_json(run_dir / MANIFEST_NAME)
    if manifest is None or manifest.get("complete") is not True or manifest.get("run_key") != key:
        return None
    inputs = read_json(run_dir / INPUTS_NAME)
    if inputs is not None and inputs.get("run_key") != key:
        return None
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return None
    for relative, entry in files.items():
        path = run_dir / relative
        if not path.is_file() or path.stat().st_size != (entry or {}).get("size"):
            return None
    if not any(name == ADAPTER_WEIGHTS or name.startswith("model/") for name in files):
        return None
    try:
        datetime.fromisoformat(str(manifest.get("finished_at")))
    except ValueError:
        return None
    return CachedRun(run_dir, key, manifest)


def latest_run(root: Path) -> CachedRun | None:
    """The most recently finished complete run of this repository (what `ftci eval` takes by
    default), or None when there is none."""
    runs = [run for path in sorted(runs_dir(root).glob("*/" + MANIFEST_NAME))
            if (run := find_cached(root, path.parent.name)) is not None]
    return max(runs, key=lambda run: run.finished_at, default=None)


def write_inputs(run_dir: Path, inputs: RunInputs) -> None:
    """`inputs.json`, first thing in a run directory: which key the directory belongs to."""
    atomic_write_text(run_dir / INPUTS_NAME, json.dumps(
        {"run_key": inputs.key, "inputs": inputs.key_material()}, indent=2, sort_keys=True) + "\n")


def inputs_key(run_dir: Path) -> str | None:
    """The run key recorded in a directory's inputs.json (None when absent or unreadable)."""
    inputs = read_json(run_dir / INPUTS_NAME)
    key = (inputs or {}).get("run_key")
    return key if isinstance(key, str) else None


def write_manifest(run_dir: Path, inputs: RunInputs, result: Any,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write `manifest.json` last and atomically: from then on the run is complete.

    Lists every artifact file with its size and sha256; raises InfraError when the recipe
    left no weights behind (a manifest must never bless an empty run). The manifest is the
    `RunManifest` contract (ftci/contracts/run.py), checked against it before it is written.
    """
    from ftci.contracts import RunManifest

    files = artifact_files(run_dir)
    if not any(name == ADAPTER_WEIGHTS or name.startswith("model/") for name in files):
        raise InfraError(f"training finished but {run_dir / ADAPTER_WEIGHTS} was not written",
                         hint="this is a bug in the recipe; rerun with FTCI_DEBUG=1 and report it")
    outcome = result_dict(result)
    manifest: dict[str, Any] = {
        "schema_version": RunManifest.VERSION,
        "format": MANIFEST_FORMAT,
        "complete": True,
        "run_key": inputs.key,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input_hashes": inputs.hashes(),
        "inputs": inputs.key_material(),
        "splits": inputs.split_sha256,
        "versions": inputs.versions,
        "device": outcome.get("device") or inputs.device,
        "seed": inputs.seed,
        "git": git_state(root_of_run(run_dir)),
        "wall_seconds": outcome.get("wall_seconds"),
        "tokens_seen": outcome.get("tokens_seen"),
        "result": outcome,
        "files": files,
        **(extra or {}),
    }
    manifest = RunManifest.from_dict(json.loads(json.dumps(manifest, default=str)),
                                     source=run_dir / MANIFEST_NAME).to_dict()
    atomic_write_text(run_dir / MANIFEST_NAME,
                      json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n")
    return manifest


def artifact_files(run_dir: Path) -> dict[str, dict[str, Any]]:
    """`{relative path: {size, sha256}}` of every file under the artifact directories."""
    files: dict[str, dict[str, Any]] = {}
    for folder in ARTIFACT_DIRS:
        for path in sorted((run_dir / folder).rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                files[path.relative_to(run_dir).as_posix()] = {
                    "size": path.stat().st_size, "sha256": sha256_file(path)}
    return files


def result_dict(result: Any) -> dict[str, Any]:
    """The recipe's TrainResult as plain data (a dataclass, a mapping or any object)."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        data = dataclasses.asdict(result)
    elif isinstance(result, dict):
        data = dict(result)
    else:
        data = {name: value for name, value in vars(result).items() if not name.startswith("_")}
    return json.loads(json.dumps(data, default=str))


def git_state(root: Path) -> dict[str, Any] | None:
    """The commit checked out at `root` and whether the files under `root` differ from it
    (ftci's own state directory excluded), or None outside a git repository."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = git("status", "--porcelain", "--", ".", f":(exclude){STATE_DIR}")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}
