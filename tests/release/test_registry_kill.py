"""The local registry killed mid-write: a real publish (or alias move, or fetch) in a child
process dies with exit 137 at a crash point (FTCI_TEST_CRASH_AFTER, ftci/release/registry/
local.py), as under `kill -9`: nothing flushed, no cleanup. Afterwards the ledger opens and
passes SQLite's integrity check, every listed version verifies, no half version is visible,
every blob holds the bytes its name promises, and a rerun without the hook completes.

The kill points are drawn with a seeded generator over every crash point of a publish (each
blob index, each temp-file-before-rename, before and after the commit), with and without an
earlier version that shares blobs with the new one."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ftci.release.registry.local import CRASH_ENV, CRASH_EXIT, LocalRegistry
from tests.helpers.paths import REPO_ROOT
from tests.helpers.release_dir import default_files, make_release_dir

SEED = 20261203
KILLS = 24
FILES = len(default_files())  # + release.json: the blobs of one publish

CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from ftci.release.registry.local import LocalRegistry
    registry = LocalRegistry(Path(sys.argv[2]))
    action, args = sys.argv[1], sys.argv[3:]
    if action == "publish":
        registry.publish(Path(args[0]), by="killed")
    elif action == "alias":
        registry.set_alias(args[0], args[1], by="killed")
    elif action == "fetch":
        registry.fetch(args[0], Path(args[1]))
    registry.close()
""")


def killed_child(point: str, action: str, *args: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CHILD, action, *map(str, args)],
                          cwd=REPO_ROOT, env={**os.environ, CRASH_ENV: point},
                          capture_output=True, text=True, timeout=60, check=False)


def crash_points() -> list[str]:
    blobs = FILES + 1
    return ([f"blob:{n}" for n in range(1, blobs + 1)]
            + [f"blob_partial:{n}" for n in range(1, blobs + 1)]
            + ["before_commit", "after_commit"])


def consistency_problems(registry_dir: Path) -> list[str]:
    """What a reader must never see after a kill; [] when consistent."""
    problems: list[str] = []
    ledger = registry_dir / "ledger.sqlite"
    if ledger.is_file():
        with sqlite3.connect(ledger) as db:
            check = db.execute("PRAGMA integrity_check").fetchone()[0]
            if check != "ok":
                problems.append(f"integrity_check: {check}")
            for version, manifest in db.execute("SELECT version, manifest FROM versions"):
                listed = set(json.loads(manifest)["files"])
                rows = {row[0] for row in db.execute(
                    "SELECT path FROM files WHERE version = ?", (version,))}
                if rows != listed:
                    problems.append(f"{version}: half a version (files {sorted(rows)})")
    registry = LocalRegistry(registry_dir)
    try:
        for published in registry.versions():
            problems += [f"{published.version}: {p}" for p in registry.verify(published.version)]
    finally:
        registry.close()
    for blob in (registry_dir / "blobs").rglob("*"):
        if blob.is_file() and not blob.name.startswith("."):
            if hashlib.sha256(blob.read_bytes()).hexdigest() != blob.name:
                problems.append(f"blob {blob.name[:12]} does not hold its digest")
    return problems


