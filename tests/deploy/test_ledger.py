"""The deployments ledger (ftci/deploy/ledger.py): every transition, the one-serving invariant,
refusals that change nothing, concurrent writers in separate processes, the deploy lock, and
ledgers it must not trust (corrupt, from a newer ftci). A real SQLite file in a tmp dir."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from ftci.contracts.deployment import DeploymentRecord
from ftci.deploy.ledger import (
    LEDGER,
    DeploymentLedger,
    LedgerConflict,
    deployments_home,
)
from ftci.errors import BadInputError, InfraError
from tests.helpers.paths import REPO_ROOT

ENV = "production"


def handle(port: int, version: str) -> dict[str, Any]:
    """What ServerHandle.to_dict() gives for a process launcher's server."""
    return {"launcher": "process", "version": version, "url": f"http://127.0.0.1:{port}",
            "port": port, "pid": 4242, "name": None, "log": f"/tmp/v{version}.log",
            "model": f"/releases/{version}", "extra": {}}


def begin(ledger: DeploymentLedger, version: str, *, environment: str = ENV,
          previous: str | None = None) -> int:
    return ledger.begin(environment=environment, project="intents", version=version,
                        release_key=f"key-{version}", engine="vllm", launcher="process",
                        endpoint="http://127.0.0.1:8080/v1", server={"port": 8100},
                        by="ci", previous=previous)


def states(ledger: DeploymentLedger, environment: str = ENV) -> dict[str, str]:
    return {row.version: row.state for row in ledger.history(environment, limit=100)}


@pytest.fixture
def ledger(tmp_path: Path) -> Any:
    with DeploymentLedger(tmp_path / "deployments") as opened:
        yield opened


def test_a_first_deployment_goes_from_starting_to_serving_with_its_server_and_checks(
        ledger: DeploymentLedger) -> None:
    assert ledger.serving(ENV) is None and ledger.history(ENV) == []
    assert not ledger.ledger.exists()  # reading created nothing
    first = begin(ledger, "0.1.0")
    row = ledger.get(first)
    assert row is not None and row.state == "starting" and row.server.port == 8100
    assert row.serving_since is None and row.ended_at is None and row.started_at.endswith(
        "+00:00")
    ledger.update_server(first, handle(8100, "0.1.0"))
    ledger.update_checks(first, {"health": 3.5, "identity": {"model": "/releases/0.1.0"}})
    merged = ledger.update_checks(first, {"smoke": {"agreement": 1.0, "items": 8}})
    assert merged.checks.health == 3.5 and merged.checks.smoke is not None
    ledger.mark_serving(first, checks={"switch": {"upstream": "127.0.0.1:8100"}})
    serving = ledger.serving(ENV)
    assert serving is not None and serving.id == first
    assert serving.serving_since is not None and serving.ended_at is None
    assert serving.server.pid == 4242 and serving.server.url == "http://127.0.0.1:8100"
    assert serving.checks.to_dict() == {"health": 3.5,
                                        "identity": {"model": "/releases/0.1.0"},
                                        "smoke": {"agreement": 1.0, "items": 8},
                                        "switch": {"upstream": "127.0.0.1:8100"}}
    assert ledger.unfinished(ENV) == []


def test_a_replacement_drains_the_old_one_in_the_same_transaction_then_retires_it(
        ledger: DeploymentLedger) -> None:
    old = begin(ledger, "0.1.0")
    ledger.mark_serving(old)
    new = begin(ledger, "0.2.0", previous="0.1.0")
    ledger.mark_serving(new, replaces=old)
    assert states(ledger) == {"0.2.0": "serving", "0.1.0": "draining"}
    # A deploy killed here leaves the old server running: unfinished lists it.
    assert [(r.id, r.state) for r in ledger.unfinished(ENV)] == [(old, "draining")]
    ledger.mark_retired(old)
    retired = ledger.get(old)
    assert retired is not None and retired.state == "retired" and retired.ended_at
    assert retired.serving_since is not None  # kept: when it served
    serving = ledger.serving(ENV)
    assert serving is not None and (serving.version, serving.previous) == ("0.2.0", "0.1.0")
    assert [r.version for r in ledger.history(ENV)] == ["0.2.0", "0.1.0"]  # newest first
    assert [r.version for r in ledger.history(ENV, limit=1)] == ["0.2.0"]


