"""Reservations: every sandbox ends by itself at its end time, whoever created it.

The end time is kept in the sandbox's `reservation.json`. Next to each sandbox runs a small
detached process, `microshop sandbox reap NAME`, started before anything else of the sandbox: it
outlives the command line (or server) that created it, and at the end time tears the sandbox down.
It carries the sandbox's token like every other process of the sandbox, so deleting the sandbox
stops it too. A sandbox server also sweeps for expired sandboxes, in case a reaper was killed.
"""

import os
import re
import signal
import subprocess
import sys
import time
from types import FrameType

from microshop.sandbox import processes
from microshop.sandbox.state import SandboxDirectory, SandboxRecord

REAPER_POLL_SECONDS = 2.0
"""How often the reaper reads the end time again, so that an extension is honoured."""
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")


def parse_duration(text: str) -> float:
    """Seconds from `90`, `90s`, `30m`, `2h` or `1d`."""
    match = DURATION.fullmatch(text.lower())
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"bad duration {text!r}: use seconds, or a number with s, m, h or d")
    return float(match.group(1)) * DURATION_UNITS[match.group(2)]


def describe_seconds(seconds: float) -> str:
    """`1h05m`, `4m10s`, `12s`: short enough for a table column."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, seconds_part = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds_part:02d}s"
    return f"{seconds_part}s"


def start_reaper(directory: SandboxDirectory, record: SandboxRecord) -> None:
    """Starts the sandbox's reaper, detached; deleting the sandbox stops it, by the token."""
    with directory.reaper_log_file.open("ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "microshop", "sandbox", "reap", record.name],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **processes.token_environment(record.token)},
            start_new_session=True,  # outlives the command line or server that created it
        )


def stop_on_signal() -> None:
    """SIGTERM (sent by whoever deletes the sandbox first) ends the reaper with exit code 0."""

    def leave(signal_number: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)


def wait_for_end(directory: SandboxDirectory, token: str) -> bool:
    """Sleeps until the sandbox's end time; False when the sandbox went away (or was replaced
    by another of the same name) first, so there is nothing left to tear down."""
    while True:
        record = directory.load()
        if not directory.path.is_dir() or (record is not None and record.token != token):
            return False
        reservation = directory.load_reservation()
        if reservation is None:
            return False
        left = reservation.seconds_left()
        if left <= 0:
            return True
        time.sleep(min(left, REAPER_POLL_SECONDS))
