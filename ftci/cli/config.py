"""`ftci config validate | schema | show`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ftci.cli.base import config_options, emit_json, wants_json
from ftci.errors import EXIT_BAD_INPUT, EXIT_OK, ConfigError


@click.group("config")
def config_group() -> None:
    """Validate ftci.yaml, print its JSON Schema, or show it resolved."""


@config_group.command("validate")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@config_options
@click.option("--strict", is_flag=True, help="Treat lint warnings as errors (exit 2).")
@click.pass_context
def validate_command(ctx: click.Context, path: Path | None, overrides: tuple[str, ...],
                     strict: bool) -> None:
    """Check ftci.yaml: every error at once with file:line:column, then lint warnings.

    PATH is the config file or its directory (default: ./ftci.yaml).
    """
    from ftci.config import load_config

    loaded = load_config(path, overrides)
    config = loaded.config
    failed = strict and bool(loaded.lints)
    if wants_json(ctx):
        emit_json({
            "ok": not failed,
            "path": str(loaded.path),
            "strict": strict,
            "task": config.task.type,
            "base_model": config.base_model,
            "warnings": [lint.as_problem().to_dict() | {"rule": lint.rule}
                         for lint in loaded.lints],
        })
    else:
        if failed:
            raise ConfigError([lint.as_problem() for lint in loaded.lints], path=str(loaded.path))
        for lint in loaded.lints:
            click.secho(f"warning: {lint.as_problem().render()}", fg="yellow")
        count = len(loaded.lints)
        summary = f"{count} warning{'s' if count != 1 else ''}" if count else "no warnings"
        click.secho(f"ok: {loaded.path} is valid ({config.task.type} task, base model "
                    f"{config.base_model}; {summary})", fg="green")
    ctx.exit(EXIT_BAD_INPUT if failed else EXIT_OK)


@config_group.command("schema")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the schema to this file instead of stdout.")
def schema_command(output: Path | None) -> None:
    """Print the JSON Schema of ftci.yaml.

    Editors complete and check ftci.yaml when it starts with
    `# yaml-language-server: $schema=./ftci.schema.json`.
    """
    from ftci.config import json_schema
    from ftci.io import atomic_write_text

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        atomic_write_text(output, text)
        click.echo(f"wrote {output}")


@config_group.command("show")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@config_options
@click.pass_context
def show_command(ctx: click.Context, path: Path | None, overrides: tuple[str, ...]) -> None:
    """Print the config with every default filled in and every --set applied."""
    from ftci.config import load_config

    loaded = load_config(path, overrides, lint=False)
    resolved = loaded.config.model_dump(mode="json")
    if wants_json(ctx):
        emit_json(resolved)
    else:
        import yaml

        click.echo(f"# {loaded.path}, resolved" + (f" with --set {' '.join(overrides)}"
                                                   if overrides else ""))
        click.echo(yaml.safe_dump(resolved, sort_keys=False), nl=False)
