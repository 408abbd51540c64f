"""How every ``sccodec`` command fails: one line on stderr, ``sccodec: error: ...``, and an exit code.

Exit codes (one table for all commands): 0 success · 1 bad or corrupt input (an ``SCVError``,
or an unexpected failure) · 2 usage error (including an out-of-range parameter) · 3 output
problem (exists without --force, same as input, cannot be written).
"""
from __future__ import annotations

import sys

import click

from sccodec.errors import SCVError

EXIT_OUTPUT = 3


class CommandError(click.ClickException):
    """A one-line failure, shown like every other sccodec error."""

    def show(self, file=None) -> None:  # noqa: ANN001 (click's signature)
        click.echo(f"sccodec: error: {self.format_message()}", err=True)


class InputError(CommandError):
    exit_code = 1


class OutputError(CommandError):
    exit_code = EXIT_OUTPUT


def one_line(err: Exception) -> tuple[str, int]:
    """(message, exit code): ours are self-explanatory; anything else (out of memory, a torch
    error) is named by its type, and counts as a bad input (exit 1)."""
    if isinstance(err, click.ClickException):
        return err.format_message(), err.exit_code
    if isinstance(err, SCVError):
        return str(err), err.exit_code
    return f"unexpected {type(err).__name__}: {err}", 1


def fail(err: Exception) -> None:
    """Print ``err`` as one line and exit with its code."""
    message, code = one_line(err)
    click.echo(f"sccodec: error: {message}", err=True)
    sys.exit(code)