def test_mark_serving_refuses_while_another_serves_unless_it_names_that_one(
        ledger: DeploymentLedger) -> None:
    old = begin(ledger, "0.1.0")
    ledger.mark_serving(old)
    new = begin(ledger, "0.2.0")
    with pytest.raises(LedgerConflict, match=r"deployment 1 \(v0.1.0\) serves production, "
                                             r"not the one deployment 2 was to replace"):
        ledger.mark_serving(new)
    third = begin(ledger, "0.3.0")
    with pytest.raises(LedgerConflict, match="was to replace"):
        ledger.mark_serving(new, replaces=third)  # names a row that does not serve
    assert states(ledger) == {"0.1.0": "serving", "0.2.0": "starting", "0.3.0": "starting"}
    ledger.mark_serving(new, replaces=old)
    ledger.mark_retired(old)
    ledger.mark_retired(new)  # taken down: nothing serves
    # A deploy that checked against 0.2.0 finds it gone: something else moved it first.
    with pytest.raises(LedgerConflict, match=r"deployment 2 no longer serves production "
                                             r"\(retired\)"):
        ledger.mark_serving(third, replaces=new)
    assert states(ledger) == {"0.1.0": "retired", "0.2.0": "retired", "0.3.0": "starting"}
    ledger.mark_serving(third)


def test_refused_failed_abandoned_record_why_and_leave_the_serving_one_alone(
        ledger: DeploymentLedger) -> None:
    blue = begin(ledger, "0.1.0")
    ledger.mark_serving(blue)
    refused, failed, abandoned = (begin(ledger, v) for v in ("0.2.0", "0.3.0", "0.4.0"))
    ledger.mark_refused(refused, "smoke", "agreement 0.50 < 0.95")
    ledger.mark_failed(failed, "health", "the server exited with 1")
    ledger.mark_abandoned(abandoned, "an earlier ftci deploy was killed")
    rows = {r.version: r for r in ledger.history(ENV)}
    assert (rows["0.2.0"].state, rows["0.2.0"].step, rows["0.2.0"].reason) == \
        ("refused", "smoke", "agreement 0.50 < 0.95")
    assert (rows["0.3.0"].state, rows["0.3.0"].step) == ("failed", "health")
    assert (rows["0.4.0"].state, rows["0.4.0"].step, rows["0.4.0"].reason) == \
        ("abandoned", None, "an earlier ftci deploy was killed")
    assert all(rows[v].ended_at and rows[v].serving_since is None
               for v in ("0.2.0", "0.3.0", "0.4.0"))
    serving = ledger.serving(ENV)
    assert serving is not None and serving.id == blue


@pytest.mark.parametrize("final", ["refused", "failed", "abandoned", "retired"])
def test_a_finished_deployment_takes_no_transition(ledger: DeploymentLedger,
                                                   final: str) -> None:
    row = begin(ledger, "0.1.0")
    if final == "retired":
        ledger.mark_serving(row)
        ledger.mark_retired(row)
    elif final == "abandoned":
        ledger.mark_abandoned(row, "killed")
    else:
        getattr(ledger, f"mark_{final}")(row, "smoke", "no")
    before = ledger.get(row)
    attempts = [lambda: ledger.mark_serving(row), lambda: ledger.mark_retired(row),
                lambda: ledger.mark_refused(row, "x", "y"),
                lambda: ledger.mark_failed(row, "x", "y"),
                lambda: ledger.mark_abandoned(row, "z"), lambda: ledger.update_checks(row, {}),
                lambda: ledger.update_server(row, {"port": 1})]
    for attempt in attempts:
        with pytest.raises(LedgerConflict, match=f"deployment {row} \\(v0.1.0\\) is {final}"):
            attempt()
    assert ledger.get(row) == before


def test_transitions_out_of_order_are_refused(ledger: DeploymentLedger) -> None:
    row = begin(ledger, "0.1.0")
    with pytest.raises(LedgerConflict, match="is starting; retired needs draining or serving"):
        ledger.mark_retired(row)
    ledger.mark_serving(row)
    for wrong in (lambda: ledger.mark_refused(row, "smoke", "no"),
                  lambda: ledger.mark_abandoned(row, "killed"),
                  lambda: ledger.update_server(row, {"port": 9})):
        with pytest.raises(LedgerConflict, match="is serving"):
            wrong()
    with pytest.raises(LedgerConflict, match="no deployment 99"):
        ledger.mark_failed(99, "start", "x")
    assert states(ledger) == {"0.1.0": "serving"}


