"""The sandbox server: real sandboxes created, inspected, extended and deleted over HTTP.

Each test runs `microshop sandbox serve` as a process on a free port, with the CLI's home as its
state directory, and sandboxes with memory storage (the lightest shop there is).
"""

import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.generated_inputs import assert_no_server_error
from tests.sandbox.conftest import (
    SERVER_TOKEN,
    SandboxCli,
    SandboxServer,
    accepts_connections,
    alive,
    start_sandbox_server,
    wait_for,
    wait_until_ready,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

MEMORY = {"database": "memory"}
ORDER = {"item": "lamp", "price": 100, "customer": "Through-the-API"}
JSON = {"Content-Type": "application/json"}
REPOSITORY = Path(__file__).resolve().parents[2]
TEXT = {"Content-Type": "text/plain"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    """One server for the tests that clean up after themselves; a quota of 5, at most 2 h."""
    cli = SandboxCli(tmp_path_factory.mktemp("server") / "home")
    running = start_sandbox_server(cli.home, "--quota", "5", "--max-duration", "2h")
    yield running
    assert running.stop() == 0, running.output()[-4000:]
    cli.run("delete", "--all")


def ports_of(sandbox: dict[str, Any]) -> list[int]:
    return [int(service["url"].rsplit(":", 1)[1]) for service in sandbox["services"]]


def assert_gone(server: SandboxServer, client: httpx.Client, name: str, ports: list[int]) -> None:
    assert client.get(f"/sandboxes/{name}").status_code == 404
    wait_for(lambda: server.sandbox_processes() == [], timeout=30, what="no process left")
    assert [port for port in ports if accepts_connections(port)] == []
    assert not (server.home / "sandboxes" / name).exists()


def test_a_sandbox_is_created_polled_used_extended_and_deleted(
    server: SandboxServer,
) -> None:
    with server.client() as client:
        created = client.post(
            "/sandboxes", json={"name": "api-1", "duration": "20m", "owner": "ci", **MEMORY}
        )
        assert created.status_code == 202, created.text
        assert created.headers["location"] == "/sandboxes/api-1"
        assert created.json()["status"] == "starting"
        again = client.post("/sandboxes", json={"name": "api-1", **MEMORY})
        assert again.status_code == 409
        assert again.headers["content-type"] == "application/problem+json"

        sandbox = wait_until_ready(client, "api-1")

        assert sandbox["status"] == "ready", sandbox
        assert sandbox["owner"] == "ci" and sandbox["database"] == "memory"
        assert 1190 <= sandbox["seconds_left"] <= 1200
        assert {service["name"]: service["ready"] for service in sandbox["services"]} == {
            "db": True,
            "payment-service": True,
            "order-service": True,
            "api-gateway": True,
        }
        assert sandbox["overridden"] == []
        placed = httpx.post(sandbox["gateway_url"] + "/orders", json=ORDER, timeout=10)
        assert placed.status_code == 201

        extended = client.post("/sandboxes/api-1/extend", json={"duration": 600})
        assert extended.status_code == 200
        assert 1790 <= extended.json()["seconds_left"] <= 1800

        environment = client.get("/sandboxes/api-1/environment")
        assert environment.headers["content-type"].startswith("text/plain")
        assert f"MICROSHOP_GATEWAY_URL={sandbox['gateway_url']}\n" in environment.text
        assert "MICROSHOP_SANDBOX=api-1\n" in environment.text
        logs = client.get("/sandboxes/api-1/logs/api-gateway", params={"tail": 5})
        assert logs.status_code == 200
        lines = logs.text.splitlines()
        assert 0 < len(lines) <= 5
        assert {json.loads(line)["service"] for line in lines} == {"api-gateway"}
        listed = client.get("/sandboxes").json()
        assert [each["name"] for each in listed["sandboxes"]] == ["api-1"]
        assert listed["quota"] == 5

        assert client.delete("/sandboxes/api-1").status_code == 204
        assert client.delete("/sandboxes/api-1").status_code == 404
        assert_gone(server, client, "api-1", ports_of(sandbox))
    assert SERVER_TOKEN not in server.output()


def test_a_sandbox_that_cannot_come_up_is_reported_and_leaves_nothing(
    server: SandboxServer,
) -> None:
    crash = [sys.executable, "-c", "print('no db today'); raise SystemExit(3)"]
    broken = {"name": "broken", "blueprint": {"services": {"db": {"command": crash}}}}
    with server.client() as client:
        created = client.post("/sandboxes", params={"wait": 120}, json=broken)

        assert created.status_code == 502, created.text
        assert "no db today" in created.json()["detail"]  # the failing service's own words
        gone = client.get("/sandboxes/broken")
        assert gone.status_code == 410 and "no db today" in gone.json()["detail"]
        assert server.sandbox_processes() == []
        assert client.delete("/sandboxes/broken").status_code == 204
        assert client.get("/sandboxes/broken").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"backend": "cloud"}, 422, "'local' or 'kubernetes'"),
        ({"backend": "kubernetes"}, 422, "not enabled on this server"),
        ({"name": "Not_A_Name"}, 422, "name"),
        ({"duration": "soon"}, 422, "bad duration"),
        ({"duration": "3h"}, 422, "at most 2h00m"),
        ({"duration": -5}, 422, "greater than 0"),
        ({"blueprint": {"services": {"cart": {"image": "x"}}}}, 422, "unknown service cart"),
        ({"blueprint": {"services": {"db": {"image": "shop:7"}}}}, 422, "for the kubernetes"),
        ({"blueprint": {"services": {"db": {"checkout": "/nowhere"}}}}, 422, "not a checkout"),
        ({"blueprint": {"services": {"db": {}}}}, 422, "give a command"),
        ({"blueprint": {"services": {}}}, 422, "blueprint.services"),
        ({"colour": "red"}, 422, "colour"),
    ],
)
def test_bad_creates_get_a_problem_and_start_nothing(
    server: SandboxServer, body: dict[str, Any], status: int, words: str
) -> None:
    with server.client() as client:
        answer = client.post("/sandboxes", json=body)

        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert words in answer.json()["detail"]
        assert client.get("/sandboxes").json()["sandboxes"] == []
    assert server.sandbox_processes() == []


