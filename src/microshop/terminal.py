"""What the command line prints with, and how it stops on an error."""

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