def test_the_database_itself_enforces_one_serving_row_and_final_states(
        ledger: DeploymentLedger) -> None:
    """A writer that bypasses the transitions (a bug, another tool) still cannot break the
    invariants: the unique index and the triggers refuse."""
    first, second = begin(ledger, "0.1.0"), begin(ledger, "0.2.0")
    ledger.mark_serving(first)
    ledger.close()
    with sqlite3.connect(ledger.ledger) as db:
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            db.execute("UPDATE deployments SET state = 'serving' WHERE id = ?", (second,))
        with pytest.raises(sqlite3.IntegrityError, match="kept"):
            db.execute("DELETE FROM deployments")
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            db.execute("UPDATE deployments SET state = 'paused' WHERE id = ?", (second,))
    ledger.mark_abandoned(second, "killed")
    with sqlite3.connect(ledger.ledger) as db, \
            pytest.raises(sqlite3.IntegrityError, match="finished deployment"):
        db.execute("UPDATE deployments SET state = 'starting' WHERE id = ?", (second,))


def test_environments_are_separate(ledger: DeploymentLedger) -> None:
    prod, staging = begin(ledger, "0.1.0"), begin(ledger, "0.2.0", environment="staging")
    ledger.mark_serving(prod)
    ledger.mark_serving(staging)  # staging's serving row does not block production's
    assert states(ledger) == {"0.1.0": "serving"}
    assert states(ledger, "staging") == {"0.2.0": "serving"}


def test_begin_refuses_a_bad_field_before_writing_anything(ledger: DeploymentLedger) -> None:
    with pytest.raises(BadInputError, match="engine"):
        ledger.begin(environment=ENV, project="p", version="0.1.0", release_key="k",
                     engine="llamacpp", launcher="process", endpoint="http://x/v1",
                     server={"port": 1}, by="ci", previous=None)
    with pytest.raises(BadInputError, match="smoke.agreement"):
        ledger.update_checks(begin(ledger, "0.1.0"), {"smoke": {"agreement": "most"}})
    assert [r.checks.to_dict() for r in ledger.history(ENV)] == [{}]


def test_the_ledger_path_may_be_the_directory_or_the_file(tmp_path: Path) -> None:
    with DeploymentLedger(tmp_path / "env") as by_dir:
        by_dir.mark_serving(begin(by_dir, "0.1.0"))
    with DeploymentLedger(tmp_path / "env" / LEDGER) as by_file:
        serving = by_file.serving(ENV)
        assert serving is not None and serving.version == "0.1.0"


