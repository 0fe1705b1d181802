"""The shop's benchmark in one command: start it as `microshop up` does, load it, record it.

    .venv/bin/python benchmarks/run.py                    # concurrency 1, 16 and 64, 15 s each
    .venv/bin/python benchmarks/run.py --seed-dir DIR     # and the seed's Node.js demo

For each concurrency, `microshop bench` (a separate process, as a real client would be) places
orders for the given time and then reads them all back. Afterwards it places 100,000 more orders
and reads each service's resident memory. The table goes into docs/performance.md, the plot to
docs/images/performance.png, the raw numbers to docs/performance-results.json.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.cpu_per_order import cpu_seconds  # noqa: E402
from benchmarks.report import write_results  # noqa: E402
from tests.conftest import start_shop  # noqa: E402

RESULTS = ROOT / "docs" / "performance-results.json"
REPORT = ROOT / "docs" / "performance.md"
PLOT = ROOT / "docs" / "images" / "performance.png"
SEED = "seed (Node.js)"
SEED_SERVICES = {  # directory: (port, arguments), as the seed's run.sh starts them
    "db": (3004, []),
    "payment-service": (3001, ["127.0.0.1:3004"]),
    "order-service": (3002, ["127.0.0.1:3001", "127.0.0.1:3004"]),
    "api-gateway": (3000, ["127.0.0.1:3001", "127.0.0.1:3002"]),
}


def wait_until_answers(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer")


def bench_with_cpu(
    url: str, concurrency: int, verify: bool, pids: dict[str, int], **budget: float
) -> dict[str, object]:
    """One run of the load generator, with the CPU time each process spent per order in it."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    result = bench(url, concurrency, verify, **budget)
    orders = int(result["orders"])  # type: ignore[call-overload]
    per_order = {
        name: round((cpu_seconds(pid) - before[name]) / max(orders, 1) * 1e6)
        for name, pid in pids.items()
    }
    result["cpu_us_per_order"] = {**per_order, "all": sum(per_order.values())}
    return result


