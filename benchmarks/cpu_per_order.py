"""CPU time each process spends per order placed: where the shop's time goes.

    .venv/bin/python benchmarks/cpu_per_order.py [--concurrency 64] [--duration 10]

Starts the shop as `microshop up` does, reads each process's CPU time (user + system, from /proc)
before and after a run of `microshop bench`, and divides by the orders placed.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BASE_PORT = 3200


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    options = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="microshop-cpu-"))
    state_file = directory / "state.json"
    shop = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "microshop",
            "up",
            "--base-port",
            str(BASE_PORT),
            "--data-dir",
            str(directory / "data"),
            "--state-file",
            str(state_file),
        ],
        stdout=(directory / "up.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{BASE_PORT}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the shop did not start")
            time.sleep(0.2)
        services = json.loads(state_file.read_text())["services"]
        pids = {name: entry["pid"] for name, entry in services.items()}
        pids["supervisor (microshop up)"] = shop.pid
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        result_file = directory / "bench.json"
        bench = subprocess.run(
            [
                sys.executable,
                "-m",
                "microshop",
                "bench",
                "--url",
                url,
                "--no-verify",
                "--concurrency",
                str(options.concurrency),
                "--duration",
                str(options.duration),
                "--json",
                str(result_file),
            ],
            stdout=subprocess.DEVNULL,
            check=True,
        )
        assert bench.returncode == 0
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        result = json.loads(result_file.read_text())
    finally:
        shop.terminate()
        shop.wait(60)
        shutil.rmtree(directory, ignore_errors=True)
    orders = result["orders"]
    print(f"{result['orders_per_second']:,.0f} orders/s at concurrency {options.concurrency}")
    total = 0.0
    for name in pids:
        per_order = (after[name] - before[name]) / orders * 1e6
        total += per_order
        print(f"{name:26} {per_order:6.0f} us CPU per order")
    print(f"{'all of the shop':26} {total:6.0f} us CPU per order")


if __name__ == "__main__":
    main()
