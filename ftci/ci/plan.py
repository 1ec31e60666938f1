"""`ftci plan`: which pipeline stages a pull request's diff needs, and the run key.

The diff is `git diff BASE...HEAD` (from the merge base, as GitHub shows a pull request: a base
branch that moved on does not count as a change). Each changed file is one of:

- a training input: a file of a data source (`data.sources[].path`: file, directory or glob,
  relative to the config's directory; in a directory only data files count, as the loader reads
  them), the config file itself, `train.chat_template`, `task.output_schema`, or a local
  `base_model` directory inside the repository, or anything under a state directory (ftci's
  state is never taken from the repository: see ftci/state.py). Stages: data, train, eval.
- an eval input: under an `eval.suites` path (any file: conftest.py and fixtures matter too),
  `eval.forgetting.passages`, or an `eval.forgetting.lm_eval_tasks` YAML path. Stage: eval,
  against the existing candidate.
- anything else (docs, workflows, code): no stage.

The run key is computed on this checkout with `compute_run_inputs`, exactly as `ftci train`
does: it is the key on a machine like this one (the key includes the device class and library
versions). Where it cannot be computed (a starter model not pulled, unreadable data) the plan
still decides the stages and says why the key is missing: the data stage reports bad data.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ftci.ci.trust import TrustDecision, trust_decision
from ftci.errors import BadInputError, FtciError
from ftci.state import STATE_DIR

FETCH_HINT = ("fetch the base branch and its history: actions/checkout with fetch-depth: 0, "
              "or `git fetch origin BASE`")
_GLOB_CHARS = frozenset("*?[")


@dataclass
class Plan:
    """What a diff needs. `training_inputs`/`eval_inputs`/`other` partition `changed`."""

    base: str
    head: str
    merge_base: str
    changed: list[str]
    training_inputs: list[str]
    eval_inputs: list[str]
    other: list[str]
    run_key: str | None
    run_key_error: str | None
    cache_hit: bool
    run_dir: str | None
    trust: TrustDecision
    notes: list[str] = field(default_factory=list)

    @property
    def data(self) -> bool:
        return bool(self.training_inputs)

    @property
    def train(self) -> bool:
        return bool(self.training_inputs)

    @property
    def eval(self) -> bool:
        return bool(self.training_inputs or self.eval_inputs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base, "head": self.head, "merge_base": self.merge_base,
            "stages": {"data": self.data, "train": self.train, "eval": self.eval},
            "changed_files": len(self.changed),
            "training_inputs": self.training_inputs, "eval_inputs": self.eval_inputs,
            "other": self.other,
            "run_key": self.run_key, "run_key_error": self.run_key_error,
            "cache_hit": self.cache_hit, "run_dir": self.run_dir,
            "trust": self.trust.to_dict(), "notes": self.notes,
        }

    def github_outputs(self) -> dict[str, str]:
        """The `$GITHUB_OUTPUT` values the workflow's `if:` conditions read."""
        def flag(value: bool) -> str:
            return "true" if value else "false"

        return {"data": flag(self.data), "train": flag(self.train), "eval": flag(self.eval),
                "run-key": self.run_key or "", "cache-hit": flag(self.cache_hit),
                "changed-files": str(len(self.changed)), "trusted": flag(self.trust.trusted)}


def make_plan(config_path: str | Path | None, overrides: Sequence[str] = (), *,
              base: str | None = None, head: str | None = None,
              environ: Mapping[str, str] = os.environ) -> Plan:
    """Diff BASE...HEAD in the config's repository, classify the files, compute the run key."""
    from ftci.config import load_config

    loaded = load_config(config_path, overrides, lint=False)
    root = loaded.root.resolve()
    toplevel = Path(_git(root, "rev-parse", "--show-toplevel",
                         what=f"{root} is not inside a git repository",
                         hint="run ftci plan in a clone of the repository (in CI: "
                         "actions/checkout with fetch-depth: 0)")).resolve()
    base = base or default_base(root, environ)
    head = head or "HEAD"
    for ref in (base, head):
        _verify_ref(root, ref)
    merge_base = _git(root, "merge-base", base, head,
                      what=f"{base} and {head} have no common ancestor in this clone")
    raw = _git(root, "diff", "--name-only", "-z", "--no-renames", f"{base}...{head}", "--",
               what=f"cannot diff {base}...{head}")
    changed = sorted(name for name in raw.split("\0") if name)
    classifier = Classifier(loaded.config, root, toplevel, loaded.path.resolve())
    training: list[str] = []
    evals: list[str] = []
    other: list[str] = []
    for name in changed:
        kind = classifier.kind(name)
        (training if kind == "train" else evals if kind == "eval" else other).append(name)
    key, key_error, notes = _run_key(loaded, root)
    cached = None
    if key is not None:
        from ftci.train.cache import find_cached

        cached = find_cached(root, key)
    return Plan(base=base, head=head, merge_base=merge_base, changed=changed,
                training_inputs=training, eval_inputs=evals, other=other, run_key=key,
                run_key_error=key_error, cache_hit=cached is not None,
                run_dir=None if cached is None else str(cached.run_dir),
                trust=trust_decision(environ), notes=notes)


def default_base(repo: Path, environ: Mapping[str, str] = os.environ) -> str:
    """`origin/$GITHUB_BASE_REF` in a pull request job, else origin/main, else main."""
    if environ.get("GITHUB_BASE_REF"):
        return "origin/" + environ["GITHUB_BASE_REF"]
    for candidate in ("origin/main", "main"):
        if _ref_exists(repo, candidate):
            return candidate
    raise BadInputError("no base to compare with: neither origin/main nor main exists",
                        hint=f"pass --base REF; in CI, {FETCH_HINT}")