def bench(url: str, concurrency: int, verify: bool, **budget: float) -> dict[str, object]:
    with tempfile.NamedTemporaryFile(suffix=".json") as output:
        command = [
            sys.executable,
            "-m",
            "microshop",
            "bench",
            "--url",
            url,
            "--concurrency",
            str(concurrency),
            "--json",
            output.name,
            "--verify" if verify else "--no-verify",
        ]
        for name, value in budget.items():
            command += [f"--{name}", str(value)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        result: dict[str, object] = json.loads(Path(output.name).read_text())
        return result


def resident_megabytes(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure_microshop(levels: list[int], seconds: float, memory_orders: int) -> dict[str, object]:
    directory = Path(tempfile.mkdtemp(prefix="microshop-bench-"))
    shop = start_shop(directory)
    try:
        url = shop.gateway_url
        pids = {name: shop.pid(name) for name in shop.ports}
        pids["supervisor"] = shop.process.pid  # relays the services' output
        runs = [bench_with_cpu(url, level, True, pids, duration=seconds) for level in levels]
        bench(url, 64, True, requests=memory_orders)
        memory = {name: round(resident_megabytes(shop.pid(name)), 1) for name in shop.ports}
    finally:
        shop.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return {"runs": runs, "memory_mb_after_orders": memory, "memory_orders": memory_orders}


def measure_seed(seed_dir: Path, levels: list[int], seconds: float) -> dict[str, object]:
    """The seed's four Node.js processes on their own ports, as its run.sh starts them."""
    for service in SEED_SERVICES:
        if not (seed_dir / service / "node_modules").exists():
            subprocess.run(["npm", "install", "--silent"], cwd=seed_dir / service, check=True)
    processes = [
        subprocess.Popen(
            ["node", "app.js", *arguments],
            cwd=seed_dir / service,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for service, (_, arguments) in SEED_SERVICES.items()
    ]
    try:
        for port, _ in SEED_SERVICES.values():
            wait_until_answers(f"http://127.0.0.1:{port}/")
        # The seed cannot list more than about 1,100 orders, so its orders are not read back.
        pids = {
            service: process.pid for service, process in zip(SEED_SERVICES, processes, strict=True)
        }
        runs = [
            bench_with_cpu("http://127.0.0.1:3000", level, False, pids, duration=seconds)
            for level in levels
        ]
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
    return {"runs": runs}


def each_run(results: dict[str, dict[str, object]]) -> list[tuple[str, dict[str, Any]]]:
    """Every run of the benchmark with the system it loaded, in order."""
    return [(system, run) for system, measured in results.items() for run in measured["runs"]]  # type: ignore[attr-defined]


def table(results: dict[str, dict[str, object]]) -> str:
    lines = [
        "| system | clients | orders/s | p50 ms | p90 ms | p99 ms | max ms | errors | lost "
        "| CPU us per order |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for system, run in each_run(results):
        latency = run["latency_ms"]
        errors = ", ".join(f"{kind}: {count}" for kind, count in run["errors"].items()) or "0"
        lost = run["lost"] if system == "microshop" else "n/a"
        lines.append(
            f"| {system} | {run['concurrency']} | {run['orders_per_second']:,.0f} "
            f"| {latency['p50']:.2f} | {latency['p90']:.2f} | {latency['p99']:.2f} "
            f"| {latency['max']:.2f} | {errors} | {lost} "
            f"| {run['cpu_us_per_order']['all']:,} |"
        )
    return "\n".join(lines)


def ratios(results: dict[str, dict[str, object]]) -> str:
    """microshop against the seed at each level, from the same run: above 1 is better."""
    ours, seed = results["microshop"]["runs"], results[SEED]["runs"]  # type: ignore[index]
    lines = [
        "| clients | orders/s, microshop / seed | p50, seed / microshop | p99, seed / microshop "
        "| CPU per order, seed / microshop |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for mine, theirs in zip(ours, seed, strict=True):
        lines.append(
            f"| {mine['concurrency']} "
            f"| {mine['orders_per_second'] / theirs['orders_per_second']:.2f}x "
            f"| {theirs['latency_ms']['p50'] / mine['latency_ms']['p50']:.2f}x "
            f"| {theirs['latency_ms']['p99'] / mine['latency_ms']['p99']:.2f}x "
            f"| {theirs['cpu_us_per_order']['all'] / mine['cpu_us_per_order']['all']:.2f}x |"
        )
    return "\n".join(lines)


def cpu_by_service(results: dict[str, dict[str, object]]) -> str:
    lines = ["| system | clients | CPU us per order, by process |", "| --- | ---: | --- |"]
    for system, run in each_run(results):
        shares = ", ".join(f"{name} {value:,}" for name, value in run["cpu_us_per_order"].items())
        lines.append(f"| {system} | {run['concurrency']} | {shares} |")
    return "\n".join(lines)


def plot(results: dict[str, dict[str, object]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(10, 4))
    for system, measured in results.items():
        runs = measured["runs"]  # type: ignore[index]
        levels = [run["concurrency"] for run in runs]
        throughput.plot(
            levels, [run["orders_per_second"] for run in runs], marker="o", label=system
        )
        latency.plot(levels, [run["latency_ms"]["p99"] for run in runs], marker="o", label=system)
    throughput.set(
        title="Orders per second", xlabel="concurrent clients", xscale="log", xticks=levels
    )
    latency.set(title="p99 latency (ms)", xlabel="concurrent clients", xscale="log", xticks=levels)
    for axes in (throughput, latency):
        axes.set_xticklabels([str(level) for level in levels])
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(PLOT, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--memory-orders", type=int, default=100_000)
    parser.add_argument("--seed-dir", type=Path, help="a checkout of the seed's Node.js demo")
    options = parser.parse_args()
    levels = [int(level) for level in options.concurrency.split(",")]

    results = {"microshop": measure_microshop(levels, options.duration, options.memory_orders)}
    if options.seed_dir:
        results[SEED] = measure_seed(options.seed_dir, levels, options.duration)
    results_table = table(results)
    if SEED in results:
        results_table += "\n\nIn the same run, against the seed:\n\n" + ratios(results)
    results_table += "\n\n" + cpu_by_service(results)
    print(results_table)
    memory = results["microshop"]["memory_mb_after_orders"]
    print("resident memory (MB) after", options.memory_orders, "more orders:", memory)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    RESULTS.write_text(
        json.dumps(
            {
                "machine": machine,
                "date": time.strftime("%Y-%m-%d"),
                "duration_seconds": options.duration,
                "results": results,
                "table": results_table,
            },
            indent=2,
        )
        + "\n"
    )
    plot(results)
    write_report(results_table, machine, memory)


def write_report(results_table: str, machine: str, memory: dict[str, float]) -> None:
    """Replaces the measured part of docs/performance.md, between its two markers."""
    resident = ", ".join(f"{name} {megabytes} MB" for name, megabytes in memory.items())
    write_results(
        REPORT,
        f"Measured {time.strftime('%Y-%m-%d')} on {machine}:\n\n{results_table}\n\n"
        f"Resident memory after those runs and the extra orders: {resident}.",
    )


if __name__ == "__main__":
    main()
