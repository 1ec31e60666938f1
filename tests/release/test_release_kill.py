"""`kill -9` at random points of a real `ftci release` (tiny model, LoRA merged, quantization
none so no other venv is needed; the local registry, a real git tag): after each kill the
registry is consistent (the ledger passes SQLite's integrity check, every version it lists
verifies blob by blob, no alias points at a missing version, a tag exists only for a published
version), and a rerun completes the release (one version, verified, tagged, the candidate
alias set).

The kill points are drawn with a seeded generator over the duration of an uninterrupted
release measured first, so they fall in every step: loading, the merge, the merge check,
assembling, publishing (blobs, the ledger), the alias, the tag. The whole process group is
killed, as a cancelled CI job's runner does.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.git import git
from tests.helpers.release_repo import GIT_IDENTITY, ftci, ftci_command, make_release_repo

pytestmark = [pytest.mark.slow, pytest.mark.integration]

KILLS = 20
SEED = 20261203
TAG = "intents@v0.1.0"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path) -> dict[str, Path]:
    made = make_release_repo(tmp_path_factory.mktemp("release-kill"), tiny_llama_dir,
                             quantization="none")
    run = ftci(made["root"], "run")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return made


def reset(repo: dict[str, Path]) -> None:
    """No release yet: no registry, no work directory, no tag here or on the remote."""
    shutil.rmtree(repo["registry"], ignore_errors=True)
    shutil.rmtree(repo["root"] / ".ftci" / "releases", ignore_errors=True)
    for where in (repo["root"], repo["remote"]):
        if git(where, "tag", "--list", TAG):
            git(where, "tag", "-d", TAG)


def release_killed_after(root: Path, seconds: float) -> int | None:
    """Start `ftci release`, SIGKILL its process group after `seconds`; its exit code if it
    finished first."""
    process = subprocess.Popen(ftci_command("--json", "release"), cwd=root,
                               env={**os.environ, **GIT_IDENTITY}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None


def consistency_problems(repo: dict[str, Path]) -> list[str]:
    from ftci.release.registry.local import LocalRegistry

    ledger = repo["registry"] / "ledger.sqlite"
    problems: list[str] = []
    if ledger.is_file():
        with sqlite3.connect(ledger) as db:
            check = db.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            problems.append(f"integrity_check: {check}")
    if not repo["registry"].is_dir():
        published: list[str] = []
    else:
        registry = LocalRegistry(repo["registry"])
        try:
            published = [v.version for v in registry.versions()]
            for version in published:
                problems += [f"{version}: {p}" for p in registry.verify(version)]
            for event in registry.alias_history():
                if event.version is not None and event.version not in published:
                    problems.append(f"alias {event.alias} -> missing {event.version}")
        finally:
            registry.close()
    if len(published) > 1:
        problems.append(f"more than one version: {published}")
    if git(repo["root"], "tag", "--list", TAG) and "0.1.0" not in published:
        problems.append(f"tag {TAG} exists but 0.1.0 is not published")
    return problems


def test_kill_at_random_points_leaves_the_registry_consistent_and_a_rerun_completes(
        repo: dict[str, Path]) -> None:
    from ftci.release.registry.local import LocalRegistry

    reset(repo)
    started = time.perf_counter()
    full = ftci(repo["root"], "--json", "release")
    duration = time.perf_counter() - started
    assert full.returncode == 0, full.stderr[-3000:]
    rng = random.Random(SEED)
    points = sorted(round(rng.uniform(0.5, duration), 2) for _ in range(KILLS))
    killed = 0
    for point in points:
        reset(repo)
        finished = release_killed_after(repo["root"], point)
        killed += finished is None
        problems = consistency_problems(repo)
        assert problems == [], f"after a kill at {point} s of {duration:.1f} s: {problems}"
        rerun = ftci(repo["root"], "--json", "release")
        assert rerun.returncode == 0, f"rerun after a kill at {point} s: {rerun.stderr[-3000:]}"
        registry = LocalRegistry(repo["registry"])
        try:
            assert [v.version for v in registry.versions()] == ["0.1.0"]
            assert registry.verify("0.1.0") == []
            assert registry.resolve("candidate") == "0.1.0"
        finally:
            registry.close()
        assert git(repo["root"], "cat-file", "-t", TAG) == "tag"
        assert git(repo["remote"], "rev-parse", f"{TAG}^{{commit}}") == \
            git(repo["root"], "rev-parse", "HEAD")
    assert killed >= KILLS * 3 // 4, f"only {killed} of {KILLS} runs were killed mid-way"