def test_requests_without_the_token_or_with_bad_input_get_problems(
    server: SandboxServer,
) -> None:
    url = server.url
    assert httpx.get(f"{url}/sandboxes").status_code == 401
    wrong = httpx.get(f"{url}/sandboxes", headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{url}/readyz").status_code == 200
    assert httpx.get(f"{url}/").status_code == 200
    spec = httpx.get(f"{url}/openapi.json").json()
    assert {"/sandboxes", "/sandboxes/{name}", "/sandboxes/{name}/extend"} <= set(spec["paths"])
    assert spec["paths"]["/sandboxes/{name}"]["get"]["parameters"][0]["schema"] == {
        "type": "string"
    }
    with server.client() as client:
        assert client.post("/sandboxes", content=b"{not json", headers=JSON).status_code == 400
        assert client.post("/sandboxes?wait=forever", json={}).status_code == 422
        assert client.post("/sandboxes?wait=9999", json={}).status_code == 422
        assert client.post("/sandboxes", content=b"x", headers=TEXT).status_code == 415
        assert client.get("/sandboxes/nowhere").status_code == 404
        assert client.get("/sandboxes/Bad..Name").status_code == 404
        assert client.delete("/sandboxes/nowhere").status_code == 404
        assert client.post("/sandboxes/nowhere/extend", json={"duration": 5}).status_code == 404
        assert client.get("/sandboxes/nowhere/logs/db").status_code == 404
        assert client.get("/sandboxes/nowhere/environment").status_code == 404
    assert "guess" not in server.output()


def test_a_reservation_ends_by_itself_and_can_be_extended_first(
    server: SandboxServer,
) -> None:
    with server.client() as client:
        short = client.post("/sandboxes", json={"name": "short", "duration": 6, **MEMORY})
        assert short.status_code == 202, short.text
        kept = client.post("/sandboxes/short/extend", json={"duration": "3s"})
        assert kept.status_code == 200 and kept.json()["seconds_left"] >= 7
        too_long = client.post("/sandboxes/short/extend", json={"duration": "2h"})
        assert too_long.status_code == 422 and "at most 2h00m" in too_long.json()["detail"]

        wait_for(
            lambda: client.get("/sandboxes/short").status_code == 404,
            timeout=60,
            what="the sandbox torn down at its end",
        )
        assert_gone(server, client, "short", [])

        too_short = client.post(
            "/sandboxes", params={"wait": 60}, json={"name": "blink", "duration": 0.5, **MEMORY}
        )
        assert too_short.status_code == 409, too_short.text
        assert "reached its end time" in too_short.json()["detail"]
        assert client.get("/sandboxes/blink").status_code == 410  # with why, until deleted
        assert client.delete("/sandboxes/blink").status_code == 204
        assert_gone(server, client, "blink", [])


def test_a_cli_sandbox_ends_by_itself_with_no_server_running(sandbox_cli: SandboxCli) -> None:
    record = sandbox_cli.create("brief", "--database", "memory", "--duration", "8s")
    listed = sandbox_cli.run("list", COLUMNS="200")
    assert "time left" in listed.stdout
    assert re.search(r"│ [1-8]s +│", listed.stdout), listed.stdout

    wait_for(lambda: sandbox_cli.sandboxes() == [], timeout=40, what="the reaper tore it down")
    wait_for(lambda: sandbox_cli.processes() == [], timeout=30, what="no process left")
    sandbox_cli.assert_nothing_left(list(record["ports"].values()))
    assert sandbox_cli.run("create", "never", "--duration", "soon").returncode == 2


def test_ten_creates_at_once_get_distinct_ports_or_a_clean_429(
    server: SandboxServer,
) -> None:
    def create(number: int) -> httpx.Response:
        with server.client() as client:
            return client.post("/sandboxes", json={"name": f"rush-{number}", **MEMORY})

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(create, range(10)))

    accepted = [answer for answer in answers if answer.status_code == 202]
    refused = [answer for answer in answers if answer.status_code == 429]
    assert (len(accepted), len(refused)) == (5, 5), [answer.text for answer in answers]
    for answer in refused:
        assert int(answer.headers["retry-after"]) >= 1
        assert answer.headers["content-type"] == "application/problem+json"
    with server.client() as client:
        sandboxes = [
            wait_until_ready(client, answer.json()["name"], timeout=180) for answer in accepted
        ]
        assert [sandbox["status"] for sandbox in sandboxes] == ["ready"] * 5
        ports = [port for sandbox in sandboxes for port in ports_of(sandbox)]
        assert len(set(ports)) == 20
        for sandbox in sandboxes:
            placed = httpx.post(sandbox["gateway_url"] + "/orders", json=ORDER, timeout=10)
            assert placed.json()["order"]["id"] == 1  # each its own shop
        for sandbox in sandboxes:
            assert client.delete(f"/sandboxes/{sandbox['name']}").status_code == 204
    wait_for(lambda: server.sandbox_processes() == [], timeout=60, what="all stopped")


