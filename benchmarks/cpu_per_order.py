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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.shops import start_shop  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    options = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="microshop-cpu-"))
    shop = start_shop(directory)
    try:
        pids = {name: shop.pid(name) for name in shop.ports}
        pids["supervisor (microshop up)"] = shop.process.pid
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        result_file = directory / "bench.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "microshop",
                "bench",
                "--url",
                shop.gateway_url,
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
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        result = json.loads(result_file.read_text())
    finally:
        shop.stop()
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
