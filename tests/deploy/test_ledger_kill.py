"""The deployments ledger killed mid-deploy. A child process runs a real sequence of deploys
against a real ledger (first serve, replace, refused, failed, replace again; each deploy first
recovers what an earlier one left) and dies:

- with exit 137 at a crash point (FTCI_TEST_CRASH_AFTER=deploy:<transition>[@N], ftci/deploy/
  ledger.py), as under `kill -9`: nothing flushed, no cleanup. Every point of the sequence is
  hit: inside each transition's transaction (rows written, not committed) and just after its
  commit;
- by a real SIGKILL from the parent at a random moment of an endless deploy loop.

Afterwards the ledger passes SQLite's integrity check and equals, row for row, the ledger an
uninterrupted run had at that point: before the interrupted transition for a kill inside it,
after it for a kill after its commit; for a SIGKILL, at some transition boundary. Never half.
At most one row serves. Then a second run completes: the killed deploy's `starting` row is
abandoned, its `draining` row retired, and the new version serves."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import ftci.deploy.ledger as ledger_module
from ftci.deploy.ledger import CRASH_ENV, CRASH_EXIT, LEDGER, DeploymentLedger
from tests.helpers.paths import REPO_ROOT

SEED = 20261204
# What the child and the uninterrupted replay both run (so the two cannot drift apart).
SCENARIO = textwrap.dedent("""
    ENV = "production"
    PLAN = [("0.1.0", "serve"), ("0.2.0", "serve"), ("0.3.0", "refuse"), ("0.4.0", "fail"),
            ("0.5.0", "serve")]

    def deploy(ledger, version, outcome, port):
        for row in ledger.unfinished(ENV):  # what a killed deploy left
            if row.state == "starting":
                ledger.mark_abandoned(row.id, "left by a killed ftci deploy")
            else:
                ledger.mark_retired(row.id)
        blue = ledger.serving(ENV)
        row = ledger.begin(environment=ENV, project="intents", version=version,
                           release_key="key-" + version, engine="vllm", launcher="process",
                           endpoint="http://127.0.0.1:8080/v1", server={"port": port}, by="ci",
                           previous=blue.version if blue else None)
        ledger.update_server(row, {"launcher": "process", "version": version, "port": port,
                                   "url": "http://127.0.0.1:%d" % port, "pid": port + 1})
        ledger.update_checks(row, {"health": 1.5})
        if outcome == "fail":
            ledger.mark_failed(row, "identity", "serves another model")
            return
        ledger.update_checks(row, {"smoke": {"agreement": 0.5 if outcome == "refuse" else 1.0,
                                             "items": 8}})
        if outcome == "refuse":
            ledger.mark_refused(row, "smoke", "agreement 0.50 < 0.95")
            return
        ledger.mark_serving(row, replaces=blue.id if blue else None)
        if blue is not None:
            ledger.mark_retired(blue.id)

    def run_plan(ledger, plan):
        for index, (version, outcome) in enumerate(plan):
            deploy(ledger, version, outcome, 8100 + index)

    def endless(ledger):
        outcomes = ("serve", "refuse", "serve", "fail")
        for index in range(100000):
            deploy(ledger, "%d.0.0" % index, outcomes[index % 4], 8100 + index)
""")
CHILD = SCENARIO + textwrap.dedent("""
    import sys
    from pathlib import Path
    from ftci.deploy.ledger import DeploymentLedger
    with DeploymentLedger(Path(sys.argv[1])) as ledger:
        if sys.argv[2] == "plan":
            run_plan(ledger, PLAN)
        elif sys.argv[2] == "endless":
            endless(ledger)
        else:
            deploy(ledger, sys.argv[2], "serve", 9000)
