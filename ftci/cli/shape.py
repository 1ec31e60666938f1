"""The installed CLI's command tree, for code outside ftci/cli/ that must not import click.

The GitHub Action's `run` (ftci/ci/action.py) splits a command such as `data-check` into
words and passes through only the options that command has; the tree is read from click here.
"""

from __future__ import annotations

from collections.abc import Sequence

import click


def command_shape(words: Sequence[str]) -> tuple[list[str], set[str]]:
    """Command groups of the installed ftci, and the options of the command `words` names."""
    from ftci.cli import main

    groups = [name for name, cmd in main.commands.items() if isinstance(cmd, click.Group)]
    command: click.Command | None = main
    for word in words:
        if not isinstance(command, click.Group):
            break
        command = command.commands.get(word)
    options: set[str] = set()
    if command is not None and command is not main:
        for param in command.params:
            if isinstance(param, click.Option):
                options.update(param.opts + param.secondary_opts)
    return groups, options
