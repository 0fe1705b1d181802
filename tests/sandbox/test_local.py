"""Local sandboxes: real shops on 127.0.0.1, created, inspected, broken and deleted by the CLI."""

import json
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.postgres import PostgresServer
from tests.sandbox.conftest import SandboxCli, accepts_connections, alive, layout, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ORDER = {"item": "lamp", "price": 25, "customer": "Side-by-side"}


def gateway(record: dict[str, object]) -> httpx.Client:
    ports = record["ports"]
    assert isinstance(ports, dict)
    return httpx.Client(base_url=f"http://127.0.0.1:{ports['api-gateway']}", timeout=10)


def test_two_sandboxes_run_side_by_side_with_independent_data(sandbox_cli: SandboxCli) -> None:
    creating = [sandbox_cli.start("create", name) for name in ("left", "right")]
    for process in creating:
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output
    left, right = sandbox_cli.record("left"), sandbox_cli.record("right")
    assert not set(left["ports"].values()) & set(right["ports"].values())

    with gateway(left) as left_gateway, gateway(right) as right_gateway:
        placed = left_gateway.post("/orders", json=ORDER)
        assert placed.status_code == 201
        assert right_gateway.get("/orders").json() == []  # nothing of left's in right
        also_first = right_gateway.post("/orders", json={**ORDER, "item": "desk"}).json()
        assert also_first["order"]["id"] == placed.json()["order"]["id"] == 1
        assert [o["item"] for o in left_gateway.get("/orders").json()] == ["lamp"]

        assert sandbox_cli.run("delete", "left").returncode == 0
        assert [port for port in left["ports"].values() if accepts_connections(port)] == []
        assert [o["item"] for o in right_gateway.get("/orders").json()] == ["desk"]

    assert sandbox_cli.run("status", "right").returncode == 0
    assert sandbox_cli.sandboxes() == ["right"]
    assert sandbox_cli.run("delete", "right").returncode == 0
    sandbox_cli.assert_nothing_left(list(right["ports"].values()))


def test_a_bad_setting_fails_create_with_the_services_output_and_leaves_nothing(
    sandbox_cli: SandboxCli, base_port: int
) -> None:
    result = sandbox_cli.run(
        "create", "broken", "--base-port", str(base_port), MICROSHOP_LOG_LEVEL="NOPE"
    )

    assert result.returncode == 1
    assert "NOPE" in result.stderr  # the failing service's own words
    assert "nothing was left behind" in result.stderr
    sandbox_cli.assert_nothing_left(layout(base_port))


def test_a_busy_port_fails_create_before_anything_starts(
    sandbox_cli: SandboxCli, base_port: int
) -> None:
    busy = layout(base_port)[2]
    with socket.create_server(("127.0.0.1", busy)):
        result = sandbox_cli.run("create", "crowded", "--base-port", str(base_port))

    assert result.returncode == 1
    assert f"port {busy} is in use" in result.stderr
    sandbox_cli.assert_nothing_left(layout(base_port))


def test_postgresql_needs_a_url_and_keeps_it_off_the_command_line(
    sandbox_cli: SandboxCli, postgres: PostgresServer
) -> None:
    refused = sandbox_cli.run("create", "no-url", "--database", "postgresql")
    assert refused.returncode == 1
    assert "--database-url" in refused.stderr
    sandbox_cli.assert_nothing_left()

    url = postgres.create_database()
    record = sandbox_cli.create("pg", "--database-url", url)

    assert record["database"] == "postgresql"
    with gateway(record) as client:
        assert client.post("/orders", json=ORDER).status_code == 201
    for pid in [record["supervisor_pid"], *sandbox_cli.service_pids("pg").values()]:
        assert b"postgresql://" not in Path(f"/proc/{pid}/cmdline").read_bytes()


@pytest.mark.parametrize(
    "moment",
    ["directory-created", "supervisor-started", "services-started"],
)
def test_killing_create_midway_leaves_nothing_that_delete_all_cannot_clean(
    sandbox_cli: SandboxCli, base_port: int, moment: str
) -> None:
    directory = sandbox_cli.directory("cut")
    reached = {
        "directory-created": directory.exists,
        "supervisor-started": lambda: bool(
            read_json(directory / "sandbox.json").get("supervisor_pid")
        ),
        "services-started": lambda: len(read_json(directory / "supervisor.json")) > 0,
    }[moment]
    create = sandbox_cli.start("create", "cut", "--base-port", str(base_port))
    wait_for(reached, what=moment)
    create.send_signal(signal.SIGKILL)  # no chance to clean up
    create.wait(10)

    listed = sandbox_cli.run("list")
    assert "cut" in listed.stdout
    deleted = sandbox_cli.run("delete", "--all")

    assert deleted.returncode == 0, deleted.stderr
    sandbox_cli.assert_nothing_left(layout(base_port))


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_create_told_to_stop_deletes_what_it_started(
    sandbox_cli: SandboxCli, base_port: int, signal_number: signal.Signals
) -> None:
    directory = sandbox_cli.directory("stopped")
    create = sandbox_cli.start("create", "stopped", "--base-port", str(base_port))
    wait_for(lambda: len(read_json(directory / "supervisor.json")) > 0, what="services started")
    create.send_signal(signal_number)
    output, _ = create.communicate(timeout=60)

    assert create.returncode == 130, output
    assert "interrupted; sandbox stopped was deleted" in output
    sandbox_cli.assert_nothing_left(layout(base_port))


