"""Instructions counted by valgrind's callgrind: figures that the machine's noise leaves alone."""

import os
import re
import subprocess
import sys


def instructions(script: str, *arguments: str) -> int:
    """Instructions a whole run of `python script arguments` executes, as callgrind counts them.

    The hash seed is fixed, so that two runs lay out their dicts and sets alike."""
    run = subprocess.run(
        [
            *("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"),
            *(sys.executable, script, *arguments),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    collected = re.search(r"Collected : (\d+)", run.stderr)
    assert collected, run.stderr[-2000:]
    return int(collected.group(1))
