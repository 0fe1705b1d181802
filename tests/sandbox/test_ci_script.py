"""ci/e2e-in-sandbox.sh: the end-to-end suite in a sandbox made for the run, deleted after it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sandbox.conftest import SandboxCli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPOSITORY = Path(__file__).resolve().parents[2]
SCRIPT = REPOSITORY / "ci" / "e2e-in-sandbox.sh"


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
