"""`ftci data check | split | diff | stats | convert`: the data quality gate."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ftci.cli.base import config_options, config_path_option, emit_json, wants_json
from ftci.errors import EXIT_BAD_INPUT, EXIT_OK
from ftci.state import display, splits_dir

if TYPE_CHECKING:
    from ftci.data.diff import DiffSide


@click.group("data")
def data_group() -> None:
    """Check, split, diff and describe the training data."""


@data_group.command("check")
@config_path_option
@config_options
@click.option("--markdown", "markdown_out", type=click.Path(path_type=Path), default=None,
              help="Also write the report as Markdown (e.g. $GITHUB_STEP_SUMMARY); '-' prints it.")
@click.option("--no-tokenizer", is_flag=True,
              help="Do not load the base tokenizer (estimate lengths, skip the template rule).")
@click.pass_context
def check_command(ctx: click.Context, config_path: Path | None, overrides: tuple[str, ...],
                  markdown_out: Path | None, no_tokenizer: bool) -> None:
    """Run every data rule; exit 1 when a rule fails, 2 when records cannot be read."""
    from ftci.config import load_config
    from ftci.data.check import run_checks
    from ftci.data.render import render_annotations, render_markdown, render_text

    loaded = load_config(config_path, overrides, lint=False)
    report = run_checks(loaded.config, loaded.root, use_tokenizer=not no_tokenizer)
    if wants_json(ctx):
        emit_json(report.to_dict())
    elif markdown_out is not None and str(markdown_out) == "-":
        click.echo(render_markdown(report), nl=False)
    else:
        click.echo(render_text(report), nl=False)
    if markdown_out is not None and str(markdown_out) != "-":
        with open(markdown_out, "a", encoding="utf-8") as handle:  # step summaries append
            handle.write(render_markdown(report))
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in render_annotations(report):
            click.echo(line)
    ctx.exit(report.exit_code)


@data_group.command("split")
@config_path_option
@config_options
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help=f"Where to write the splits (default: {display('splits')} beside ftci.yaml).")
@click.pass_context
def split_command(ctx: click.Context, config_path: Path | None, overrides: tuple[str, ...],
                  out_dir: Path | None) -> None:
    """Write append-stable train/val/test splits and their manifest."""
    from ftci.config import load_config
    from ftci.data.split import split_sources

    loaded = load_config(config_path, overrides, lint=False)
    target = out_dir or splits_dir(loaded.root)
    manifest = split_sources(loaded.config, loaded.root, target)
    summary = manifest.to_dict()
    if wants_json(ctx):
        emit_json({"ok": True, "out": str(target), **summary})
        return
    counts = summary.get("counts", {})
    click.echo(f"wrote {target}: " + ", ".join(f"{split} {counts.get(split, 0):,}"
                                               for split in ("train", "val", "test")))


@data_group.command("diff")
@click.argument("revisions", nargs=-1, metavar="[BASE] [HEAD]")
@click.option("--base-path", type=click.Path(path_type=Path), default=None,
              help="Compare from this directory (with its ftci.yaml) or data file instead of "
                   "the BASE revision.")
@click.option("--head-path", type=click.Path(path_type=Path), default=None,
              help="Compare to this directory (with its ftci.yaml) or data file instead of the "
                   "HEAD revision.")
@config_path_option
@config_options
@click.option("--markdown", "markdown_out", type=click.Path(path_type=Path), default=None,
              help="Also write the diff as Markdown to this file; '-' prints Markdown.")
@click.pass_context
def diff_command(ctx: click.Context, revisions: tuple[str, ...], base_path: Path | None,
                 head_path: Path | None, config_path: Path | None,
                 overrides: tuple[str, ...], markdown_out: Path | None) -> None:
    """What changed between git revisions BASE and HEAD (default HEAD): records, labels,
    findings.

    BASE and HEAD are always git revisions, never paths: compare a directory or data file with
    --base-path / --head-path (then the one revision given is the other side).
    """
    from ftci.config.loader import resolve_config_path
    from ftci.data.diff import diff_data, render_diff_markdown

    base, head = _diff_sides(revisions, base_path, head_path)
    diff = diff_data(base, head, resolve_config_path(config_path), overrides)
    markdown = render_diff_markdown(diff)
    if wants_json(ctx):
        emit_json(diff.to_dict())
    else:
        click.echo(markdown, nl=False)
    if markdown_out is not None and str(markdown_out) != "-":
        with open(markdown_out, "a", encoding="utf-8") as handle:
            handle.write(markdown)


def _diff_sides(revisions: tuple[str, ...], base_path: Path | None,
                head_path: Path | None) -> tuple[DiffSide, DiffSide]:
    """BASE [HEAD] as revisions; a --base-path or --head-path takes that side's place."""
    from ftci.data.diff import DiffSide

    wanted = 2 - (base_path is not None) - (head_path is not None)
    if len(revisions) > wanted:
        given = " and ".join(f"--{side}-path" for side, path in (("base", base_path),
                                                                  ("head", head_path)) if path)
        raise click.UsageError(f"too many revisions: {' '.join(revisions)}"
                               + (f" (with {given})" if given else ""))
    names = list(revisions)
    base = DiffSide(path=base_path) if base_path is not None else None
    if base is None:
        if not names:
            raise click.UsageError("give the BASE revision (e.g. origin/main), or --base-path")
        base = DiffSide(revision=names.pop(0))
    head = DiffSide(path=head_path) if head_path is not None else DiffSide(
        revision=names.pop(0) if names else "HEAD")
    return base, head


