"""`ftci release [--dry-run]` and `ftci release list | show | verify | promote | rollback`:
thin wrappers over ftci/release/ (flow.py for the release, the registry for the rest)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ftci.cli.base import config_options, config_path_option, emit_json, wants_json

if TYPE_CHECKING:
    from ftci.release.registry.base import Registry


@click.group("release", invoke_without_command=True)
@config_path_option
@config_options
@click.option("--dry-run", is_flag=True,
              help="Print what would be released (version, artifact sizes) and run the "
                   "quantization gate; write nothing to the registry, git or GitHub.")
@click.option("--no-push", is_flag=True, help="Tag locally; do not push the tag to origin.")
@click.option("--pr", type=click.IntRange(min=1), default=None,
              help="The merged pull request's number, for the manifest and the notes "
                   "(default: FTCI_PR_NUMBER).")
@click.pass_context
def release_group(ctx: click.Context, config_path: Path | None, overrides: tuple[str, ...],
                  dry_run: bool, no_push: bool, pr: int | None) -> None:
    """Release the evaluated candidate of HEAD: merge, quantize, gate, version, model card,
    registry, git tag, GitHub Release. Idempotent: a second run on the same commit says
    "already released as vX.Y.Z" and exits 0.

    Exit 0 released (or already), 1 no evaluated candidate or the quantization gate failed,
    2 bad input, 3 infrastructure.
    """
    ctx.ensure_object(dict)
    ctx.obj["release_config"] = (config_path, overrides)
    if ctx.invoked_subcommand is not None:
        return
    from ftci.config import load_config
    from ftci.extras import require_extra

    require_extra("release", command="ftci release")
    from ftci.release.flow import run_release

    loaded = load_config(config_path, overrides, lint=False)
    as_json = wants_json(ctx)

    def on_step(name: str, seconds: float) -> None:
        if not as_json:
            click.echo(f"  {name:<18} {seconds:8.1f} s", err=True)

    outcome = run_release(loaded, dry_run=dry_run, push=not no_push, pr=pr, on_step=on_step)
    if as_json:
        emit_json(outcome.to_dict())
        return
    if outcome.already:
        click.echo(f"already released as v{outcome.version} ({outcome.tag}); nothing to do")
    else:
        verb = "would release" if outcome.dry_run else "released"
        kind = f"{outcome.bump} after v{outcome.previous}" if outcome.previous else \
            "first release" if outcome.bump == "first" else f"{outcome.bump}, first release"
        click.echo(f"{verb} v{outcome.version} ({kind}) as {outcome.tag}")
        sizes = ", ".join(f"{name} {_size(size)}" for name, size in outcome.sizes.items()
                          if size)
        if sizes:
            click.echo(f"  sizes: {sizes}")
        if outcome.gate:
            click.echo("  " + _gate_line(outcome.gate))
        if not outcome.dry_run:
            click.echo(f"  registry: {outcome.release_dir or outcome.registry}")
    for note in outcome.notes:
        click.echo(f"  note: {note}")
    if outcome.github_release:
        click.echo(f"  GitHub Release: {outcome.github_release}")


def sub_config(func: Any) -> Any:
    """`-c` and `--set` after the subcommand too (`ftci release list -c DIR`)."""
    func = config_path_option(func)
    return config_options(func)


def _config(ctx: click.Context, config_path: Path | None,
            overrides: tuple[str, ...]) -> None:
    group_path, group_overrides = ctx.obj["release_config"]
    ctx.obj["release_config"] = (config_path or group_path, (*group_overrides, *overrides))


@contextmanager
def _registry(ctx: click.Context) -> Iterator[Registry]:
    from ftci.config import load_config
    from ftci.extras import require_extra
    from ftci.release.registry import open_registry

    require_extra("release", command="ftci release")
    config_path, overrides = ctx.obj["release_config"]
    loaded = load_config(config_path, overrides, lint=False)
    registry = open_registry(loaded.config.release, project=loaded.config.project.name,
                             root=loaded.root)
    try:
        yield registry
    finally:
        registry.close()


def _aliases(registry: Registry) -> dict[str, list[str]]:
    from ftci.release.registry.base import ALIASES

    found: dict[str, list[str]] = {}
    for alias in ALIASES:
        version = registry.resolve(alias)
        if version is not None:
            found.setdefault(version, []).append(alias)
    return found


@release_group.command("list")
@sub_config
@click.pass_context
def list_command(ctx: click.Context, config_path: Path | None,
                 overrides: tuple[str, ...]) -> None:
    """Every released version, oldest first, with its aliases."""
    _config(ctx, config_path, overrides)
    with _registry(ctx) as registry:
        versions, aliases = registry.versions(), _aliases(registry)
    rows = [{"version": v.version, "commit": v.commit, "run_key": v.run_key,
             "created_at": v.created_at, "created_by": v.created_by,
             "aliases": aliases.get(v.version, []), "location": v.location}
            for v in versions]
    if wants_json(ctx):
        emit_json({"ok": True, "versions": rows})
        return
    if not rows:
        click.echo("no released versions yet (`ftci release` makes the first)")
    for row in rows:
        tags = f"  [{', '.join(row['aliases'])}]" if row["aliases"] else ""
        click.echo(f"v{row['version']:<10} {str(row['commit'])[:12]:<12} {row['created_at']}  "
                   f"{row['created_by']}{tags}")


def _version(text: str) -> str:
    from ftci.release.version import parse

    version = text.removeprefix("v")
    parse(version)
    return version


def _known(registry: Registry, version: str) -> Any:
    from ftci.errors import BadInputError

    record = registry.get(version)
    if record is None:
        known = ", ".join(v.version for v in registry.versions()) or "none"
        raise BadInputError(f"no released version {version} (released: {known})",
                            hint="`ftci release list` shows them")
    return record


@release_group.command("show")
@sub_config
@click.argument("version")
@click.pass_context
def show_command(ctx: click.Context, config_path: Path | None, overrides: tuple[str, ...],
                 version: str) -> None:
    """One version's manifest: inputs, files, the quantization gate, aliases."""
    _config(ctx, config_path, overrides)
    import tempfile

    from ftci.contracts.release import ReleaseManifest
    from ftci.release import layout

    version = _version(version)
    with _registry(ctx) as registry, tempfile.TemporaryDirectory(prefix="ftci-show-") as tmp:
        record = _known(registry, version)
        registry.fetch(version, Path(tmp) / "v", only=())
        manifest = ReleaseManifest.read(Path(tmp) / "v" / layout.MANIFEST)
        aliases = _aliases(registry).get(version, [])
    if wants_json(ctx):
        emit_json({"ok": True, "location": record.location, "aliases": aliases,
                   "manifest": manifest.to_dict()})
        return
    click.echo(f"v{manifest.version} ({manifest.tag})  {', '.join(aliases)}")
    click.echo(f"  commit {manifest.commit}  PR {manifest.pr or '-'}  run {manifest.run_key}")
    click.echo(f"  created {manifest.created_at} by {manifest.created_by}")
    click.echo(f"  quantization {manifest.quantization.scheme} ({manifest.quantization.tool})")
    if manifest.quantization_gate is not None:
        click.echo("  " + _gate_line(manifest.quantization_gate.to_dict()))
    total = sum(entry.size for entry in manifest.files.values())
    click.echo(f"  {len(manifest.files)} files, {_size(total)}: {record.location}")


@release_group.command("verify")
@sub_config
@click.argument("version")
@click.pass_context
def verify_command(ctx: click.Context, config_path: Path | None, overrides: tuple[str, ...],
                   version: str) -> None:
    """Re-hash every file of VERSION against its manifest; exit 1 on any mismatch."""
    _config(ctx, config_path, overrides)
    from ftci.errors import GateFailed

    version = _version(version)
    with _registry(ctx) as registry:
        record = _known(registry, version)
        problems = registry.verify(version)
    if wants_json(ctx):
        emit_json({"ok": not problems, "version": version, "files": len(record.files),
                   "problems": problems})
        if problems:
            ctx.exit(1)
        return
    if problems:
        raise GateFailed(f"v{version}: {len(problems)} file(s) do not match the release "
                         "manifest:\n" + "\n".join(f"  - {p}" for p in problems))
    click.echo(f"v{version}: all {len(record.files)} files match the release manifest")


@release_group.command("promote")
@sub_config
@click.argument("version")
@click.option("--alias", type=click.Choice(["production", "candidate"]), default="production",
              show_default=True)
@click.pass_context
def promote_command(ctx: click.Context, config_path: Path | None, overrides: tuple[str, ...],
                    version: str, alias: str) -> None:
    """Point ALIAS at VERSION; promoting to production moves the old production to previous."""
    _config(ctx, config_path, overrides)
    from ftci.release.flow import actor

    version = _version(version)
    with _registry(ctx) as registry:
        _known(registry, version)
        before = registry.resolve(alias)
        by = actor()
        if before == version:
            message = f"{alias} already points at v{version}"
        else:
            if alias == "production" and before is not None:
                registry.set_alias("previous", before, by=by, reason=f"promote v{version}")
            registry.set_alias(alias, version, by=by, reason="promote")
            message = f"{alias}: v{before} -> v{version}" if before else \
                f"{alias}: v{version}"
    _done(ctx, message, alias=alias, version=version, before=before)


@release_group.command("rollback")
@sub_config
@click.pass_context
def rollback_command(ctx: click.Context, config_path: Path | None,
                     overrides: tuple[str, ...]) -> None:
    """Point production back at previous (and previous at the one before, from history)."""
    _config(ctx, config_path, overrides)
    from ftci.errors import BadInputError
    from ftci.release.flow import actor

    with _registry(ctx) as registry:
        current, target = registry.resolve("production"), registry.resolve("previous")
        if target is None:
            raise BadInputError("nothing to roll back to: the previous alias is not set",
                                hint="`ftci release promote VERSION` sets production "
                                     "(and moves the old one to previous)")
        by = actor()
        earlier = _before(registry, target)
        registry.set_alias("production", target, by=by, reason=f"rollback from v{current}")
        registry.set_alias("previous", earlier, by=by, reason=f"rollback from v{current}")
    _done(ctx, f"production: v{current} -> v{target} (rolled back)", alias="production",
          version=target, before=current)


def _before(registry: Registry, version: str) -> str | None:
    """The version production held just before `version` last became production."""
    events = [e for e in registry.alias_history("production") if e.version == version]
    return events[-1].previous if events and events[-1].previous != version else None


def _done(ctx: click.Context, message: str, **fields: Any) -> None:
    if wants_json(ctx):
        emit_json({"ok": True, **fields})
    else:
        click.echo(message)


def _gate_line(gate: dict[str, Any]) -> str:
    from ftci.contracts.release import GateSummary
    from ftci.release.tables import gate_lines

    return gate_lines(GateSummary.model_validate(gate))[0].replace("**", "")


def _size(size: int) -> str:
    from ftci.cli.models import format_size

    return str(format_size(size))
