"""Semver decisions: first, minor for a new model key, patch for new evidence only, explicit,
and idempotence by commit and by release key (ftci/release/version.py)."""

from __future__ import annotations

import pytest

from ftci.errors import BadInputError
from ftci.release.version import Released, decide, highest, parse, release_key


def rel(version: str, commit: str, model: str, evidence: str) -> Released:
    return Released(version, commit, release_key(model, evidence))


def test_the_first_release_is_0_1_0() -> None:
    decision = decide([], setting="auto", commit="c1", model_key="m1",
                      release_key=release_key("m1", "e1"))
    assert (decision.version, decision.bump, decision.previous) == ("0.1.0", "first", None)


def test_a_new_model_bumps_the_minor_of_the_highest() -> None:
    released = [rel("0.1.0", "c1", "m1", "e1"), rel("0.10.0", "c2", "m2", "e1"),
                rel("0.9.3", "c3", "m3", "e1")]
    decision = decide(released, setting="auto", commit="c4", model_key="m4",
                      release_key=release_key("m4", "e1"))
    assert (decision.version, decision.bump, decision.previous) == ("0.11.0", "minor", "0.10.0")


def test_new_evidence_for_the_same_model_is_a_patch_that_reuses_the_artifact() -> None:
    released = [rel("1.2.0", "c1", "m1", "e1")]
    decision = decide(released, setting="auto", commit="c2", model_key="m1",
                      release_key=release_key("m1", "e2"))
    assert (decision.version, decision.bump, decision.reuse) == ("1.2.1", "patch", "1.2.0")


@pytest.mark.parametrize(("commit", "key"), [("c1", release_key("m9", "e9")),
                                             ("c9", release_key("m1", "e1"))])
def test_the_same_commit_or_release_key_is_already_released(commit: str, key: str) -> None:
    released = [rel("0.1.0", "c1", "m1", "e1"), rel("0.2.0", "c2", "m2", "e2")]
    decision = decide(released, setting="auto", commit=commit, model_key="m9",
                      release_key=key)
    assert decision.already and decision.version == "0.1.0"


def test_an_explicit_version_wins_unless_taken() -> None:
    released = [rel("0.1.0", "c1", "m1", "e1")]
    chosen = decide(released, setting="2.0.0", commit="c2", model_key="m2",
                    release_key=release_key("m2", "e2"))
    assert (chosen.version, chosen.bump) == ("2.0.0", "explicit")
    with pytest.raises(BadInputError, match="immutable"):
        decide(released, setting="0.1.0", commit="c2", model_key="m2",
               release_key=release_key("m2", "e2"))


def test_versions_order_by_number_not_text() -> None:
    assert highest(["0.9.0", "0.10.0", "0.2.1"]) == "0.10.0"
    assert parse("v1.2.3") == (1, 2, 3)
    with pytest.raises(BadInputError, match="X.Y.Z"):
        parse("1.2")
