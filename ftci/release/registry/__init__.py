"""Registry backends behind one interface (base.py): `local` (a directory with a SQLite ledger
and content-addressed blobs, the default), `hf` (the Hugging Face Hub), `mlflow` (an MLflow
Model Registry). `open_registry` picks one from `release.registry`; the Hub and MLflow backends
(and their libraries) are imported only when chosen."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ftci.config.schema import ReleaseConfig
    from ftci.release.registry.base import Registry


def local_registry_path(release: ReleaseConfig, *, project: str, root: Path) -> Path:
    """`release.path` (`~` expanded; relative to `root`, the directory of ftci.yaml), else
    `$FTCI_HOME/registry/<project>`."""
    if release.path:
        path = Path(release.path).expanduser()
        return path if path.is_absolute() else Path(root) / path
    from ftci.models.home import ftci_home

    return ftci_home() / "registry" / project


def open_registry(release: ReleaseConfig, *, project: str, root: Path) -> Registry:
    """The registry `release` names; close it when done."""
    if release.registry == "hf":
        from ftci.release.registry.hf import HubRegistry

        return HubRegistry(release.repo, token=None, endpoint=None)
    if release.registry == "mlflow":
        from ftci.release.registry.mlflow import MlflowRegistry

        return MlflowRegistry(release.tracking_uri, release.model_name or project)
    from ftci.release.registry.local import LocalRegistry

    return LocalRegistry(local_registry_path(release, project=project, root=root))
