"""The release's git side: the annotated tag `<project>@vX.Y.Z` (GTO's convention) and its push.

Tags are immutable: creating a tag that exists on the same commit is a no-op, on another
commit an error that says how to fix it; pushing a tag the remote already holds on the same
commit succeeds. The push token (the workflow's GITHUB_TOKEN) reaches git the way
actions/checkout hands it over, as an `http.<server>/.extraheader` through GIT_CONFIG_COUNT/
GIT_CONFIG_KEY_n/GIT_CONFIG_VALUE_n in git's environment: never on a command line (which
`ps` shows), never in the repository's config, never printed (git's messages are redacted).
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path

from ftci.errors import BadInputError, InfraError
from ftci.release.version import SEMVER

DEFAULT_NAME = "ftci"
DEFAULT_EMAIL = "ftci@users.noreply.github.com"
DEFAULT_SERVER = "https://github.com"
GIT_TIMEOUT = 300  # a push of a tag is small; a stuck network is not waited on for ever


def _run(root: Path, *args: str, env: dict[str, str] | None = None,
         timeout: float = GIT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              env=env, timeout=timeout, check=False)
    except FileNotFoundError:
        raise InfraError("git is not installed",
                         hint="install git (a release tags its commit)") from None
    except subprocess.TimeoutExpired:
        raise InfraError(f"git {args[0]} did not finish in {timeout:g} s",
                         hint="check the network and the remote") from None


def head_commit(root: Path) -> str:
    """The full SHA of HEAD in the repository that holds `root`."""
    done = _run(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if done.returncode != 0:
        inside = _run(root, "rev-parse", "--is-inside-work-tree")
        if inside.returncode != 0:
            raise BadInputError(f"{root} is not in a git repository",
                                hint="a release tags a commit: run it in a clone (`git init`, "
                                "commit the data and ftci.yaml)")
        raise BadInputError(f"{root}: the git repository has no commits",
                            hint="commit the data and ftci.yaml first")
    return done.stdout.strip()


def tag_commit(root: Path, tag: str) -> str | None:
    """The commit an existing tag points to (peeled through annotated tags), or None."""
    done = _run(root, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}")
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def release_tags(root: Path, project: str) -> list[tuple[str, str]]:
    """(tag, version) of every `<project>@vX.Y.Z` tag, oldest version first (semver order:
    0.10.0 after 0.9.0). Tags of other projects and non-semver suffixes are left out."""
    prefix = f"{project}@v"
    done = _run(root, "tag", "--list", f"{prefix}*")
    if done.returncode != 0:
        return []
    found: list[tuple[tuple[int, int, int], str, str]] = []
    for tag in done.stdout.split():
        version = tag[len(prefix):]
        match = SEMVER.match(version)
        if tag.startswith(prefix) and match is not None:
            key = (int(match.group(1)), int(match.group(2)), int(match.group(3)))
            found.append((key, tag, version))
    return [(tag, version) for _, tag, version in sorted(found)]


def check_tag_name(root: Path, tag: str) -> None:
    """BadInputError unless `refs/tags/<tag>` is a valid ref (`git check-ref-format`)."""
    done = _run(root, "check-ref-format", f"refs/tags/{tag}")
    if done.returncode != 0:
        raise BadInputError(f"{tag!r} is not a valid git tag name",
                            hint="project.name becomes the tag `<name>@vX.Y.Z`: use letters, "
                            "digits, '.', '_' and '-'")


def create_tag(root: Path, tag: str, commit: str, message: str) -> bool:
    """Create the annotated tag `tag` on `commit`: True if created, False if it already points
    there; BadInputError if it points elsewhere (tags are immutable)."""
    check_tag_name(root, tag)
    existing = tag_commit(root, tag)
    if existing is None:
        resolved = _run(root, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
        if resolved.returncode != 0:
            raise BadInputError(f"cannot tag {tag}: commit {commit[:12]} is not in this clone",
                                hint="fetch it (`git fetch origin`; the release workflow "
                                "checks out with fetch-depth: 0)")
        target = resolved.stdout.strip()
        done = _run(root, "tag", "--annotate", "--message", message, tag, target,
                    env=_identity_env(root))
        if done.returncode == 0:
            return True
        existing = tag_commit(root, tag)  # someone else made it in between
        if existing is None:
            raise InfraError(f"git tag {tag} failed: {done.stderr.strip()[:500]}")
        commit = target
    if _same_commit(root, existing, commit):
        return False
    raise BadInputError(
        f"the tag {tag} already exists on commit {existing[:12]}, not on {commit[:12]}: "
        "release tags are immutable",
        hint=f"if {tag} was made by mistake and nobody uses it, delete it (`git tag -d {tag}` "
        f"and `git push origin :refs/tags/{tag}`); else release another version "
        "(release.version)")


def push_tag(root: Path, tag: str, *, remote: str = "origin", token: str | None = None) -> None:
    """`git push <remote> refs/tags/<tag>`. The remote holding the same tag on the same commit
    (even as another tag object) is success; any other rejection is an InfraError."""
    env = _push_env(token)
    ref = f"refs/tags/{tag}"
    done = _run(root, "push", "--porcelain", remote, f"{ref}:{ref}", env=env)
    if done.returncode == 0:
        return
    local = tag_commit(root, tag)
    listed = _run(root, "ls-remote", remote, ref, f"{ref}^{{}}", env=env)
    if listed.returncode == 0 and local is not None:
        remote_refs: dict[str, str] = {}
        for line in listed.stdout.splitlines():
            sha, _, name = line.partition("\t")
            remote_refs[name.strip()] = sha.strip()
        there = remote_refs.get(f"{ref}^{{}}") or remote_refs.get(ref)
        if there == local:
            return  # the same release, tagged by an earlier run
    detail = _redact(f"{done.stderr.strip()}\n{done.stdout.strip()}".strip(), token)
    raise InfraError(f"git push {remote} {ref} was rejected:\n{detail[-2000:]}",
                     hint="the release job needs `permissions: contents: write`; a tag that "
                     "exists on the remote on another commit must be deleted there first "
                     "(tags are immutable)")


def _same_commit(root: Path, left: str, right: str) -> bool:
    if left == right:
        return True
    done = _run(root, "rev-parse", "--verify", "--quiet", f"{right}^{{commit}}")
    return done.returncode == 0 and done.stdout.strip() == left


def _identity_env(root: Path) -> dict[str, str]:
    """This process's environment, with the tagger identity ftci's when neither the
    environment nor git's config has one (the user's config is never changed)."""
    env = dict(os.environ)
    for part, default in (("NAME", DEFAULT_NAME), ("EMAIL", DEFAULT_EMAIL)):
        if env.get(f"GIT_COMMITTER_{part}"):
            continue
        configured = _run(root, "config", "--get", f"user.{part.lower()}")
        if configured.returncode != 0 or not configured.stdout.strip():
            env[f"GIT_COMMITTER_{part}"] = default
    return env


def _push_env(token: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"  # a missing credential fails instead of waiting for input
    if not token:
        return env
    server = (os.environ.get("GITHUB_SERVER_URL") or DEFAULT_SERVER).rstrip("/")
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode("ascii")
    raw = env.get("GIT_CONFIG_COUNT", "0")
    count = int(raw) if raw.isdigit() else 0  # after any the caller's environment set
    env[f"GIT_CONFIG_KEY_{count}"] = f"http.{server}/.extraheader"
    env[f"GIT_CONFIG_VALUE_{count}"] = f"AUTHORIZATION: basic {basic}"
    env["GIT_CONFIG_COUNT"] = str(count + 1)
    return env


def _redact(text: str, token: str | None) -> str:
    if not token:
        return text
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode("ascii")
    return re.sub(re.escape(basic), "***", text).replace(token, "***")
