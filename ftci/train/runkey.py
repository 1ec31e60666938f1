"""The run key: a hash of everything that determines a training run ("Content-addressed").

Same key, same adapter: `ftci train` reuses `runs/<key>/` in the state directory. The inputs,
and why:

- `config`: the resolved config sections that determine training, `task` (type, labels, system
  prompt), `train` (every hyper-parameter, seed included) and `data.split` (ratios). NOT `eval`,
  `release`, `deploy`, `regression`, `data.checks` or `project`: tightening an eval gate or
  changing the deploy target must not retrain. `base_model` enters as the model's identity
  below, not as spelled (a local model moved to another path is the same model).
- `data`: the sha256 of the train and val split files (what training reads). The test split is
  recorded in the run manifest but not keyed: adding a test example does not retrain. The splits
  are kept current here: when the split manifest (`splits/manifest.json` in the state
  directory) is missing, or the data files or the data config changed since it was written (a
  stamp in the state directory's `cache/split-inputs.json`), the split is (re)written exactly as
  `ftci data split` does, and a note says so.
- `base_model`: a starter by name and the sha256 of every file its `ftci-model.json` lists; a
  local directory by the sha256 of its config, tokenizer and safetensors files; a Hub id by id
  and revision. `tokenizer`: the digest of the tokenizer files alone (template included).
- `chat_template`: sha256 of the `train.chat_template` file's text, when set.
- `versions`: python, torch, transformers, peft, bitsandbytes, accelerate, ftci, read with
  `importlib.metadata` (nothing heavy is imported: a cache hit must not pay for torch).
- `device`: the device class, cpu or cuda, from `/dev/nvidia0` or nvidia-smi; `processes`: the
  number of training processes (data-parallel ranks change the effective batch); `seed`.

Timings, paths and dates are not inputs. File hashes are cached per (path, inode, size, mtime,
ctime) in `$FTCI_HOME/cache/digests.json`, so a 5 GB model is hashed once, not on every run. In
GitHub Actions the splits are rewritten once per job whatever their stamp says: files in a
checkout's state directory are never trusted (ftci/state.py).
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci import __version__
from ftci.digests import DigestCache, canonical_json, sha256_text
from ftci.io import atomic_write_text, read_json
from ftci.models.catalog import STARTER_PREFIX
from ftci.models.manifest import MANIFEST_NAME, read_manifest
from ftci.state import cache_dir, split_path, splits_dir

if TYPE_CHECKING:
    from ftci.config.loader import LoadedConfig

KEY_FORMAT = 1
CI_SPLIT_MARK = "FTCI_CI_SPLIT"  # set once this CI job has re-split (see current_splits)
KEY_LENGTH = 16
SPLIT_STAMP = "split-inputs.json"  # in the cache directory: what the splits were made from
VERSIONED_PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate")
TOKENIZER_FILES = frozenset({
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
    "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt", "spiece.model",
    "chat_template.jinja", "chat_template.json",
})
MODEL_FILES = frozenset({"config.json", "generation_config.json", "model.safetensors.index.json"})


@dataclass
class RunInputs:
    """Every input of a training run. `key_material()` is what the key hashes; the rest is
    context for the run manifest and messages."""

    config: dict[str, Any]
    data: dict[str, str]
    base_model: dict[str, Any]
    tokenizer: str | None
    chat_template: str | None
    versions: dict[str, str | None]
    device: str
    processes: int
    seed: int
    split_sha256: dict[str, str] = field(default_factory=dict)  # all splits, test included
    model_dir: Path | None = None
    notes: list[str] = field(default_factory=list)

    def key_material(self) -> dict[str, Any]:
        return {
            "format": KEY_FORMAT,
            "config": self.config,
            "data": self.data,
            "base_model": self.base_model,
            "tokenizer": self.tokenizer,
            "chat_template": self.chat_template,
            "versions": self.versions,
            "device": self.device,
            "processes": self.processes,
            "seed": self.seed,
        }

    @property
    def key(self) -> str:
        return sha256_text(canonical_json(self.key_material()))[:KEY_LENGTH]

    def hashes(self) -> dict[str, str | None]:
        """One digest per input, for manifests and for "what changed?" between two runs."""
        return {
            "config": sha256_text(canonical_json(self.config)),
            "data.train": self.data.get("train"),
            "data.val": self.data.get("val"),
            "base_model": self.base_model.get("digest"),
            "tokenizer": self.tokenizer,
            "chat_template": self.chat_template,
        }


def compute_run_inputs(loaded: LoadedConfig, root: Path, *, num_processes: int = 1) -> RunInputs:
    """Hash every input of the run `loaded` describes (see the module docstring)."""
    from ftci.data.tokenizer import chat_template_override
    from ftci.models.starter import resolve_base_model

    config = loaded.config
    digests = DigestCache.load()
    notes: list[str] = []
    split_sha256 = current_splits(loaded, root, digests, notes)
    model_dir = None if _hub_ref(config.base_model) else resolve_base_model(config.base_model, root)
    base_model, tokenizer = model_identity(config.base_model, model_dir, digests)
    template = chat_template_override(config, root)
    digests.save()
    sections = config.model_dump(mode="json", include={"task", "train"})
    sections["data.split"] = config.data.split.model_dump(mode="json")
    return RunInputs(
        config=sections,
        data={"train": split_sha256["train"], "val": split_sha256["val"]},
        base_model=base_model,
        tokenizer=tokenizer,
        chat_template=None if template is None else sha256_text(template),
        versions=package_versions(),
        device=device_class(),
        processes=num_processes,
        seed=config.train.seed,
        split_sha256=split_sha256,
        model_dir=model_dir,
        notes=notes,
    )


# --- splits --------------------------------------------------------------------------------


def current_splits(loaded: LoadedConfig, root: Path, digests: DigestCache,
                   notes: list[str]) -> dict[str, str]:
    """The sha256 of each split file, re-splitting first when the splits are missing or stale."""
    from ftci.data.split import ALGORITHM

    splits = splits_dir(root)
    stamp_path = cache_dir(root) / SPLIT_STAMP
    data = loaded.config.data
    sources = {str(path.relative_to(root) if path.is_relative_to(root) else path): digests.get(path)
               for path in _data_files(data.sources, root)}
    stamp = sha256_text(canonical_json({"algorithm": ALGORITHM, "ftci": __version__,
                                        "data": data.model_dump(mode="json"),
                                        "sources": sources}))
    manifest = read_json(splits / "manifest.json")
    recorded = read_json(stamp_path) or {}
    recorded_sha = (manifest or {}).get("sha256")
    # CI re-splits once per job (this process and the ranks it launches share the mark): the
    # splits in a checkout are untrusted (ftci/state.py).
    in_ci = os.environ.get("GITHUB_ACTIONS") == "true" and \
        os.environ.get(CI_SPLIT_MARK) != f"{splits.resolve()}:{stamp}"
    fresh = (not in_ci and isinstance(recorded_sha, dict)
             and set(recorded_sha) == {"train", "val", "test"}
             and recorded.get("stamp") == stamp
             and recorded.get("manifest") == digests.get(splits / "manifest.json")
             and all(_split_intact(root, split, str(sha), digests)
                     for split, sha in recorded_sha.items()))
    if not fresh:
        reason = ("CI always re-splits" if in_ci and manifest is not None
                  else "no splits yet" if manifest is None
                  else "splits not yet checked by `ftci train`" if not recorded
                  else "the data or data config changed since the last split")
        counts = write_current_splits(loaded, root, splits)
        notes.append(f"{reason}: wrote {splits.relative_to(root)} ("
                     + ", ".join(f"{name} {count:,}" for name, count in counts.items()) + ")")
        manifest = read_json(splits / "manifest.json") or {}
        if os.environ.get("GITHUB_ACTIONS") == "true":
            os.environ[CI_SPLIT_MARK] = f"{splits.resolve()}:{stamp}"
        atomic_write_text(stamp_path, canonical_json(
            {"stamp": stamp, "manifest": digests.get(splits / "manifest.json")}) + "\n")
    return {split: str(sha) for split, sha in (manifest or {}).get("sha256", {}).items()}


def write_current_splits(loaded: LoadedConfig, root: Path, out_dir: Path) -> dict[str, int]:
    """What `ftci data split` does: load, cluster near-duplicates, assign, write."""
    from ftci.data.split import split_sources

    return split_sources(loaded.config, root, out_dir).counts


def _split_intact(root: Path, split: str, sha256: str, digests: DigestCache) -> bool:
    path = split_path(root, split)
    return path.is_file() and digests.get(path) == sha256


def _data_files(sources: list[Any], root: Path) -> list[Path]:
    """Every data file the sources may name (as the loader finds them; extra files only cost a
    re-split, a missed file would cost a stale cache). Hidden files and folders are skipped."""
    import glob

    from ftci.data.loaders import DATA_SUFFIXES

    found: set[Path] = set()
    for source in sources:
        given = Path(source.path).expanduser()
        full = given if given.is_absolute() else root / given
        matches = [full] if full.exists() else [Path(m) for m in glob.glob(str(full),
                                                                            recursive=True)]
        for match in matches:
            if match.is_file():
                found.add(match)
            for folder, subfolders, names in os.walk(match) if match.is_dir() else ():
                subfolders[:] = [name for name in subfolders if not name.startswith(".")]
                found.update(Path(folder, name) for name in names if not name.startswith(".")
                             and name.lower().endswith(DATA_SUFFIXES))
    return sorted(found)


# --- base model ----------------------------------------------------------------------------


def _hub_ref(base_model: str) -> bool:
    from ftci.models.starter import HUB_ID

    return not base_model.startswith(STARTER_PREFIX) and bool(HUB_ID.match(base_model)) and \
        "@" in base_model and not Path(base_model).exists()


def model_identity(base_model: str, model_dir: Path | None,
                   digests: DigestCache) -> tuple[dict[str, Any], str | None]:
    """({kind, name?, revision?, digest}, tokenizer digest) of the base model."""
    if model_dir is None:  # a pinned Hub id: the revision is the identity
        model_id, _, revision = base_model.partition("@")
        return {"kind": "hub", "id": model_id, "revision": revision,
                "digest": sha256_text(base_model)}, None
    manifest = read_manifest(model_dir)
    if base_model.startswith(STARTER_PREFIX) and manifest is not None:
        files = {name: str(entry["sha256"]) for name, entry in manifest["files"].items()}
        identity: dict[str, Any] = {"kind": "starter", "name": base_model[len(STARTER_PREFIX):]}
    else:
        files = {path.name: digests.get(path) for path in sorted(model_dir.iterdir())
                 if path.is_file() and path.name != MANIFEST_NAME and _is_model_file(path.name)}
        identity = {"kind": "local"}
    identity["digest"] = sha256_text(canonical_json(files))
    tokenizer = {name: sha for name, sha in files.items() if name in TOKENIZER_FILES}
    return identity, sha256_text(canonical_json(tokenizer)) if tokenizer else None


def _is_model_file(name: str) -> bool:
    return name in MODEL_FILES or name in TOKENIZER_FILES or name.endswith(".safetensors")


# --- environment ---------------------------------------------------------------------------


def package_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (no import: torch costs seconds)."""
    versions: dict[str, str | None] = {"python": platform.python_version(), "ftci": __version__}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_class() -> str:
    """"cuda" when an NVIDIA GPU is visible, else "cpu" (decided without importing torch)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return "cpu"  # GPUs explicitly hidden
    if Path("/dev/nvidia0").exists():
        return "cuda"
    return "cuda" if visible is not None and shutil.which("nvidia-smi") else "cpu"