def read_json(path: Path) -> dict[str, Any]:
    """The file's object, or {} while it is not (completely) written."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


@pytest.mark.parametrize("killed", ["supervisor", "everything"])
def test_a_sandbox_whose_processes_died_is_reported_and_deleted(
    sandbox_cli: SandboxCli, killed: str
) -> None:
    record = sandbox_cli.create("fragile")
    services = sandbox_cli.service_pids("fragile")
    victims = [record["supervisor_pid"]]
    if killed == "everything":
        victims += list(services.values())
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(alive(pid) for pid in victims), what="processes gone")

    status = sandbox_cli.run("status", "fragile")
    listed = sandbox_cli.run("list")

    assert status.returncode == 1
    assert "dead" in status.stdout and "supervisor" in status.stdout
    if killed == "supervisor":
        assert "4 service process(es) still run" in " ".join(status.stdout.split())
    else:
        assert status.stdout.count("not running") == 4
    assert "dead" in listed.stdout
    assert sandbox_cli.run("delete", "fragile").returncode == 0
    sandbox_cli.assert_nothing_left(list(record["ports"].values()))


ReadySandbox = tuple[SandboxCli, dict[str, Any]]


@pytest.fixture(scope="module")
def ready_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadySandbox]:
    """One sandbox for the tests that only look at it."""
    cli = SandboxCli(tmp_path_factory.mktemp("ready") / "home")
    record = cli.create("ready")
    yield cli, record
    cli.run("delete", "--all")


def test_exec_runs_a_command_with_the_sandboxs_urls(ready_sandbox: ReadySandbox) -> None:
    cli, record = ready_sandbox
    show = "import json, os; print(json.dumps(dict(os.environ)))"

    result = cli.run("exec", "ready", "--", sys.executable, "-c", show)

    assert result.returncode == 0, result.stderr
    environment = json.loads(result.stdout)
    ports = record["ports"]
    assert environment["MICROSHOP_SANDBOX"] == "ready"
    assert environment["MICROSHOP_GATEWAY_URL"] == f"http://127.0.0.1:{ports['api-gateway']}"
    assert (
        environment["MICROSHOP_ORDER_SERVICE_URL"] == f"http://127.0.0.1:{ports['order-service']}"
    )
    assert environment["MICROSHOP_PAYMENT_SERVICE_URL"] == (
        f"http://127.0.0.1:{ports['payment-service']}"
    )
    assert environment["MICROSHOP_DB_SERVICE_URL"] == f"http://127.0.0.1:{ports['db']}"
    assert httpx.get(environment["MICROSHOP_GATEWAY_URL"] + "/readyz").status_code == 200


def test_exec_passes_on_the_commands_exit_code(ready_sandbox: ReadySandbox) -> None:
    cli, _ = ready_sandbox

    assert cli.run("exec", "ready", "--", sys.executable, "-c", "exit(7)").returncode == 7
    assert cli.run("exec", "ready", "--", "no-such-program-here").returncode == 127
    missing = cli.run("exec", "nowhere", "--", "true")
    assert missing.returncode == 1
    assert "no sandbox named 'nowhere'" in missing.stderr


def test_status_and_list_show_every_service_ready(ready_sandbox: ReadySandbox) -> None:
    cli, record = ready_sandbox

    status = cli.run("status", "ready")
    listed = cli.run("list")

    assert status.returncode == 0
    for service, port in record["ports"].items():
        assert f"{service}" in status.stdout and f":{port}" in status.stdout
    assert status.stdout.count("│ ready") == 4
    assert "ready" in listed.stdout and f":{record['ports']['api-gateway']}" in listed.stdout


def test_logs_show_one_services_lines(ready_sandbox: ReadySandbox) -> None:
    cli, record = ready_sandbox
    for _ in range(2):  # two access lines, after the gateway's one line of start-up
        httpx.get(f"http://127.0.0.1:{record['ports']['api-gateway']}/orders", timeout=10)

    db_lines = cli.run("logs", "ready", "db").stdout.splitlines()
    every_line = cli.run("logs", "ready").stdout
    last_two = cli.run("logs", "ready", "api-gateway", "--tail", "2").stdout.splitlines()

    assert db_lines
    assert {json.loads(line)["service"] for line in db_lines} == {"db"}
    for service in ("api-gateway", "payment-service", "order-service", "db"):
        assert f"{service} | " in every_line or f"{service:<15} | " in every_line
    assert len(last_two) == 2
    assert cli.run("logs", "ready", "cart").returncode == 2


def test_create_refuses_a_name_that_is_taken_or_invalid(ready_sandbox: ReadySandbox) -> None:
    cli, _ = ready_sandbox

    taken = cli.run("create", "ready")
    invalid = cli.run("create", "Not_A_Name")

    assert taken.returncode == 1 and "already exists" in taken.stderr
    assert invalid.returncode == 1 and "bad sandbox name" in invalid.stderr
    assert cli.run("status", "ready").returncode == 0  # the first one untouched


def test_deleting_a_missing_sandbox_is_an_error_unless_asked_not_to(
    ready_sandbox: ReadySandbox,
) -> None:
    cli, _ = ready_sandbox

    missing = cli.run("delete", "nowhere")
    tolerated = cli.run("delete", "nowhere", "--if-exists")

    assert missing.returncode == 1 and "no sandbox named 'nowhere'" in missing.stderr
    assert tolerated.returncode == 0
    assert cli.sandboxes() == ["ready"]
