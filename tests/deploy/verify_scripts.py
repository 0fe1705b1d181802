"""Running deploy/verify's scripts from the tests, as a person would, with a bounded time."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.manifests import ROOT
from tests.system_tools import missing_system_tool

VERIFY = ROOT / "deploy" / "verify"
# The first run makes the base image's stand-in (about a minute); later runs reuse it.
SCRIPT_TIMEOUT_SECONDS = 480
TOOLS = ("dockerd", "docker", "podman", "catatonit", "debootstrap", "curl")
"""What the scripts drive (on Debian: docker.io, podman, catatonit, debootstrap, curl)."""


def require_container_tools() -> None:
    """Root and TOOLS, or the test is skipped (failed under CI)."""
    if os.geteuid() != 0:
        missing_system_tool("the private container engines of deploy/verify need root")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        missing_system_tool(f"not installed: {', '.join(missing)} (.ci/run installs them)")


def run_script(name: str, **environment: str) -> subprocess.CompletedProcess[str]:
    """Runs a deploy/verify script with this interpreter (which has the test dependencies).

    Past the timeout its whole process group gets SIGTERM (the script's trap then stops its engine
    and containers), and SIGKILL a minute later."""
    path = Path(sys.executable).parent
    command = [str(VERIFY / name)]
    with subprocess.Popen(
        command,
        env={**os.environ, "PYTHON": sys.executable, "PATH": f"{path}:{os.environ['PATH']}"}
        | environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as script:
        try:
            stdout, stderr = script.communicate(timeout=SCRIPT_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(script.pid, signal.SIGTERM)
            try:
                stdout, stderr = script.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(script.pid, signal.SIGKILL)
                stdout, stderr = script.communicate()
            output = (stdout + stderr)[-6000:]
            pytest.fail(f"{name} took over {SCRIPT_TIMEOUT_SECONDS} s:\n{output}")
    return subprocess.CompletedProcess(command, script.returncode, stdout, stderr)


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr
