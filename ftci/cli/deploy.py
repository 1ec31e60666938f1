"""`ftci deploy [--release V] [--dry-run]`, `ftci deploy status`, `ftci rollback`: thin
wrappers over ftci/deploy/ (rollout.py for the steps, ledger.py for the status)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ftci.cli.base import config_options, config_path_option, emit_json, wants_json

if TYPE_CHECKING:
    from ftci.deploy.rollout import DeployOutcome

EXIT_HELP = ("Exit 0 serving (or already), 1 the new release was refused or broke before it "
             "took traffic (what served before keeps serving), 2 bad input, 3 infrastructure "
             "before any server started.")


@click.group("deploy", invoke_without_command=True, epilog=EXIT_HELP)
@config_path_option
@config_options
@click.option("--release", "release", default="candidate", show_default=True,
              metavar="VERSION|ALIAS",
              help="What to serve: a released version (X.Y.Z) or an alias (candidate, "
                   "production, previous).")
@click.option("--dry-run", is_flag=True,
              help="Print the server command that would run; start, fetch and switch nothing.")
@click.pass_context
def deploy_group(ctx: click.Context, config_path: Path | None, overrides: tuple[str, ...],
                 release: str, dry_run: bool) -> None:
    """Serve a release blue/green: start it beside what serves, check health, identity and
    a smoke eval against the release's recorded answers, switch the router, drain the old
    server. A failed check stops the new server; the old one never stops serving."""
    ctx.ensure_object(dict)
    ctx.obj["deploy_config"] = (config_path, overrides)
    if ctx.invoked_subcommand is not None:
        return
    from ftci.deploy.rollout import run_deploy

    loaded = _loaded(ctx)
    outcome = run_deploy(loaded, release=release, dry_run=dry_run, on_step=_on_step(ctx))
    _render(ctx, outcome)


@deploy_group.command("status")
@config_path_option
@config_options
@click.option("--history", "limit", type=click.IntRange(min=0), default=5, show_default=True,
              help="How many earlier deployments to list.")
@click.pass_context
def status_command(ctx: click.Context, config_path: Path | None, overrides: tuple[str, ...],
                   limit: int) -> None:
    """What serves where: release, endpoint, since when, pid and port; the last deploys."""
    from ftci.deploy.ledger import DeploymentLedger, deployments_home

    group_path, group_overrides = ctx.obj["deploy_config"]
    ctx.obj["deploy_config"] = (config_path or group_path, (*group_overrides, *overrides))
    loaded = _loaded(ctx, extra=False)
    config = loaded.config
    environment = config.deploy.environment
    path = deployments_home(config.project.name, environment) / "ledger.sqlite"
    if not path.is_file():
        serving, history = None, []
    else:
        with DeploymentLedger(path) as ledger:
            serving, history = ledger.serving(environment), ledger.history(environment, limit)
    if wants_json(ctx):
        emit_json({"ok": True, "environment": environment, "ledger": str(path),
                   "serving": serving.to_dict() if serving else None,
                   "history": [row.to_dict() for row in history]})
        return
    if serving is None:
        click.echo(f"{environment}: nothing serving (ledger {path})")
    else:
        server = serving.server.to_dict()
        where = f"pid {server.get('pid')}" if server.get("pid") else server.get("name") or "?"
        click.echo(f"{environment}: v{serving.version} at {serving.endpoint} since "
                   f"{serving.serving_since} ({serving.launcher} {where}, port "
                   f"{server.get('port')})")
    for row in history:
        why = f" at {row.step}: {row.reason}" if row.reason else ""
        click.echo(f"  #{row.id} v{row.version} {row.state} {row.started_at}{why}"[:240])


@click.command("rollback", epilog=EXIT_HELP)
@config_path_option
@config_options
@click.option("--dry-run", is_flag=True, help="Print what would run; change nothing.")
@click.pass_context
def rollback_command(ctx: click.Context, config_path: Path | None, overrides: tuple[str, ...],
                     dry_run: bool) -> None:
    """Serve the `previous` release again, through every check a deploy makes."""
    from ftci.deploy.rollout import run_rollback

    ctx.ensure_object(dict)
    ctx.obj["deploy_config"] = (config_path, overrides)
    outcome = run_rollback(_loaded(ctx), dry_run=dry_run, on_step=_on_step(ctx))
    _render(ctx, outcome)


def _loaded(ctx: click.Context, *, extra: bool = True) -> Any:
    from ftci.config import load_config
    from ftci.extras import require_extra

    if extra:
        require_extra("release", command="ftci deploy")
    config_path, overrides = ctx.obj["deploy_config"]
    return load_config(config_path, overrides, lint=False)


def _on_step(ctx: click.Context) -> Any:
    as_json = wants_json(ctx)

    def on_step(name: str, seconds: float) -> None:
        if not as_json:
            click.echo(f"  {name:<12} {seconds:8.1f} s", err=True)

    return on_step


def _render(ctx: click.Context, outcome: DeployOutcome) -> None:
    if wants_json(ctx):
        emit_json({"ok": True, **outcome.to_dict()})
        return
    if outcome.dry_run:
        click.echo(f"would serve v{outcome.version} in {outcome.environment} at "
                   f"{outcome.endpoint}" + (f" (now v{outcome.previous})"
                                            if outcome.previous else ""))
        click.echo("  " + shlex.join(outcome.command))
        if outcome.manifests:
            click.echo(outcome.manifests.rstrip())
    elif outcome.already:
        click.echo(f"v{outcome.version} already serves {outcome.environment} at "
                   f"{outcome.endpoint}; nothing to do")
    else:
        was = f" (was v{outcome.previous})" if outcome.previous else ""
        click.echo(f"v{outcome.version} serves {outcome.environment} at {outcome.endpoint}"
                   f"{was}")
        smoke = outcome.checks.get("smoke")
        if smoke:
            click.echo(f"  smoke eval: {smoke['agreed']}/{smoke['items']} answers agree with "
                       f"the release's record; {smoke['metric']} {smoke['live']:.3f} live vs "
                       f"{smoke['recorded']:.3f} recorded")
    for note in outcome.notes:
        click.echo(f"  note: {note}")
