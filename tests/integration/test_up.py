"""`microshop up` as a newcomer meets it: a quiet start, and a short clear error when its ports are
taken, by a second `microshop up` or by anything else."""

import socket
import subprocess
import time
from pathlib import Path

import pytest

from microshop.services import SERVICES
from tests.shops import RunningShop, free_base_port, up_command

pytestmark = pytest.mark.integration


def run_up(base_port: int, directory: Path) -> subprocess.CompletedProcess[str]:
    command = up_command(base_port, directory, "--storage", "memory")
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def ready_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if " | " in line and "ready on port" in line]


def test_start_up_is_quiet(shop: RunningShop) -> None:
    """While the four start, each once the ones it calls are up: every service says it is ready
    once, and none warns about peers that are not there yet."""
    deadline = time.monotonic() + 10  # the last service's line may still be on its way
    while len(ready_lines(shop.output())) < len(SERVICES) and time.monotonic() < deadline:
        time.sleep(0.1)
    start_up = shop.output()  # what the shop printed so far; this module asks nothing else of it
    lines = [line for line in start_up.splitlines() if " | " in line]
    ready = [line.split(" | ")[0].strip() for line in ready_lines(start_up)]
    assert sorted(ready) == sorted(SERVICES), start_up
    assert not [line for line in lines if '"level":"info"' not in line], start_up


def test_a_second_up_names_the_ports_and_who_holds_them(shop: RunningShop, tmp_path: Path) -> None:
    second = run_up(shop.base_port, tmp_path)

    assert second.returncode == 1
    gateway_pid = shop.pid("api-gateway")
    assert (
        f"port {shop.base_port} (api-gateway) is in use by pid {gateway_pid} " in second.stderr
    ), second.stderr
    assert "serve api-gateway" in second.stderr
    assert "ready on port" not in second.stdout  # nothing was started


def test_a_port_held_by_another_program_is_named_before_anything_starts(tmp_path: Path) -> None:
    base_port = free_base_port()
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", base_port + 4))
        other_program.listen()
        result = run_up(base_port, tmp_path)

    assert result.returncode == 1
    assert f"port {base_port + 4} (db) is in use by pid " in result.stderr, result.stderr
    assert "--base-port" in result.stderr
    assert len(result.stderr.splitlines()) <= 3, result.stderr
    assert " | " not in result.stdout, result.stdout  # no service printed anything
