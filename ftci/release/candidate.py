"""Find the candidate a release ships: the training run of main's run key, and the eval results
that approved it.

Main's HEAD has the merged pull request's data and config, so it has the run key the pull
request trained and evaluated. Where the run comes from, in order:

1. this machine's state directory, `runs/<key>/` (the self-hosted runner, or a developer's
   checkout);
2. in GitHub Actions, the `ftci-train-eval` artifact the PR workflow uploaded for that key
   (ftci/release/github.py `download_candidate`, found through the Actions REST API).

Either way every file the run's manifest lists is re-hashed (size and sha256) before anything
is merged: a run directory or artifact that does not match its manifest never releases. The
eval results are the newest `results.json` whose candidate is this run and whose gates all
passed (the report directory of the local state, or the artifact's).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ftci.errors import BadInputError


@dataclass(frozen=True)
class Candidate:
    run_dir: Path
    results_path: Path | None  # the eval results that approved it
    source: str  # "local <state dir>/runs/<key>" or "artifact ftci-train-eval #id"


def verify_run_files(run_dir: Path) -> dict[str, object]:
    """The run's manifest, after checking every file it lists; BadInputError on a mismatch."""
    from ftci.contracts import RunManifest
    from ftci.digests import sha256_file

    manifest = RunManifest.read(run_dir / "manifest.json")
    if not manifest.complete:
        raise BadInputError(f"{run_dir}: the run is not complete (manifest.complete is false)",
                            hint="train it again: `ftci train`")
    for relative, entry in manifest.files.items():
        path = run_dir / relative
        if not path.is_file():
            raise BadInputError(f"{path}: missing; the run's manifest lists it",
                                hint="the run directory is damaged: train again")
        if path.stat().st_size != entry.size or sha256_file(path) != entry.sha256:
            raise BadInputError(f"{path}: does not match the run's manifest (sha256 "
                                f"{entry.sha256[:12]}...)",
                                hint="someone changed the run after training; train again")
    return manifest.to_dict()


def results_for(reports: Path, run_key: str) -> Path | None:
    """The newest results.json under `reports` (one directory per eval) that evaluated run
    `run_key` as the candidate and passed."""
    from ftci.contracts import EvalResults

    found: list[tuple[str, Path]] = []
    for path in reports.glob("*/results.json"):
        try:
            results = EvalResults.read(path)
        except BadInputError:
            continue
        candidate = results.candidate
        key = (candidate.details.get("run_key") or candidate.spec) if candidate else None
        if key == run_key and results.all_passed:
            found.append((results.created_at or path.parent.name, path))
    return max(found)[1] if found else None


def find_candidate(root: Path, run_key: str, work: Path) -> Candidate | None:
    """The verified candidate for `run_key`, or None when neither place has it."""
    from ftci.state import reports_dir
    from ftci.train.cache import find_cached

    cached = find_cached(root, run_key)
    if cached is not None:
        verify_run_files(cached.run_dir)
        return Candidate(cached.run_dir, results_for(reports_dir(root), run_key),
                         f"local {cached.run_dir}")
    token, repository = os.environ.get("GITHUB_TOKEN"), os.environ.get("GITHUB_REPOSITORY")
    if os.environ.get("GITHUB_ACTIONS") == "true" and token and repository:
        from ftci.release.github import download_candidate

        api = os.environ.get("GITHUB_API_URL", "https://api.github.com")
        found = download_candidate(api, repository, token, run_key, work / "artifact",
                                   heads=trusted_heads(root, api, repository, token))
        if found is not None:
            verify_run_files(found.run_dir)
            results = found.results_path
            if results is None:
                results = results_for(found.run_dir.parent.parent / "reports", run_key)
            return Candidate(found.run_dir, results, found.source)
    return None


def trusted_heads(root: Path, api: str, repository: str, token: str) -> set[str]:
    """The commits whose PR workflow runs may supply the candidate: HEAD, and the head of the
    pull request merged as HEAD (what the maintainer approved by merging)."""
    from ftci.release import gitops
    from ftci.release.github import merged_pull

    try:
        head = gitops.head_commit(root)
    except BadInputError:
        return set()
    heads = {head}
    pull = merged_pull(api, repository, token, head)
    sha = (pull or {}).get("head", {}).get("sha") if pull else None
    if isinstance(sha, str):
        heads.add(sha)
    return heads


def where_looked(root: Path, run_key: str) -> str:
    from ftci.train.cache import run_dir_for

    places = [str(run_dir_for(root, run_key))]
    if os.environ.get("GITHUB_ACTIONS") == "true":
        places.append(f"the ftci-train-eval artifacts of {os.environ.get('GITHUB_REPOSITORY')} "
                      "uploaded by workflow runs at HEAD or at the head of the pull request "
                      "merged as HEAD (artifacts of other commits are not trusted)")
    return " and ".join(places)
