""".ci/e2e-in-sandbox.sh: the end-to-end suite in a sandbox made for the run, deleted after it."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sandbox.conftest import SandboxCli, SandboxServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPOSITORY = Path(__file__).resolve().parents[2]
SCRIPT = REPOSITORY / ".ci" / "e2e-in-sandbox.sh"


def run_script(cli: SandboxCli, *pytest_arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "-p", "no:cacheprovider", *pytest_arguments],
        cwd=REPOSITORY,
        env=cli.env(PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )


def test_the_e2e_suite_passes_in_a_sandbox_made_for_the_run(sandbox_cli: SandboxCli) -> None:
    result = run_script(sandbox_cli)

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b\d+ passed\b", result.stdout)
    assert re.search(r"deleted sandbox e2e-\d+-\d+", result.stdout)
    sandbox_cli.assert_nothing_left()


def test_failing_tests_still_delete_the_sandbox_and_give_their_exit_code(
    sandbox_cli: SandboxCli,
) -> None:
    result = run_script(sandbox_cli, "-k", "no_test_is_called_this")

    assert result.returncode == 5  # pytest's "no tests ran"
    assert "the sandbox's last log lines" in result.stderr
    assert re.search(r"deleted sandbox e2e-", result.stdout)
    sandbox_cli.assert_nothing_left()


API_SCRIPT = REPOSITORY / ".ci" / "sandbox-api.sh"


def api_environment(server: SandboxServer) -> dict[str, str]:
    """What a CI job is given: the server's URL and token, and no microshop of its own."""
    return {
        **os.environ,
        "PYTHON": sys.executable,
        "MICROSHOP_SANDBOX_SERVER": server.url,
        "MICROSHOP_SANDBOX_SERVER_TOKEN": server.token,
        "MICROSHOP_HOME": str(server.home.parent / "job-home"),  # not the server's
    }


def run_api_script(
    server: SandboxServer, script: Path, *arguments: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(script), *arguments],
        cwd=REPOSITORY,
        env=api_environment(server),
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )


def test_the_e2e_suite_passes_in_a_sandbox_from_the_server(
    sandbox_server: SandboxServer,
) -> None:
    result = run_api_script(sandbox_server, SCRIPT, "-p", "no:cacheprovider")

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b\d+ passed\b", result.stdout)
    assert re.search(r"deleted sandbox e2e-\d+-\d+", result.stdout)
    assert sandbox_server.sandbox_processes() == []
    assert sandbox_server.token not in result.stdout + result.stderr
    with sandbox_server.client() as client:
        assert client.get("/sandboxes").json()["sandboxes"] == []


def test_failing_tests_in_a_server_sandbox_show_its_logs_and_delete_it(
    sandbox_server: SandboxServer,
) -> None:
    result = run_api_script(sandbox_server, SCRIPT, "-p", "no:cacheprovider", "-k", "nothing_so")

    assert result.returncode == 5  # pytest's "no tests ran"
    assert "the sandbox's last log lines" in result.stderr
    assert '"service":"api-gateway"' in result.stderr
    assert re.search(r"deleted sandbox e2e-", result.stdout)
    assert sandbox_server.sandbox_processes() == []


def test_the_api_script_creates_describes_and_deletes_with_curl_alone(
    sandbox_server: SandboxServer, tmp_path: Path
) -> None:
    blueprint = tmp_path / "blueprint.json"
    blueprint.write_text('{"services": {"db": {"environment": {"MICROSHOP_STORAGE": "memory"}}}}')

    created = run_api_script(sandbox_server, API_SCRIPT, "create", "by-curl", "10m", str(blueprint))
    assert created.returncode == 0, created.stderr
    sandbox = json.loads(created.stdout)
    assert sandbox["status"] == "ready" and sandbox["overridden"] == ["db"]
    assert 590 <= sandbox["seconds_left"] <= 600

    environment = run_api_script(sandbox_server, API_SCRIPT, "environment", "by-curl")
    assert f"MICROSHOP_GATEWAY_URL={sandbox['gateway_url']}" in environment.stdout
    logs = run_api_script(sandbox_server, API_SCRIPT, "logs", "by-curl", "db", "3")
    assert len(logs.stdout.splitlines()) == 3
    taken = run_api_script(sandbox_server, API_SCRIPT, "create", "by-curl")
    assert taken.returncode != 0 and "already exists" in taken.stdout + taken.stderr

    deleted = run_api_script(sandbox_server, API_SCRIPT, "delete", "by-curl")
    again = run_api_script(sandbox_server, API_SCRIPT, "delete", "by-curl")
    assert deleted.stdout == "deleted sandbox by-curl\n"
    assert again.returncode == 0 and again.stdout == "no sandbox named by-curl\n"
    assert run_api_script(sandbox_server, API_SCRIPT, "nonsense", "x").returncode == 2


JENKINS_STEP = REPOSITORY / ".ci" / "jenkins" / "vars" / "withSandbox.groovy"


def jenkins_shell_steps() -> list[str]:
    """The `sh '''...'''` scripts of the Jenkins step, as Groovy hands them to the shell."""
    scripts = re.findall(r"sh '''\n(.*?)'''", JENKINS_STEP.read_text(), flags=re.DOTALL)
    return [script.replace("\\\\", "\\") for script in scripts]


def test_the_jenkins_steps_shell_scripts_create_and_delete_through_the_server(
    sandbox_server: SandboxServer, tmp_path: Path
) -> None:
    create, delete = jenkins_shell_steps()
    blueprint = tmp_path / "blueprint.json"
    blueprint.write_text('{"services": {"db": {"environment": {"MICROSHOP_STORAGE": "memory"}}}}')
    environment = {
        **api_environment(sandbox_server),
        "SANDBOX": "jenkins-7-shop",
        "SANDBOX_DURATION": "10m",
        "SANDBOX_BLUEPRINT": str(blueprint),
    }

    def run(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/bin/sh", "-ec", script],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=200,
            check=False,
        )

    created = run(create)
    assert created.returncode == 0, created.stderr
    variables = (tmp_path / ".sandbox.env").read_text()
    assert "MICROSHOP_GATEWAY_URL=http://127.0.0.1:" in variables
    with sandbox_server.client() as client:
        sandbox = client.get("/sandboxes/jenkins-7-shop").json()
        assert sandbox["status"] == "ready" and sandbox["owner"] == "jenkins"
        assert sandbox["overridden"] == ["db"]
    assert run(delete).returncode == 0
    assert not (tmp_path / ".sandbox.env").exists()
    with sandbox_server.client() as client:
        assert client.get("/sandboxes/jenkins-7-shop").status_code == 404
