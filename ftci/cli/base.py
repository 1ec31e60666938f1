"""The one error boundary of the CLI and the output helpers every command shares.

Only click and the standard library are imported here: `ftci --help` must start fast.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from ftci.errors import EXIT_INFRA, EXIT_INTERRUPTED, FtciError


def debug_enabled() -> bool:
    return os.environ.get("FTCI_DEBUG", "") not in ("", "0", "false", "no")


class FtciGroup(click.Group):
    """A click group whose invoke() maps every failure to a message and a documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except FtciError as exc:
            report_error(ctx, exc.render(), exc.hint, exc.exit_code, exc)
        except KeyboardInterrupt:
            report_error(ctx, "interrupted", None, EXIT_INTERRUPTED, None)
        except Exception as exc:  # the last line of defence: exit 3, no traceback by default
            report_error(
                ctx,
                f"internal error: {type(exc).__name__}: {exc}",
                "rerun with FTCI_DEBUG=1 for the traceback, and please report it",
                EXIT_INFRA,
                exc,
            )


def report_error(ctx: click.Context, message: str, hint: str | None, code: int,
                 exc: BaseException | None) -> None:
    if exc is not None and debug_enabled():
        traceback.print_exception(exc, file=sys.stderr)
    if wants_json(ctx):
        payload = {"ok": False, "exit_code": code, "error": message, "hint": hint}
        problems = getattr(exc, "problems", None)
        if problems:
            payload["problems"] = [problem.to_dict() for problem in problems]
        click.echo(json.dumps(payload, indent=2))
    else:
        click.secho(f"error: {message}", fg="red", err=True)
        if hint:
            click.echo(f"hint: {hint}", err=True)
    ctx.exit(code)


def wants_json(ctx: click.Context | None) -> bool:
    root = ctx.find_root() if ctx is not None else None
    return bool(root is not None and root.obj and root.obj.get("json"))


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


config_path_option = click.option(
    "-c", "--config", "config_path", type=click.Path(path_type=Path), default=None,
    help="ftci.yaml or its directory (default: ./ftci.yaml).")


def config_options(func: Any) -> Any:
    """`--set key.path=value` (repeatable): every command that reads ftci.yaml takes it."""
    return click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY.PATH=VALUE",
        help="Override a config value, e.g. --set train.lora.r=8 (repeatable).",
    )(func)