@pytest.mark.slow  # 24 child processes: ~22 s on 2 loaded cores
def test_a_publish_killed_at_random_points_leaves_a_consistent_registry(
        tmp_path: Path) -> None:
    rng = random.Random(SEED)
    points = crash_points()
    # Every point once, then random draws: each blob, each rename, each side of the commit.
    drawn = points + [rng.choice(points) for _ in range(KILLS - len(points))]
    rng.shuffle(drawn)
    assert len(drawn) >= 20
    sources = tmp_path / "sources"
    earlier = make_release_dir(sources, version="0.1.0", commit="1" * 40)
    new = make_release_dir(sources, version="0.2.0", commit="2" * 40)
    for run, point in enumerate(drawn):
        with_earlier = rng.random() < 0.5
        registry_dir = tmp_path / f"registry-{run}"
        if with_earlier:
            with LocalRegistry(registry_dir) as registry:
                registry.publish(earlier, by="ci")
        done = killed_child(point, "publish", registry_dir, new)
        where = f"kill {run} at {point} (earlier version: {with_earlier})"
        # blob_partial:N fires only for a blob not stored yet: the blobs the earlier version
        # shares with the new one are reused, so such a publish runs to the end instead.
        partial = point.startswith("blob_partial:")
        allowed = (CRASH_EXIT, 0) if partial and with_earlier else (CRASH_EXIT,)
        assert done.returncode in allowed, \
            f"{where}: exit {done.returncode}, {done.stderr[-2000:]}"
        if partial and done.returncode == CRASH_EXIT:  # killed between write and rename
            assert list((registry_dir / "blobs").rglob(".*.tmp")), where
        assert consistency_problems(registry_dir) == [], where

        with LocalRegistry(registry_dir) as registry:
            landed = registry.get("0.2.0") is not None
            expected = point == "after_commit" or done.returncode == 0
            assert landed == expected, where
            assert [v.version for v in registry.versions()] == \
                (["0.1.0"] if with_earlier else []) + (["0.2.0"] if landed else [])
            published = registry.publish(new, by="rerun")
            assert published.created_by == ("killed" if landed else "rerun"), where
            assert registry.verify("0.2.0") == [], where
            if with_earlier:
                assert registry.verify("0.1.0") == [], where
            dest = registry.fetch("0.2.0", tmp_path / f"fetched-{run}")
        assert (dest / "model" / "model.safetensors").read_bytes() == \
            (new / "model" / "model.safetensors").read_bytes()
        assert consistency_problems(registry_dir) == [], f"{where}, after the rerun"
        # Orphan blobs from the kill were reused, not duplicated.
        named = [p for p in (registry_dir / "blobs").rglob("*")
                 if p.is_file() and not p.name.startswith(".")]
        assert len(named) == len({p.name for p in named}) == \
            len(set(_digests(new)) | (set(_digests(earlier)) if with_earlier else set()))


def _digests(release_dir: Path) -> list[str]:
    manifest = json.loads((release_dir / "release.json").read_text())
    return [entry["sha256"] for entry in manifest["files"].values()] + [
        hashlib.sha256((release_dir / "release.json").read_bytes()).hexdigest()]


def test_an_alias_move_killed_before_its_commit_leaves_the_alias_where_it_was(
        tmp_path: Path) -> None:
    registry_dir = tmp_path / "registry"
    with LocalRegistry(registry_dir) as registry:
        for version in ("0.1.0", "0.2.0"):
            registry.publish(make_release_dir(tmp_path, version=version), by="ci")
        registry.set_alias("production", "0.1.0", by="ci")
    done = killed_child("alias", "alias", registry_dir, "production", "0.2.0")
    assert done.returncode == CRASH_EXIT, done.stderr
    assert consistency_problems(registry_dir) == []
    with LocalRegistry(registry_dir) as registry:
        assert registry.resolve("production") == "0.1.0"
        assert [e.version for e in registry.alias_history()] == ["0.1.0"]
        moved = registry.set_alias("production", "0.2.0", by="rerun")
        assert (moved.previous, registry.resolve("production")) == ("0.1.0", "0.2.0")
        assert [e.by for e in registry.alias_history("production")] == ["ci", "rerun"]


def test_a_fetch_killed_midway_leaves_no_destination_and_a_rerun_completes(
        tmp_path: Path) -> None:
    registry_dir, dest = tmp_path / "registry", tmp_path / "out"
    source = make_release_dir(tmp_path / "src")
    with LocalRegistry(registry_dir) as registry:
        registry.publish(source, by="ci")
    done = killed_child("fetch:2", "fetch", registry_dir, "0.1.0", dest)
    assert done.returncode == CRASH_EXIT, done.stderr
    assert not dest.exists() and (tmp_path / "out.partial").is_dir()
    with LocalRegistry(registry_dir) as registry:
        registry.fetch("0.1.0", dest)
    assert {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*")
            if p.is_file()} == {p.relative_to(source).as_posix(): p.read_bytes()
                                for p in source.rglob("*") if p.is_file()}
    assert not (tmp_path / "out.partial").exists()