""")
_SCENARIO: dict[str, Any] = {}
exec(SCENARIO, _SCENARIO)
ENV: str = _SCENARIO["ENV"]
PLAN: list[tuple[str, str]] = _SCENARIO["PLAN"]
Snapshot = list[tuple[Any, ...]]


def snapshot(ledger_dir: Path) -> Snapshot:
    """The rows as a reader outside the writer sees them (timestamps left out: only whether
    they are set)."""
    path = ledger_dir / LEDGER
    if not path.is_file():
        return []
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT id, version, state, step, reason, server, checks, previous, "
                          "serving_since IS NOT NULL, ended_at IS NOT NULL FROM deployments "
                          "ORDER BY id").fetchall()
    return [(*row[:5], json.loads(row[5]), json.loads(row[6]), *row[7:]) for row in rows]


def problems(ledger_dir: Path) -> list[str]:
    """What no reader may ever see; [] when consistent."""
    path = ledger_dir / LEDGER
    if not path.is_file():
        return []
    found = []
    with closing(sqlite3.connect(path)) as db:
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            found.append(f"integrity_check: {check}")
    serving = 0
    for (row_id, version, state, step, reason, _server, _checks, _previous, since,
         ended) in snapshot(ledger_dir):
        serving += state == "serving"
        want_since = state in ("serving", "draining", "retired")
        want_ended = state in ("refused", "failed", "retired", "abandoned")
        want_step = state in ("refused", "failed")
        if (since, ended, step is not None) != (want_since, want_ended, want_step) or \
                (want_ended and state != "retired" and not reason):
            found.append(f"{row_id} v{version} {state}: serving_since {since}, ended {ended}, "
                         f"step {step!r}, reason {reason!r}")
    if serving > 1:
        found.append(f"{serving} rows serving")
    with DeploymentLedger(ledger_dir) as ledger:  # and ftci itself reads every row
        ledger.history(ENV, limit=1_000_000)
    return found


def replay(ledger_dir: Path, run: str, *args: Any) -> list[tuple[str, Snapshot]]:
    """Run the scenario here, uninterrupted, and record at every crash point the point
    (`name@N`) and the ledger a kill there must leave (read from outside the transaction:
    before it inside, after it once committed)."""
    points: list[tuple[str, Snapshot]] = []
    seen: Counter[str] = Counter()

    def record(point: str) -> None:
        seen[point] += 1
        points.append((f"{point}@{seen[point]}", snapshot(ledger_dir)))

    with pytest.MonkeyPatch.context() as patch, DeploymentLedger(ledger_dir) as ledger:
        patch.setattr(ledger_module, "crash_after", record)
        _SCENARIO[run](ledger, *args)
    return points


def child(ledger_dir: Path, what: str, point: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if point is not None:
        env[CRASH_ENV] = point
    return subprocess.run([sys.executable, "-c", CHILD, str(ledger_dir), what], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def recovered(killed: Snapshot) -> list[tuple[int, str]]:
    """What a complete second deploy makes of the killed ledger's rows, plus its own row."""
    after = {"starting": "abandoned", "draining": "retired", "serving": "retired"}
    rows = [(row[0], after.get(row[2], row[2])) for row in killed]
    return [*rows, (len(killed) + 1, "serving")]


def second_run_completes(ledger_dir: Path, killed: Snapshot, where: str) -> None:
    """The next deploy, here in the test's process (the killed one's was a child)."""
    with DeploymentLedger(ledger_dir) as ledger:
        _SCENARIO["deploy"](ledger, "9.9.9", "serve", 9000)
    assert problems(ledger_dir) == [], f"{where}, after the second run"
    assert [(row[0], row[2]) for row in snapshot(ledger_dir)] == recovered(killed), where
    with DeploymentLedger(ledger_dir) as ledger:
        serving = ledger.serving(ENV)
        assert serving is not None and serving.version == "9.9.9", where
        assert ledger.unfinished(ENV) == [], where


def kill_at(tmp_path: Path, name: str, point: str, expected: Snapshot) -> None:
    ledger_dir = tmp_path / name
    done = child(ledger_dir, "plan", point)
    assert done.returncode == CRASH_EXIT, f"{point}: exit {done.returncode}: {done.stderr}"
    assert problems(ledger_dir) == [], point
    killed = snapshot(ledger_dir)
    assert killed == expected, f"killed at {point}: not the ledger of that moment"
    second_run_completes(ledger_dir, killed, point)


def plan_points(tmp_path: Path) -> list[tuple[str, Snapshot]]:
    points = replay(tmp_path / "replay", "run_plan", PLAN)
    names = [point for point, _ in points]
    # The plan visits every transition but abandoned (the recovery test's), inside and after.
    assert {p.split("@")[0] for p in names} == {
        f"deploy:{t}{s}" for t in ("begin", "server", "checks", "serving", "retired",
                                   "refused", "failed") for s in ("", ":committed")}
    assert len(names) == len(set(names)) == 2 * 26
    return points


def test_a_deploy_killed_around_the_switch_leaves_the_ledger_before_or_after_it(
        tmp_path: Path) -> None:
    """The fast tier's share: the points where two rows change at once (the switch) and the
    old one is retired."""
    points = dict(plan_points(tmp_path))
    for point in ("deploy:serving@2", "deploy:serving:committed@2", "deploy:retired@1"):
        kill_at(tmp_path, point.replace(":", "-"), point, points[point])
    inside, after = points["deploy:serving@2"], points["deploy:serving:committed@2"]
    assert [r[2] for r in inside] == ["serving", "starting"]  # not half: both or neither
    assert [r[2] for r in after] == ["draining", "serving"]