def test_sigterm_stops_the_server_with_exit_code_0_and_a_restart_finds_its_sandboxes(
    sandbox_cli: SandboxCli,
) -> None:
    server = start_sandbox_server(sandbox_cli.home)
    with server.client() as client:
        assert client.post("/sandboxes", json={"name": "kept", **MEMORY}).status_code == 202
    time.sleep(0.5)  # the creation is under way

    assert server.stop() == 0  # once it has finished creating the sandbox
    assert sandbox_cli.run("status", "kept").returncode == 0
    restarted = start_sandbox_server(sandbox_cli.home)
    try:
        with restarted.client() as client:
            found = client.get("/sandboxes/kept").json()
            assert found["status"] == "ready"
            gateway_port = sandbox_cli.record("kept")["ports"]["api-gateway"]
            assert found["gateway_url"] == f"http://127.0.0.1:{gateway_port}"
            assert client.delete("/sandboxes/kept").status_code == 204
            assert_gone(restarted, client, "kept", ports_of(found))
    finally:
        assert restarted.stop() == 0


@pytest.mark.parametrize("moment", ["recorded", "services-started"])
def test_a_server_killed_mid_create_leaves_nothing_after_a_restart(
    sandbox_cli: SandboxCli, moment: str
) -> None:
    server = start_sandbox_server(sandbox_cli.home)
    directory = sandbox_cli.directory("cut")
    reached = {
        "recorded": (directory / "sandbox.json").exists,
        "services-started": (directory / "supervisor.json").exists,
    }[moment]
    with server.client() as client:
        assert client.post("/sandboxes", json={"name": "cut", **MEMORY}).status_code == 202
    wait_for(reached, what=moment)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)

    restarted = start_sandbox_server(sandbox_cli.home)
    try:
        with restarted.client() as client:
            assert_gone(restarted, client, "cut", [])
    finally:
        assert restarted.stop() == 0
    sandbox_cli.assert_nothing_left()


def test_a_sandbox_whose_processes_died_is_deleted_all_the_same(server: SandboxServer) -> None:
    with server.client() as client:
        created = client.post("/sandboxes", params={"wait": 120}, json={"name": "dead", **MEMORY})
        assert created.status_code == 201, created.text
        victims = [
            SandboxCli(server.home).record("dead")["supervisor_pid"],
            *SandboxCli(server.home).service_pids("dead").values(),
        ]
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(alive(pid) for pid in victims), what="processes gone")
        assert client.get("/sandboxes/dead").json()["status"] == "dead"

        assert client.delete("/sandboxes/dead").status_code == 204
        assert_gone(server, client, "dead", ports_of(created.json()))