def test_deployments_home_lies_beside_the_registry_under_ftci_home(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTCI_HOME", str(tmp_path / "home"))
    assert deployments_home("intents", "production") == \
        tmp_path / "home" / "deployments" / "intents" / "production"
    for project, environment in (("../etc", "production"), ("intents", "a/b"), ("", "x")):
        with pytest.raises(BadInputError, match="cannot name a directory"):
            deployments_home(project, environment)


def test_a_record_round_trips_through_its_contract(ledger: DeploymentLedger) -> None:
    row = begin(ledger, "0.1.0")
    ledger.update_server(row, handle(8100, "0.1.0") | {"extra": {"container": None}})
    ledger.mark_refused(row, "identity", "serves /other")
    record = ledger.get(row)
    assert record is not None
    again = DeploymentRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record and again.to_dict()["server"]["extra"] == {"container": None}


def test_a_corrupt_ledger_is_bad_input_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "env" / LEDGER
    path.parent.mkdir()
    path.write_bytes(b"this is not a database, it is a shopping list\n" * 100)
    with DeploymentLedger(path.parent) as ledger, pytest.raises(BadInputError) as caught:
        ledger.serving(ENV)
    assert str(path) in caught.value.message and "not a readable deployments ledger" in \
        caught.value.message
    assert caught.value.hint and "move it aside" in caught.value.hint


def test_a_row_with_garbled_json_is_bad_input_naming_the_row(tmp_path: Path) -> None:
    with DeploymentLedger(tmp_path) as ledger:
        row = begin(ledger, "0.1.0")
    with sqlite3.connect(tmp_path / LEDGER) as db:
        db.execute("UPDATE deployments SET server = '{not json' WHERE id = ?", (row,))
    with DeploymentLedger(tmp_path) as ledger, \
            pytest.raises(BadInputError, match=rf"ledger.sqlite \(deployment {row}\): not a "):
        ledger.history(ENV)


def test_a_ledger_from_a_newer_ftci_is_refused_with_the_upgrade_hint(tmp_path: Path) -> None:
    with DeploymentLedger(tmp_path) as ledger:
        begin(ledger, "0.1.0")
    with sqlite3.connect(tmp_path / LEDGER) as db:
        db.execute("PRAGMA user_version = 7")
    with DeploymentLedger(tmp_path) as ledger, pytest.raises(BadInputError) as caught:
        ledger.serving(ENV)
    assert caught.value.message == (f"{tmp_path / LEDGER}: deployments ledger format 7 is "
                                    "newer than this ftci reads (1)")
    assert caught.value.hint == "upgrade ftci"


def test_the_ledger_is_wal_with_full_sync(ledger: DeploymentLedger) -> None:
    begin(ledger, "0.1.0")
    db = ledger._sqlite.db
    assert db is not None
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000


RACER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ftci.deploy.ledger import DeploymentLedger, LedgerConflict
    path, version, blue, go = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    with DeploymentLedger(path) as ledger:
        row = ledger.begin(environment="production", project="intents", version=version,
                           release_key="k", engine="vllm", launcher="process",
                           endpoint="http://127.0.0.1:8080/v1", server={"port": 1}, by=version,
                           previous=None)
        while not go.exists():
            time.sleep(0.01)
        try:
            ledger.mark_serving(row, replaces=blue)
        except LedgerConflict as exc:
            print("conflict:", exc.message)
            sys.exit(3)
    print("serving")
""")


def test_two_deploys_racing_to_replace_the_same_blue_one_wins(tmp_path: Path) -> None:
    """Two real processes, each checked against the same serving row, switch at once: the
    transaction re-reads the serving row, so exactly one serves and the other is refused."""
    with DeploymentLedger(tmp_path) as ledger:
        blue = begin(ledger, "0.1.0")
        ledger.mark_serving(blue)
    go = tmp_path / "go"
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path), version,
                                str(blue), str(go)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for version in ("a", "b")]
    with DeploymentLedger(tmp_path) as ledger:
        deadline = time.monotonic() + 60
        while len(ledger.history(ENV)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    go.touch()
    outputs = [racer.communicate(timeout=60) for racer in racers]
    codes = sorted(racer.returncode for racer in racers)
    assert codes == [0, 3], outputs
    assert any("conflict:" in out and "not the one deployment" in out for out, _ in outputs)
    with DeploymentLedger(tmp_path) as ledger:
        found = states(ledger)
    winner = next(v for v, (out, _) in zip("ab", outputs, strict=True) if "serving" in out)
    loser = "b" if winner == "a" else "a"
    assert found == {"0.1.0": "draining", winner: "serving", loser: "starting"}


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ftci.deploy.ledger import DeploymentLedger
    with DeploymentLedger(Path(sys.argv[1])).exclusive(by="holder"):
        print("held", flush=True)
        time.sleep(120)
""")


def test_the_deploy_lock_refuses_a_second_holder_and_a_killed_holder_leaves_none(
        tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        ledger = DeploymentLedger(tmp_path)
        with pytest.raises(InfraError) as caught, ledger.exclusive(by="second", wait=0.3):
            pass
        assert f"another ftci deploy holds this environment (pid {holder.pid}, by holder" in \
            caught.value.message
    finally:
        os.kill(holder.pid, 9)
        holder.wait(timeout=30)
    entered = []
    with ledger.exclusive(by="after the kill"):
        entered.append(True)
        with pytest.raises(InfraError), DeploymentLedger(tmp_path).exclusive(by="nested"):
            pass  # flock is per open file: a second open in this process is refused too
    assert entered == [True]
