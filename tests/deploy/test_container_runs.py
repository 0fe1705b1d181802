"""The real container: the image is built and runs the shop, the rendered manifests run as pods,
and a broken Dockerfile or a wrong container command makes the checks fail.

Each test runs one of deploy/verify's scripts, exactly as a person would. They need root and the
container tools (on Debian: docker.io, podman, catatonit, debootstrap); `.ci/run` installs them.
"""

import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import overlay_directory
from tests.deploy.manifests import DOCKERFILE, Doc, kubectl, render
from tests.deploy.verify_scripts import (
    SCRIPT_TIMEOUT_SECONDS,
    output_of,
    require_container_tools,
    run_script,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(SCRIPT_TIMEOUT_SECONDS + 120)]


@pytest.fixture(scope="module", autouse=True)
def container_tools() -> None:
    require_container_tools()
    kubectl()


def test_image_builds_offline_and_runs_the_shop_read_only_as_non_root() -> None:
    result = run_script("image.sh")
    assert result.returncode == 0, output_of(result)[-6000:]
    output = output_of(result)
    assert re.search(r"\d+ passed", output)  # the end-to-end suite ran against the containers
    assert "Passes:" in output and "Failures:    0" in output  # container-structure-test


def test_local_overlay_runs_as_pods_with_its_security_context_and_limits() -> None:
    result = run_script("pods.sh")
    assert result.returncode == 0, output_of(result)[-6000:]
    output = output_of(result)
    assert output.count("ok   ") >= 4 * 6 and "FAIL" not in output
    assert '"status":"paid"' in output


def test_a_dockerfile_copying_a_missing_file_is_caught(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text(
        DOCKERFILE.read_text().replace("COPY . ./\n", "COPY . ./\nCOPY no-such-file ./\n", 1)
    )
    assert broken.read_text() != DOCKERFILE.read_text()
    result = run_script("image.sh", DOCKERFILE=str(broken))
    output = output_of(result)
    assert result.returncode != 0
    assert "FAILED: docker build failed" in output
    assert "COPY failed" in output  # the builder's own message is shown


def test_a_manifest_with_a_wrong_container_command_is_caught(tmp_path: Path) -> None:
    documents = render(overlay_directory("local"))
    order_service: Doc = next(
        doc
        for doc in documents
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "order-service"
    )
    order_service["spec"]["template"]["spec"]["containers"][0]["args"] = ["serve", "order-servce"]
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(documents))
    result = run_script("pods.sh", MANIFEST=str(manifest))
    output = output_of(result)
    assert result.returncode != 0
    assert "FAILED: containers exited: order-service" in output
    assert "--- order-service-pod" in output and "order-servce" in output  # its logs are shown
