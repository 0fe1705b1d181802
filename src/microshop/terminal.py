"""What the command line prints with, and how it stops on an error."""

import os
import shutil
import sys
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
error_console = Console(stderr=True)

USAGE_ERROR = 2
"""The exit code for a bad command line or bad settings, as Click and most Unix tools use it."""


def fail(message: str, code: int) -> NoReturn:
    error_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def command_name() -> str:
    """How to run this command again: `microshop` when that is on PATH, else the path it was run
    by (after `make up`, `.venv/bin/microshop`), so that hints can be copied as they are."""
    on_path = shutil.which("microshop")
    invoked = sys.argv[0]
    if on_path and os.path.realpath(on_path) == os.path.realpath(invoked):
        return "microshop"
    if os.path.basename(invoked) == "microshop":
        return os.path.relpath(invoked) if not os.path.isabs(invoked) else invoked
    return f"{sys.executable} -m microshop"
