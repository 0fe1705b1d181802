"""A stand-in for `kubectl`, for testing the kubernetes backend where no cluster exists.

It appends every call (argv and stdin) to `$FAKE_KUBECTL_DIR/calls.jsonl` and answers as kubectl
would: `kustomize` runs the real kubectl, `apply` remembers the objects per namespace, `rollout
status` succeeds for applied workloads, `port-forward` really listens and forwards every
connection to `$FAKE_KUBECTL_UPSTREAM` (host:port of a shop the test started), `delete namespace`
forgets it.

Knobs: FAKE_KUBECTL_REAL (the real kubectl), FAKE_KUBECTL_FAIL_ROLLOUT (a workload such as
`deployment/db` whose rollout fails), FAKE_KUBECTL_EXISTING (a namespace that already exists).
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

CONTEXT = "kind-sandbox-tests"
STATE = Path(os.environ["FAKE_KUBECTL_DIR"])
NAMESPACES = STATE / "namespaces"


def record(argv: list[str], stdin: str | None) -> None:
    with (STATE / "calls.jsonl").open("a") as log:
        log.write(json.dumps({"argv": argv, "stdin": stdin}) + "\n")


def option(arguments: list[str], name: str) -> str | None:
    for index, argument in enumerate(arguments):
        if argument == name and index + 1 < len(arguments):
            return arguments[index + 1]
        if argument.startswith(name + "="):
            return argument.split("=", 1)[1]
    return None


def applied(namespace: str) -> list[dict[str, Any]] | None:
    path = NAMESPACES / f"{namespace}.yaml"
    if namespace == os.environ.get("FAKE_KUBECTL_EXISTING"):
        return []
    if not path.exists():
        return None
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def not_found(namespace: str) -> int:
    print(f'Error from server (NotFound): namespaces "{namespace}" not found', file=sys.stderr)
    return 1


def kustomize(arguments: list[str]) -> int:
    real = os.environ["FAKE_KUBECTL_REAL"]
    result = subprocess.run([real, "kustomize", *arguments], check=False)
    return result.returncode


def apply(stdin: str) -> int:
    documents = [document for document in yaml.safe_load_all(stdin) if document]
    namespaces = {d["metadata"]["name"] for d in documents if d["kind"] == "Namespace"}
    for namespace in namespaces:
        NAMESPACES.mkdir(parents=True, exist_ok=True)
        (NAMESPACES / f"{namespace}.yaml").write_text(stdin)
    for document in documents:
        print(f"{document['kind'].lower()}/{document['metadata']['name']} created")
    return 0


def get(arguments: list[str]) -> int:
    kind, name = arguments[0], arguments[1] if len(arguments) > 1 else None
    if kind == "namespace" and name:
        if applied(name) is not None:
            print(f"namespace/{name}")
        return 0
    namespace = option(arguments, "-n") or "default"
    documents = applied(namespace)
    if documents is None:
        return not_found(namespace)
    items = [
        {**document, "status": {"readyReplicas": document["spec"].get("replicas", 1)}}
        for document in documents
        if document["kind"] == "Deployment"
    ]
    print(json.dumps({"kind": "List", "items": items}))
    return 0


def rollout(arguments: list[str]) -> int:
    workload, namespace = arguments[1], option(arguments, "-n") or "default"
    if applied(namespace) is None:
        return not_found(namespace)
    if workload == os.environ.get("FAKE_KUBECTL_FAIL_ROLLOUT"):
        print(f"error: {workload} exceeded its progress deadline", file=sys.stderr)
        return 1
    print(f'{workload.split("/")[0]} "{workload.split("/")[1]}" successfully rolled out')
    return 0


def logs(arguments: list[str]) -> int:
    workloads = [a for a in arguments if a.startswith(("deployment/", "statefulset/"))]
    target = option(arguments, "-l") or workloads[0]
    for number in range(3):
        print(f"fake log line {number} of {target}")
    return 0


def delete(arguments: list[str]) -> int:
    namespace = arguments[1]
    path = NAMESPACES / f"{namespace}.yaml"
    if not path.exists():
        return 0 if "--ignore-not-found" in arguments else not_found(namespace)
    path.unlink()
    print(f'namespace "{namespace}" deleted')
    return 0


def port_forward(arguments: list[str]) -> int:
    namespace = option(arguments, "-n") or "default"
    if applied(namespace) is None:
        return not_found(namespace)
    local_port, remote_port = arguments[-1].split(":")
    host, port = os.environ["FAKE_KUBECTL_UPSTREAM"].rsplit(":", 1)
    listener = socket.create_server(("127.0.0.1", int(local_port)))
    print(f"Forwarding from 127.0.0.1:{local_port} -> {remote_port}", flush=True)
    while True:
        client, _ = listener.accept()
        upstream = socket.create_connection((host, int(port)))
        for source, target in ((client, upstream), (upstream, client)):
            threading.Thread(target=pipe, args=(source, target), daemon=True).start()


def pipe(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    for end in (source, target):
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)


def main(argv: list[str]) -> int:
    arguments = list(argv)
    if arguments[:1] == ["--context"]:
        arguments = arguments[2:]
    stdin = sys.stdin.read() if arguments[:3] == ["apply", "-f", "-"] else None
    record(argv, stdin)
    command = arguments[0] if arguments else ""
    if arguments[:2] == ["config", "current-context"]:
        print(CONTEXT)
        return 0
    handlers = {
        "kustomize": lambda: kustomize(arguments[1:]),
        "apply": lambda: apply(stdin or ""),
        "get": lambda: get(arguments[1:]),
        "rollout": lambda: rollout(arguments[1:]),
        "logs": lambda: logs(arguments),
        "delete": lambda: delete(arguments[1:]),
        "port-forward": lambda: port_forward(arguments[1:]),
    }
    if command not in handlers:
        print(f"fake kubectl: {command!r} is not faked", file=sys.stderr)
        return 1
    return handlers[command]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
