"""The Python helpers of deploy/verify: each must catch what it is there to catch."""

import importlib.util
import io
import json
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Any

VERIFY = Path(__file__).resolve().parents[2] / "deploy" / "verify"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, VERIFY / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


added_files = load("added_files")
check_pods = load("check_pods")
for_podman = load("for_podman")


def add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    archive.addfile(member, io.BytesIO(data))


def layer(*paths: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in paths:
            add_bytes(archive, path, b"x")
    return buffer.getvalue()


def saved_image(path: Path, *layers: bytes) -> Path:
    """An image as `docker save` writes it: manifest.json naming one tar per layer."""
    names = [f"layer{index}/layer.tar" for index in range(len(layers))]
    with tarfile.open(path, "w") as archive:
        add_bytes(archive, "manifest.json", json.dumps([{"Layers": names}]).encode())
        for name, data in zip(names, layers, strict=True):
            add_bytes(archive, name, data)
    return path


def test_added_files_accepts_the_venv_and_the_user_and_names_anything_else(
    tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    base = layer("usr/bin/python3", "etc/passwd")
    clean = saved_image(tmp_path / "clean.tar", base, layer("etc/passwd", "opt/microshop/bin/x"))
    monkeypatch.setattr("sys.argv", ["added_files.py", str(clean), "1"])
    assert added_files.main() == 0

    dirty = saved_image(tmp_path / "dirty.tar", base, layer("opt/microshop/bin/x", "usr/bin/gcc"))
    monkeypatch.setattr("sys.argv", ["added_files.py", str(dirty), "1"])
    assert added_files.main() == 1
    assert "unexpected: usr/bin/gcc" in capsys.readouterr().out


DEPLOYMENT = {
    "kind": "Deployment",
    "metadata": {"name": "db"},
    "spec": {
        "template": {
            "spec": {
                "securityContext": {"runAsUser": 10001, "runAsGroup": 10001},
                "containers": [
                    {
                        "name": "server",
                        "args": ["serve", "db"],
                        "ports": [{"containerPort": 3004}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 3004}},
                        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
                        "securityContext": {
                            "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            }
        }
    },
}


def inspected(bounding_capabilities: tuple[str, ...] = (), **host_config: Any) -> dict[str, Any]:
    return {
        "Name": "db-pod-0-server",
        "Config": {"User": "10001:10001"},
        "EffectiveCaps": [],
        "BoundingCaps": list(bounding_capabilities),
        "HostConfig": {
            "ReadonlyRootfs": True,
            "SecurityOpt": ["no-new-privileges"],
            "Memory": 256 * 2**20,
            "NanoCpus": 500_000_000,
            "CpuQuota": 0,
            "CpuPeriod": 0,
        }
        | host_config,
    }


def test_check_pods_compares_each_setting_with_the_manifest() -> None:
    pod = DEPLOYMENT["spec"]["template"]["spec"]
    wanted = check_pods.expected(pod, pod["containers"][0])
    assert check_pods.actual(inspected()) == wanted
    assert check_pods.actual(inspected(ReadonlyRootfs=False)) != wanted
    assert check_pods.actual(inspected(Memory=0)) != wanted
    assert check_pods.actual(inspected(("CAP_CHOWN",))) != wanted


def test_check_pods_fails_a_container_whose_manifest_leaves_a_setting_out() -> None:
    container = {"name": "server", "resources": {"limits": {"cpu": "1"}}}
    wanted = check_pods.expected({}, container)
    assert wanted["cpu limit"] == 10**9
    assert wanted["memory limit"] is None and wanted["read-only root"] is None


def test_for_podman_changes_only_what_one_host_forces(tmp_path: Path) -> None:
    service = {"kind": "Service", "metadata": {"name": "db", "namespace": "shop"}}
    assert "db.shop" in for_podman.hosts_file([service]).split()
    pod = json.loads(json.dumps(DEPLOYMENT["spec"]["template"]["spec"]))
    for_podman.on_the_host_network(pod, tmp_path / "hosts")
    container = pod["containers"][0]
    assert container["args"] == ["serve", "db"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "ports" not in container and "readinessProbe" not in container
    assert {"name": "MICROSHOP_HOST", "value": "127.0.0.1"} in container["env"]
    assert {"name": "kube-dns-stand-in", "mountPath": "/etc/hosts", "readOnly": True} in (
        container["volumeMounts"]
    )
