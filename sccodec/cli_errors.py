"""How every ``sccodec`` command fails: one line on stderr, ``sccodec: error: ...``, and an exit code.

Exit codes, one table for all commands (the README lists it too):

    0    success
    1    bad or corrupt input: a missing, unreadable, empty or foreign input file, a corrupt
         .scv file, an image sccodec cannot code, a limit exceeded (an ``SCVError``), or an
         unexpected failure
    2    usage error: a bad option or argument, an out-of-range parameter (``ParameterError``),
         binary output to a terminal (``-o -`` on a terminal)
    3    output problem: the output exists (and may not be replaced), is the input, or cannot
         be written
    130  interrupted (Ctrl-C); outputs are written whole or not at all, so nothing partial is left

A batch exits with the lowest non-zero code of its failed files. An error about one input
names it: ``sccodec: error: notes.txt: not an .scv file (bad magic bytes)``.
"""
from __future__ import annotations

import sys

import click

from sccodec.errors import SCVError

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2
EXIT_OUTPUT = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class CommandError(click.ClickException):
    """A one-line failure, shown like every other sccodec error."""

    def show(self, file=None) -> None:  # noqa: ANN001 (click's signature)
        click.echo(f"sccodec: error: {self.format_message()}", err=True)


class InputError(CommandError):
    exit_code = EXIT_INPUT


class UsageProblem(CommandError):
    """A usage error (exit 2) in one line, without click's usage banner."""

    exit_code = EXIT_USAGE


class OutputError(CommandError):
    exit_code = EXIT_OUTPUT


def one_line(err: Exception) -> tuple[str, int]:
    """(message, exit code): ours are self-explanatory; anything else (out of memory, a torch
    error) is named by its type, and counts as a bad input (exit 1)."""
    if isinstance(err, click.ClickException):
        return err.format_message(), err.exit_code
    if isinstance(err, SCVError):
        return str(err), err.exit_code
    return f"unexpected {type(err).__name__}: {err}", EXIT_INPUT


def about(name: str | None, message: str) -> str:
    """``name: message``, naming the file a message is about (once: not if it already starts so)."""
    if not name:
        return message
    name = "stdin" if name == "-" else name
    return message if message.startswith(f"{name}: ") else f"{name}: {message}"


def fail(err: Exception, name: str | None = None) -> None:
    """Print ``err`` as one line (about the file ``name``, if given) and exit with its code."""
    message, code = one_line(err)
    click.echo(f"sccodec: error: {about(name, message)}", err=True)
    sys.exit(code)


def interrupted() -> None:
    """Ctrl-C: one line (after the terminal's ``^C``), exit 130."""
    newline = "\n" if sys.stderr.isatty() else ""
    click.echo(f"{newline}sccodec: interrupted", err=True)
    sys.exit(EXIT_INTERRUPTED)