class Classifier:
    """Maps a changed path (relative to the repository top) to "train", "eval" or "other"."""

    def __init__(self, config: Any, root: Path, toplevel: Path, config_file: Path) -> None:
        from ftci.data.loaders import DATA_SUFFIXES

        self.suffixes = DATA_SUFFIXES
        self.toplevel = toplevel
        self.root = root
        self.data = [p for p in (self._repo_path(s.path) for s in config.data.sources) if p]
        exact = [str(config_file), config.train.chat_template, config.task.output_schema]
        self.training_files = {p for p in map(self._repo_path, filter(None, exact)) if p}
        model = self._repo_path(config.base_model)
        self.model_dir = model if model and (toplevel / model).is_dir() else None
        forgetting = config.eval.forgetting
        evals = [s for s in config.eval.suites if not s.startswith("builtin:")]
        evals += [forgetting.passages] if forgetting.passages else []
        evals += [t for t in forgetting.lm_eval_tasks if t.endswith((".yaml", ".yml"))]
        self.evals = [p for p in map(self._repo_path, evals) if p]

    def kind(self, name: str) -> str:
        if STATE_DIR in PurePosixPath(name).parts:
            return "train"  # committed ftci state: never trusted, every stage runs (ftci.state)
        if name in self.training_files or any(self._in_data(pattern, name)
                                              for pattern in self.data):
            return "train"
        if self.model_dir is not None and _under(name, self.model_dir):
            return "train"
        if any(name == path or _under(name, path) or _glob_covers(path, name)
               for path in self.evals):
            return "eval"
        return "other"

    def _repo_path(self, given: str) -> str | None:
        """`given` (relative to the config's directory) relative to the repository top, or None
        when it lies outside the repository (then no diff can touch it)."""
        path = Path(given).expanduser()
        full = path if path.is_absolute() else self.root / path
        normal = posixpath.normpath(full.as_posix())
        top = self.toplevel.as_posix()
        if normal == top:
            return "."
        return normal[len(top) + 1:] if normal.startswith(top + "/") else None

    def _in_data(self, pattern: str, name: str) -> bool:
        parts = PurePosixPath(name).parts
        if _GLOB_CHARS.isdisjoint(pattern):
            if name == pattern:
                return True
            prefix = () if pattern == "." else PurePosixPath(pattern).parts
            return parts[:len(prefix)] == prefix and self._data_file(parts[len(prefix):])
        pattern_parts = PurePosixPath(pattern).parts
        for depth in range(1, len(parts) + 1):
            if _match_parts(pattern_parts, parts[:depth]):
                if depth == len(parts) or self._data_file(parts[depth:]):
                    return True
        return False

    def _data_file(self, below: Sequence[str]) -> bool:
        """A file the loader reads from a source directory: no hidden part, a data suffix."""
        return bool(below) and not any(part.startswith(".") for part in below) and \
            below[-1].lower().endswith(self.suffixes)


def _under(name: str, folder: str) -> bool:
    return folder == "." or name.startswith(folder.rstrip("/") + "/")


def _glob_covers(pattern: str, name: str) -> bool:
    if _GLOB_CHARS.isdisjoint(pattern):
        return False
    parts = PurePosixPath(name).parts
    pattern_parts = PurePosixPath(pattern).parts
    return any(_match_parts(pattern_parts, parts[:depth]) for depth in range(1, len(parts) + 1))


def _match_parts(pattern: Sequence[str], parts: Sequence[str]) -> bool:
    """Glob match by path component; `**` matches any number of components."""
    if not pattern:
        return not parts
    first, rest = pattern[0], pattern[1:]
    if first == "**":
        return any(_match_parts(rest, parts[index:]) for index in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], first) and _match_parts(rest, parts[1:])


def _run_key(loaded: Any, root: Path) -> tuple[str | None, str | None, list[str]]:
    from ftci.train.runkey import compute_run_inputs

    try:
        inputs = compute_run_inputs(loaded, root)
    except FtciError as exc:
        return None, exc.render() + (f" ({exc.hint})" if exc.hint else ""), []
    return inputs.key, None, list(inputs.notes)


def _ref_exists(repo: Path, ref: str) -> bool:
    done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                          cwd=repo, capture_output=True, text=True, check=False)
    return done.returncode == 0


def _verify_ref(repo: Path, ref: str) -> None:
    if ref.startswith("-") or not ref.strip():
        raise BadInputError(f"`{ref}` is not a git ref", hint="pass a branch, tag or commit")
    if not _ref_exists(repo, ref):
        raise BadInputError(f"unknown git ref `{ref}` in {repo}", hint=FETCH_HINT)


def _git(repo: Path, *args: str, what: str, hint: str = FETCH_HINT) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                              check=False)
    except OSError as exc:
        raise BadInputError(f"cannot run git: {exc}", hint="install git") from exc
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()
        raise BadInputError(what + (f": {detail[-1]}" if detail else ""), hint=hint)
    return done.stdout.rstrip("\n")


def append_github_output(path: str | Path, values: Mapping[str, str]) -> None:
    """Append `key=value` lines in one write(2) on an O_APPEND descriptor: another step's
    output lines are never interleaved with ours."""
    for key, value in values.items():
        if "\n" in key or "\n" in value or "=" in key:
            raise ValueError(f"cannot write output {key!r}: newline or '=' in it")
    data = "".join(f"{key}={value}\n" for key, value in values.items()).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"short write to {path}: {written} of {len(data)} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)
