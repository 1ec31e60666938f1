"""An MLflow Model Registry as a registry: one registered model per project.

    experiment ftci-<model>     one run per version; its artifacts are the release directory
                                (exactly the files release.json lists, plus release.json)
    registered model <model>    one model version per ftci version (MLflow numbers them 1, 2,
                                3): source = the run's artifact URI, tags ftci.version,
                                ftci.commit, ftci.run_key, ftci.release_key,
                                ftci.manifest_sha256, ftci.by
    aliases                     set_registered_model_alias / delete_registered_model_alias
    alias history               registered-model tags `ftci.alias_event.<ns>.<random>`, one
                                JSON AliasEvent each

Decisions:
- **The semver is a model-version tag**; a version is found by it. Two model versions with the
  same tag (two writers raced) resolve to the lowest MLflow number, and the other writer's
  publish then compares digests with that one.
- **Immutable, idempotent**: an existing version with the same manifest digest is returned;
  another digest is RegistryConflict. A crash after the run's upload and before
  create_model_version is completed by the rerun: a FINISHED run tagged with this version and
  digest is reused, not uploaded again.
- **Alias history as tags, not a JSON artifact**: a tag is one write that never rewrites the
  others (an artifact file would be read-modify-write, losing an event when two writers race),
  it lives with the registered model (shown in the UI, kept when runs are deleted), and the
  random suffix keeps two writers in the same nanosecond apart. The current alias is MLflow's.
- **fetch / verify** download each listed file from the run's artifacts and re-hash it against
  release.json; fetch materialises into `dest` by a rename.
- `tracking_uri` None: MLFLOW_TRACKING_URI. mlflow (the `mlflow` extra: mlflow-skinny) is
  imported on first use.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

import ftci.release.registry._common as common
from ftci.errors import BadInputError, FtciError, InfraError
from ftci.release import layout
from ftci.release.registry.base import AliasEvent, PublishedVersion

if TYPE_CHECKING:
    from mlflow import MlflowClient

EVENT_TAG = "ftci.alias_event."
T = TypeVar("T")


class MlflowRegistry:
    """A registered model on an MLflow server (see the module docstring)."""

    kind = "mlflow"

    def __init__(self, tracking_uri: str | None, model_name: str) -> None:
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise BadInputError("registry mlflow needs a tracking server",
                                hint="set release.tracking_uri in ftci.yaml or "
                                     "MLFLOW_TRACKING_URI")
        self.tracking_uri = uri
        self.model_name = model_name
        self.location = f"{uri.rstrip('/')}#models:/{model_name}"
        self._client: MlflowClient | None = None
        self._records: dict[str, tuple[PublishedVersion, bytes, str]] = {}

    # ---- the client and its errors -------------------------------------------------------
    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            try:
                from mlflow import MlflowClient
            except ImportError:
                raise BadInputError("registry mlflow needs mlflow",
                                    hint='pip install "ftci[mlflow]"') from None
            self._client = MlflowClient(tracking_uri=self.tracking_uri,
                                        registry_uri=self.tracking_uri)
        return self._client

    def _call(self, what: str, call: Callable[[], T]) -> T:
        from mlflow.exceptions import MlflowException

        from ftci.redact import redact_text

        try:
            return call()
        except FtciError:
            raise
        except MlflowException as exc:
            text = redact_text(str(exc.message).splitlines()[0] if exc.message else repr(exc))
            if exc.error_code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
                raise BadInputError(f"{self.location}: {what}: {text}",
                                    hint="set MLFLOW_TRACKING_TOKEN (or MLFLOW_TRACKING_USERNAME "
                                         "and MLFLOW_TRACKING_PASSWORD)") from None
            if exc.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
                raise BadInputError(f"{self.location}: {what}: {text}") from None
            raise InfraError(f"{self.location}: {what}: {text}",
                             hint="is the tracking server up? a rerun completes what was "
                                  "cut") from None
        except OSError as exc:
            raise InfraError(f"{self.location}: {what}: {redact_text(str(exc))}") from None

    # ---- reading ---------------------------------------------------------------------------
    def _model_versions(self) -> list[Any]:
        from mlflow.exceptions import MlflowException

        def search() -> list[Any]:
            try:
                return list(self.client.search_model_versions(f"name='{self.model_name}'"))
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    return []
                raise

        found = self._call("list model versions", search)
        return sorted((mv for mv in found if mv.tags.get("ftci.version")),
                      key=lambda mv: int(mv.version))

    def _by_version(self) -> dict[str, Any]:
        """ftci version -> its model version (the lowest MLflow number when two raced)."""
        chosen: dict[str, Any] = {}
        for mv in self._model_versions():
            chosen.setdefault(mv.tags["ftci.version"], mv)
        return chosen

    def _record(self, mv: Any) -> tuple[PublishedVersion, bytes, str]:
        """(record, release.json bytes, run id) of a model version."""
        key = f"{mv.version}"
        if key in self._records:
            return self._records[key]
        with tempfile.TemporaryDirectory(prefix="ftci-mlflow-") as scratch:
            path = self._call(f"download {layout.MANIFEST} of v{mv.tags['ftci.version']}",
                              lambda: self.client.download_artifacts(
                                  mv.run_id, layout.MANIFEST, scratch))
            raw = Path(path).read_bytes()
        created = datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc)
        record = common.published_from(raw, source=f"{self.location}/{key}",
                                       location=f"models:/{self.model_name}/{mv.version}",
                                       created_at=created.isoformat(timespec="seconds"),
                                       created_by=mv.tags.get("ftci.by", ""))
        self._records[key] = (record, raw, mv.run_id)
        return self._records[key]

    def get(self, version: str) -> PublishedVersion | None:
        mv = self._by_version().get(version)
        return None if mv is None else self._record(mv)[0]

    def versions(self) -> list[PublishedVersion]:
        chosen = self._by_version()
        return [self._record(chosen[v])[0] for v in sorted(chosen, key=common.semver)]

    def find(self, *, commit: str | None = None,
             release_key: str | None = None) -> PublishedVersion | None:
        if commit is None and release_key is None:
            return None
        for mv in reversed(list(self._by_version().values())):
            if (commit is None or mv.tags.get("ftci.commit") == commit) and \
                    (release_key is None or mv.tags.get("ftci.release_key") == release_key):
                return self._record(mv)[0]
        return None

    # ---- publishing ------------------------------------------------------------------------
    def publish(self, release_dir: Path, *, by: str) -> PublishedVersion:
        manifest, _, digest = common.read_release(release_dir)
        existing = self.get(manifest.version)
        if existing is not None:
            return self._same(existing, digest)
        entries = common.listed_files(release_dir, manifest)
        tags = {"ftci.version": manifest.version, "ftci.commit": manifest.commit or "",
                "ftci.run_key": manifest.run_key, "ftci.release_key": manifest.release_key,
                "ftci.manifest_sha256": digest, "ftci.by": by}
        run_id = self._uploaded_run(manifest.version, digest)
        if run_id is None:
            run_id = self._upload(Path(release_dir), [name for name, _, _ in entries], tags)
        self._ensure_model()
        source = self._call("read the run", lambda: self.client.get_run(run_id)).info.artifact_uri
        self._call(f"create model version v{manifest.version}",
                   lambda: self.client.create_model_version(
                       self.model_name, source=source, run_id=run_id, tags=tags,
                       description=f"ftci release v{manifest.version}"))
        published = self.get(manifest.version)
        if published is None:
            raise InfraError(f"{self.location}: created v{manifest.version} but cannot read it")
        return self._same(published, digest)

    def _experiment_id(self) -> str:
        name = f"ftci-{self.model_name}"
        found = self._call("find the experiment",
                           lambda: self.client.get_experiment_by_name(name))
        if found is not None:
            return str(found.experiment_id)
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.create_experiment(name))
        except MlflowException:  # another writer created it first
            again = self._call("find the experiment",
                               lambda: self.client.get_experiment_by_name(name))
            if again is None:
                raise
            return str(again.experiment_id)

    def _uploaded_run(self, version: str, digest: str) -> str | None:
        experiment = self._experiment_id()
        runs = self._call("search runs", lambda: self.client.search_runs(
            [experiment], filter_string=f"tags.`ftci.version` = '{version}' and "
                                        f"tags.`ftci.manifest_sha256` = '{digest}' and "
                                        "attributes.status = 'FINISHED'", max_results=1))
        return str(runs[0].info.run_id) if runs else None

    def _upload(self, release_dir: Path, names: list[str], tags: dict[str, str]) -> str:
        experiment = self._experiment_id()
        run = self._call("create the run", lambda: self.client.create_run(
            experiment, tags={**tags, "mlflow.runName": f"v{tags['ftci.version']}"}))
        run_id = str(run.info.run_id)
        try:
            for name in [*names, layout.MANIFEST]:
                parent = str(PurePosixPath(name).parent)
                self._call(f"upload {name}", lambda name=name, parent=parent:  # type: ignore[misc]
                           self.client.log_artifact(run_id, str(release_dir / name),
                                                    None if parent == "." else parent))
        except BaseException:
            self._call("mark the run failed",
                       lambda: self.client.set_terminated(run_id, status="FAILED"))
            raise
        self._call("finish the run", lambda: self.client.set_terminated(run_id))
        return run_id

    def _ensure_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(
                self.model_name, description="Released by ftci (one model version per "
                                             "release; tag ftci.version is its semver)")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                self._call("create the registered model", partial(common.reraise, exc))

    def _same(self, existing: PublishedVersion, digest: str) -> PublishedVersion:
        return common.same_or_conflict(existing, digest, f"in {existing.location}")

    # ---- aliases ---------------------------------------------------------------------------

    def resolve(self, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        common.check_alias(alias)

        def lookup() -> Any:
            try:
                return self.client.get_model_version_by_alias(self.model_name, alias)
            except MlflowException as exc:
                if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    return None
                raise

        mv = self._call(f"resolve {alias}", lookup)
        return None if mv is None else str(mv.tags.get("ftci.version") or "") or None

    def alias_history(self, alias: str | None = None) -> list[AliasEvent]:
        from mlflow.exceptions import MlflowException

        if alias is not None:
            common.check_alias(alias)

        def tags() -> dict[str, str]:
            try:
                return dict(self.client.get_registered_model(self.model_name).tags)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    return {}
                raise

        events = [AliasEvent(**json.loads(value)) for key, value in
                  sorted(self._call("read the alias history", tags).items())
                  if key.startswith(EVENT_TAG)]
        return common.of_alias(events, alias)

    def set_alias(self, alias: str, version: str | None, *, by: str,
                  reason: str = "") -> AliasEvent:
        common.check_alias(alias)
        target = None
        if version is not None:
            target = self._by_version().get(version)
            if target is None:
                raise common.unknown_target(alias, version, f"no such version in {self.location}",
                                            (v.version for v in self.versions()))
        event = AliasEvent(alias=alias, version=version, previous=self.resolve(alias),
                           at=common.now(), by=by, reason=reason)
        key = f"{EVENT_TAG}{time.time_ns():020d}.{uuid.uuid4().hex[:8]}"
        self._call(f"record alias {alias}", lambda: self.client.set_registered_model_tag(
            self.model_name, key, common.event_json(event)))
        if target is not None:
            self._call(f"set alias {alias}", lambda: self.client.set_registered_model_alias(
                self.model_name, alias, target.version))
        elif event.previous is not None:
            self._call(f"remove alias {alias}",
                       lambda: self.client.delete_registered_model_alias(self.model_name, alias))
        return event

    # ---- fetching and verifying ------------------------------------------------------------
    @contextmanager
    def _downloaded(self, version: str) -> Iterator[tuple[Path, PublishedVersion, bytes]]:
        mv = self._by_version().get(version)
        if mv is None:
            raise common.unknown_version(version, f"in {self.location}",
                                         (v.version for v in self.versions()))
        record, raw, run_id = self._record(mv)
        scratch = Path(tempfile.mkdtemp(prefix="ftci-mlflow-fetch-"))
        try:
            for name in [*sorted(record.files), layout.MANIFEST]:
                parent = scratch / PurePosixPath(name).parent
                parent.mkdir(parents=True, exist_ok=True)
                self._call(f"download {name}", lambda name=name, parent=parent:  # type: ignore[misc]
                           self.client.download_artifacts(run_id, name, str(parent)))
            yield scratch, record, raw
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def fetch(self, version: str, dest: Path, *,
              only: Collection[str] | None = None) -> Path:
        dest = common.check_dest(dest)
        with self._downloaded(version) as (folder, record, raw):
            return common.fetch_downloaded(folder, record, raw, dest, version=version,
                                           where=self.location, only=only)

    def verify(self, version: str) -> list[str]:
        with self._downloaded(version) as (folder, record, raw):
            return common.downloaded_problems(folder, record, raw)

    def close(self) -> None:
        self._client = None
        self._records.clear()

    def __enter__(self) -> MlflowRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