def test_a_blueprint_runs_a_service_from_another_command(server: SandboxServer) -> None:
    payments = {
        "command": [sys.executable, "-m", "microshop", "serve", "payment-service"],
        "environment": {"MICROSHOP_DECLINE_ABOVE": "50"},
    }
    with server.client() as client:
        created = client.post(
            "/sandboxes",
            params={"wait": 120},
            json={"blueprint": {"services": {"payment-service": payments}}},
        )
        assert created.status_code == 201, created.text  # ready within the wait
        sandbox = created.json()
        assert sandbox["status"] == "ready" and sandbox["name"].startswith("sb-")
        assert created.headers["location"] == f"/sandboxes/{sandbox['name']}"

        assert sandbox["overridden"] == ["payment-service"]
        overrides = {service["name"]: service["override"] for service in sandbox["services"]}
        assert overrides["payment-service"].startswith("command ")
        assert overrides["db"] is None
        placed = httpx.post(sandbox["gateway_url"] + "/orders", json=ORDER, timeout=10)
        assert placed.json()["order"]["status"] == "declined"  # 100 is above the blueprint's 50
        assert client.delete(created.headers["location"]).status_code == 204


def test_deletes_at_once_tear_a_sandbox_down_exactly_once(server: SandboxServer) -> None:
    with server.client() as client:
        created = client.post("/sandboxes", params={"wait": 120}, json={"name": "twice", **MEMORY})
        assert created.status_code == 201, created.text
    cli = SandboxCli(server.home)

    def delete_through_the_api(_: int) -> int:
        with server.client() as client:
            return client.delete("/sandboxes/twice").status_code

    with ThreadPoolExecutor(3) as pool:
        from_the_cli = pool.submit(cli.run, "delete", "twice")
        answers = sorted(pool.map(delete_through_the_api, range(2)))
    deleted_by_the_cli = "deleted sandbox twice" in from_the_cli.result().stdout

    assert answers.count(204) + deleted_by_the_cli == 1, (answers, from_the_cli.result())
    assert from_the_cli.result().returncode in (0, 1)
    assert set(answers) <= {204, 404}
    with server.client() as client:
        assert_gone(server, client, "twice", ports_of(created.json()))


def test_a_blueprint_runs_a_service_from_another_checkout(
    server: SandboxServer, tmp_path: Path
) -> None:
    checkout = tmp_path / "branch"
    shutil.copytree(REPOSITORY / "src" / "microshop", checkout / "src" / "microshop")
    with (checkout / "src" / "microshop" / "__init__.py").open("a") as package:
        package.write('\n__version__ = "9.9.9+branch"\n')
    blueprint = {"services": {"order-service": {"checkout": str(checkout)}}}
    with server.client() as client:
        created = client.post(
            "/sandboxes", params={"wait": 120}, json={"name": "branch", "blueprint": blueprint}
        )
        assert created.status_code == 201, created.text
        urls = {service["name"]: service["url"] for service in created.json()["services"]}

        versions = {
            name: httpx.get(url + "/healthz", timeout=5).json()["version"]
            for name, url in urls.items()
        }
        assert versions.pop("order-service") == "9.9.9+branch"
        assert "9.9.9+branch" not in versions.values()
        placed = httpx.post(urls["api-gateway"] + "/orders", json=ORDER, timeout=10)
        assert placed.status_code == 201
        assert client.delete("/sandboxes/branch").status_code == 204


def test_no_generated_input_gets_a_server_error(sandbox_cli: SandboxCli, tmp_path: Path) -> None:
    """Inputs made from the server's own OpenAPI document; its quota is full, so that no
    generated create starts a shop (each one is refused with 429, or earlier)."""
    server = start_sandbox_server(sandbox_cli.home, "--quota", "1")
    try:
        with server.client() as client:
            full = client.post("/sandboxes", params={"wait": 120}, json={"name": "full", **MEMORY})
            assert full.status_code == 201, full.text
        assert_no_server_error(
            server.url + "/openapi.json",
            tmp_path,
            "--header",
            f"Authorization: Bearer {server.token}",
            "--phases",
            "examples,coverage,fuzzing",  # not stateful: it would delete "full" and fill up
            "--max-examples",
            "15",
        )
    finally:
        assert server.stop() == 0, server.output()[-4000:]