@data_group.command("stats")
@config_path_option
@config_options
@click.pass_context
def stats_command(ctx: click.Context, config_path: Path | None,
                  overrides: tuple[str, ...]) -> None:
    """Counts per file, label distribution, lengths and split sizes."""
    from ftci.config import load_config
    from ftci.data.stats import compute_stats

    loaded = load_config(config_path, overrides, lint=False)
    stats = compute_stats(loaded.config, loaded.root)
    if wants_json(ctx):
        emit_json(stats.to_dict())
        return
    from rich.console import Console
    from rich.table import Table

    from ftci.report.escape import one_line

    console = Console(markup=False, highlight=False)  # labels and file names are data, not markup
    console.print(f"{stats.records:,} records; splits " + ", ".join(
        f"{k} {v:,}" for k, v in stats.splits.items()) + (
        f"; {stats.problems} unreadable (see `ftci data check`)" if stats.problems else ""))
    files = Table("file", "records")
    for name, count in stats.files.items():
        files.add_row(one_line(name), f"{count:,}")
    console.print(files)
    lengths = Table("words", "mean", "p50", "p95", "max")
    for name, row in (("input", stats.input_words), ("output", stats.output_words)):
        lengths.add_row(name, *(f"{row[k]:g}" for k in ("mean", "p50", "p95", "max")))
    console.print(lengths)
    if stats.labels:
        labels = Table("label", "records", title=f"{len(stats.labels)} labels")
        for label, count in stats.labels.items():
            labels.add_row(one_line(label), f"{count:,}")
        console.print(labels)


@data_group.command("convert")
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@config_path_option
@config_options
@click.pass_context
def convert_command(ctx: click.Context, out: Path, config_path: Path | None,
                    overrides: tuple[str, ...]) -> None:
    """Write every readable record as canonical JSONL (messages, id, label, target, meta)."""
    from ftci.config import load_config
    from ftci.data.convert import convert_records
    from ftci.data.loaders import load_sources

    loaded = load_config(config_path, overrides, lint=False)
    result = load_sources(loaded.config.data, loaded.root)
    written = convert_records(result.records, out)
    if wants_json(ctx):
        emit_json({"ok": not result.unreadable, "out": str(out), "records": written,
                   "unreadable": len(result.problems)})
    else:
        click.echo(f"wrote {written:,} canonical records to {out}")
        if result.problems:
            click.echo(f"skipped {len(result.problems)} unreadable record(s); "
                       "`ftci data check` lists them", err=True)
    ctx.exit(EXIT_BAD_INPUT if result.unreadable else EXIT_OK)
