"""Which version a release gets: semver, immutable, decided by what changed.

- The **model key** names the served artifact: the run key (data, train config, base model,
  code) and the release settings that shape the files (merge, quantization scheme and
  calibration). The **release key** adds what the release only records: the eval config, the
  eval suites' files and the test split. The release key is written `<model key>.<evidence
  key>`, so every registry's record of a version carries both (ftci/release/flow.py).
- Same commit as a released version, or the same release key: nothing new; "already released
  as vX.Y.Z" (exit 0). A rerun after a crash completes the version it started instead
  (flow.py), so reruns never mint a second number.
- `release.version: auto`: the first release is 0.1.0; a new model key bumps the minor of the
  highest version (a data or config change); the same model key with a new release key bumps
  the patch (an eval-only change: new evidence for the same artifact, which is reused, not
  rebuilt). Majors are never automatic: set `release.version` explicitly.
- An explicit `release.version` wins, if no other release holds it (versions are immutable).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ftci.errors import BadInputError

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
FIRST = "0.1.0"


def parse(version: str) -> tuple[int, int, int]:
    match = SEMVER.match(version.removeprefix("v"))
    if match is None:
        raise BadInputError(f"{version!r} is not a version X.Y.Z",
                            hint="versions are semver: MAJOR.MINOR.PATCH, e.g. 1.4.0")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def highest(versions: Sequence[str]) -> str | None:
    return max(versions, key=parse) if versions else None


@dataclass(frozen=True)
class Released:
    """What the decision needs of one released version."""

    version: str
    commit: str | None
    release_key: str

    @property
    def model_key(self) -> str:
        return model_key_of(self.release_key)


def release_key(model_key: str, evidence_key: str) -> str:
    return f"{model_key}.{evidence_key}"


def model_key_of(key: str) -> str:
    return key.split(".", 1)[0]


@dataclass(frozen=True)
class Decision:
    version: str
    bump: str  # first | minor | patch | explicit | already
    previous: str | None  # the highest version before this one
    reuse: str | None = None  # patch: the version whose artifact is reused

    @property
    def already(self) -> bool:
        return self.bump == "already"


def decide(released: Sequence[Released], *, setting: str, commit: str | None,
           model_key: str, release_key: str) -> Decision:
    """The version for a release of `commit` with these keys (see the module docstring)."""
    top = highest([each.version for each in released])
    for each in released:
        if (commit is not None and each.commit == commit) or each.release_key == release_key:
            return Decision(each.version, "already", top)
    if setting != "auto":
        wanted = setting.removeprefix("v")
        parse(wanted)
        if any(each.version == wanted for each in released):
            raise BadInputError(
                f"release.version {wanted} is already released from another commit; versions "
                "are immutable", hint="set release.version to a new version, or to auto")
        return Decision(wanted, "explicit", top)
    if top is None:
        return Decision(FIRST, "first", None)
    major, minor, patch = parse(top)
    latest = next(each for each in released if each.version == top)
    if latest.model_key == model_key:
        return Decision(f"{major}.{minor}.{patch + 1}", "patch", top, reuse=top)
    return Decision(f"{major}.{minor + 1}.0", "minor", top)
