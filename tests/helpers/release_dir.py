"""A release directory as ftci/release/__init__.py lays it out, without merging or quantizing
anything: a few small files plus a valid `release.json` (ftci.contracts.release.ReleaseManifest)
whose `files` lists each of them with its real size and sha256. For registry tests (local, hf,
mlflow)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ftci.contracts.release import QuantizationInfo, ReleaseManifest
from ftci.contracts.run import ArtifactFile
from ftci.release import layout

if TYPE_CHECKING:
    from ftci.release.registry.base import Registry


def default_files(version: str = "0.1.0") -> dict[str, bytes]:
    """A model blob (safetensors-like: 8-byte header length, JSON header, tensor bytes), an
    adapter config, a model card and eval results; the blob's bytes depend on `version`, so two
    versions share some blobs (the adapter config) and not others."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]},
                         "__metadata__": {"format": "pt", "version": version}}).encode()
    tensor = hashlib.sha256(version.encode()).digest() * 2
    return {
        f"{layout.MODEL}/model.safetensors": len(header).to_bytes(8, "little") + header + tensor,
        f"{layout.MODEL}/config.json": b'{"architectures": ["LlamaForCausalLM"]}\n',
        f"{layout.ADAPTER}/adapter_config.json":
            b'{"peft_type": "LORA", "r": 8, "lora_alpha": 16}\n',
        layout.CARD: f"---\nlicense: apache-2.0\n---\n# demo v{version}\n".encode(),
        layout.EVAL_RESULTS: json.dumps({"schema_version": "1.0", "gates": [],
                                         "all_passed": True}).encode() + b"\n",
    }


def make_release_dir(parent: Path, *, version: str = "0.1.0", commit: str = "a" * 40,
                     release_key: str | None = None, run_key: str | None = None,
                     files: dict[str, bytes] | None = None, project: str = "demo") -> Path:
    """`parent/<project>-<version>/` holding `files` (default: `default_files(version)`) and
    their `release.json`; returns that directory."""
    directory = parent / f"{project}-{version}"
    contents = default_files(version) if files is None else files
    listed: dict[str, ArtifactFile] = {}
    for name, data in sorted(contents.items()):
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        listed[name] = ArtifactFile(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    run = run_key or hashlib.sha256(f"run {version}".encode()).hexdigest()
    manifest = ReleaseManifest(
        project=project, version=version, tag=layout.tag_name(project, version),
        release_key=release_key or f"{run[:32]}.{'e' * 32}", run_key=run, commit=commit,
        created_at="2026-12-03T10:00:00+00:00", created_by="tester", method="lora",
        quantization=QuantizationInfo(scheme="none"), files=listed)
    (directory / layout.MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n",
                                             encoding="utf-8")
    return directory


def assert_fetched_as(fetched: Path, source: Path) -> None:
    """`fetched` holds exactly the files `source`'s release.json lists plus release.json (not a
    stray file beside them in `source`), each byte for byte."""
    listed = json.loads((source / layout.MANIFEST).read_text(encoding="utf-8"))["files"]
    names = sorted(p.relative_to(fetched).as_posix() for p in fetched.rglob("*") if p.is_file())
    assert names == sorted([*listed, layout.MANIFEST])
    for name in names:
        assert (fetched / name).read_bytes() == (source / name).read_bytes(), name


def assert_damage_found(registry: Registry, version: str, damaged: str, dest: Path) -> None:
    """After one stored file of `version` (`damaged`, a path in the release) was altered:
    verify names it alone as a sha256 mismatch, and a fetch into `dest` fails leaving nothing."""
    problems = registry.verify(version)
    assert len(problems) == 1 and problems[0].startswith(f"{damaged}: sha256"), problems
    with pytest.raises(Exception, match="sha256 mismatch"):
        registry.fetch(version, dest)
    assert not dest.exists()