@pytest.mark.slow  # 52 killed children: ~35 s on 2 loaded cores
def test_a_deploy_sequence_killed_at_every_point_leaves_a_consistent_ledger(
        tmp_path: Path) -> None:
    for index, (point, expected) in enumerate(plan_points(tmp_path)):
        kill_at(tmp_path, f"kill-{index}", point, expected)


RECOVERY_BASES = {
    # after the switch, before the old server stopped: 0.1.0 draining, 0.2.0 serving
    "deploy:serving:committed@2": ("deploy:retired@1", ["retired", "retired"]),
    # during 0.3.0's checks: 0.2.0 serving, 0.3.0 starting
    "deploy:checks@5": ("deploy:abandoned@1", ["retired", "retired", "abandoned"]),
}


@pytest.mark.slow  # ~8 killed children each
@pytest.mark.parametrize("base_point", list(RECOVERY_BASES))
def test_the_recovery_of_a_killed_deploy_killed_itself_leaves_a_consistent_ledger(
        tmp_path: Path, base_point: str) -> None:
    """A deploy killed (a `draining` row, or a `starting` one), then the next deploy, which
    recovers it (retire, abandon) and deploys, killed at each of its own points; a third run
    completes."""
    first_point, after = RECOVERY_BASES[base_point]
    base = tmp_path / "base"
    done = child(base, "plan", base_point)
    assert done.returncode == CRASH_EXIT, done.stderr

    def copy(to: Path) -> Path:
        to.mkdir()
        with closing(sqlite3.connect(base / LEDGER)) as source, \
                closing(sqlite3.connect(to / LEDGER)) as dest:
            source.backup(dest)
        return to

    points = replay(copy(tmp_path / "replay"), "deploy", "9.9.9", "serve", 9000)
    assert points[0][0] == first_point
    for index, (point, expected) in enumerate(points):
        ledger_dir = copy(tmp_path / f"recovery-{index}")
        done = child(ledger_dir, "9.9.9", point)
        assert done.returncode == CRASH_EXIT, f"{point}: {done.stderr}"
        assert problems(ledger_dir) == [], point
        killed = snapshot(ledger_dir)
        assert killed == expected, point
        second_run_completes(ledger_dir, killed, f"{base_point}, then {point}")
        with DeploymentLedger(ledger_dir) as ledger:
            assert [r.state for r in ledger.history(ENV, limit=100)][::-1][:len(after)] == \
                after, point


def test_an_endless_deploy_loop_killed_by_sigkill_stops_at_a_transition_boundary(
        tmp_path: Path) -> None:
    """A real `kill -9` (not the hook) at random moments: wherever SQLite was (inside a
    commit, an fsync), the ledger is the one an uninterrupted loop had at some boundary."""
    rng = random.Random(SEED)
    for attempt in range(3):
        ledger_dir = tmp_path / f"sigkill-{attempt}"
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(ledger_dir), "endless"],
                                cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            wanted, deadline = rng.randint(3, 12), time.monotonic() + 60
            while len(snapshot_or_empty(ledger_dir)) < wanted and proc.poll() is None:
                assert time.monotonic() < deadline, "the loop made no progress"
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.05))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
        assert problems(ledger_dir) == [], attempt
        killed = snapshot(ledger_dir)
        deploys = len(killed)
        boundaries = [snap for _, snap in replay(tmp_path / f"replay-{attempt}", "_bounded",
                                                 deploys)]
        assert killed in boundaries, f"attempt {attempt}: a SIGKILL left a half transition"
        second_run_completes(ledger_dir, killed, f"SIGKILL {attempt}")


def snapshot_or_empty(ledger_dir: Path) -> Snapshot:
    try:
        return snapshot(ledger_dir)
    except sqlite3.Error:  # the child is creating the file this very moment
        return []


def _bounded(ledger: DeploymentLedger, deploys: int) -> None:
    """The endless loop's first `deploys` deploys: the same arguments, in order."""
    outcomes = ("serve", "refuse", "serve", "fail")
    for index in range(deploys):
        _SCENARIO["deploy"](ledger, f"{index}.0.0", outcomes[index % 4], 8100 + index)


_SCENARIO["_bounded"] = _bounded
