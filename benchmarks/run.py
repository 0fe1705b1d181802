"""The shop's benchmark in one command: start it as `microshop up` does, load it, record it.

    .venv/bin/python benchmarks/run.py                    # concurrency 1, 16 and 64, 15 s each
    .venv/bin/python benchmarks/run.py --seed-dir DIR     # and the seed's Node.js demo

For each concurrency, `microshop bench` (a separate process, as a real client would be) places
orders for the given time and then reads them all back. With the seed, both systems run side by
side and are loaded in turns: each round loads microshop and the seed back to back at every
concurrency, in alternating order (the machine's speed drifts by more than the difference being
measured over minutes, far less between two runs 15 s apart), and every figure reported is the
median of the rounds. Afterwards it places 100,000 more orders in microshop and reads each
service's resident memory. The table goes into docs/performance.md, the plot to
docs/images/performance.png, the raw numbers to docs/performance-results.json.
"""

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.cpu_per_order import cpu_seconds  # noqa: E402
from benchmarks.report import write_results  # noqa: E402
from tests.shops import start_shop  # noqa: E402

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


def machine() -> str:
    """The machine the figures were measured on, as the reports name it."""
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


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


class Microshop:
    """microshop started as `microshop up` starts it, for the whole run."""

    name = "microshop"
    verify = True

    def __enter__(self) -> "Microshop":
        self.directory = Path(tempfile.mkdtemp(prefix="microshop-bench-"))
        self.shop = start_shop(self.directory)  # stops what it started if the start fails
        self.url = self.shop.gateway_url
        try:
            self.pids = {name: self.shop.pid(name) for name in self.shop.ports}
        except BaseException:
            self.__exit__()
            raise
        self.pids["supervisor"] = self.shop.process.pid  # relays the services' output
        return self

    def __exit__(self, *exception: object) -> None:
        self.shop.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def memory_after(self, orders: int) -> dict[str, float]:
        """Each service's resident memory after `orders` more orders."""
        bench(self.url, 64, True, requests=orders)
        return {name: round(resident_megabytes(self.shop.pid(name)), 1) for name in self.shop.ports}


class Seed:
    """The seed's four Node.js processes on their own ports, as its run.sh starts them."""

    name = SEED
    verify = False  # the seed cannot list more than about 1,100 orders

    def __init__(self, seed_dir: Path) -> None:
        self.seed_dir = seed_dir
        self.url = "http://127.0.0.1:3000"

    def __enter__(self) -> "Seed":
        for service in SEED_SERVICES:
            if not (self.seed_dir / service / "node_modules").exists():
                subprocess.run(
                    ["npm", "install", "--silent"], cwd=self.seed_dir / service, check=True
                )
        self.processes = [
            subprocess.Popen(
                ["node", "app.js", *arguments],
                cwd=self.seed_dir / service,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for service, (_, arguments) in SEED_SERVICES.items()
        ]
        try:
            for port, _ in SEED_SERVICES.values():
                wait_until_answers(f"http://127.0.0.1:{port}/")
        except BaseException:
            self.__exit__()
            raise
        self.pids = {
            service: process.pid
            for service, process in zip(SEED_SERVICES, self.processes, strict=True)
        }
        return self

    def __exit__(self, *exception: object) -> None:
        for process in self.processes:
            process.terminate()
            process.wait(30)


class System(Protocol):
    """What `load_in_turns` loads: a running system, its gateway and the processes it counts."""

    name: str
    url: str
    verify: bool
    """Whether every acknowledged order can be read back afterwards."""
    pids: dict[str, int]


def load_in_turns(
    systems: Sequence[System], levels: list[int], seconds: float, rounds: int
) -> dict[str, list[list[dict[str, object]]]]:
    """Each system's runs, by round and level: in every round each level loads every system
    back to back, first one way round, then the other."""
    runs: dict[str, list[list[dict[str, object]]]] = {system.name: [] for system in systems}
    for round_number in range(rounds):
        for system in systems:
            runs[system.name].append([])
        for level in levels:
            order = systems if round_number % 2 == 0 else systems[::-1]
            for system in order:
                run = bench_with_cpu(
                    system.url, level, system.verify, system.pids, duration=seconds
                )
                runs[system.name][round_number].append(run)
    return runs


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One level's rounds as one run: the median of every figure, errors and losses summed."""
    middle = statistics.median
    cpu_names = runs[0]["cpu_us_per_order"].keys()
    errors: dict[str, int] = {}
    for run in runs:
        for kind, count in run["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    return {
        "concurrency": runs[0]["concurrency"],
        "orders": sum(run["orders"] for run in runs),
        "orders_per_second": middle([run["orders_per_second"] for run in runs]),
        "latency_ms": {
            key: middle([run["latency_ms"][key] for run in runs])
            for key in ("p50", "p90", "p99", "max")
        },
        "errors": errors,
        "lost": sum(run["lost"] for run in runs),
        "cpu_us_per_order": {
            name: round(middle([run["cpu_us_per_order"][name] for run in runs]))
            for name in cpu_names
        },
    }


def each_run(results: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every run of the benchmark with the system it loaded, in order."""
    return [(system, run) for system, measured in results.items() for run in measured["runs"]]


def table(results: dict[str, dict[str, Any]]) -> str:
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


_FIGURES: dict[str, tuple[Callable[[dict[str, Any]], float], bool]] = {
    # name: how a run gives it, and whether higher is better
    "orders_per_second": (lambda run: run["orders_per_second"], True),
    "p50": (lambda run: run["latency_ms"]["p50"], False),
    "p99": (lambda run: run["latency_ms"]["p99"], False),
    "cpu_per_order": (lambda run: run["cpu_us_per_order"]["all"], False),
}


def against_seed(
    rounds: list[list[dict[str, Any]]], seed_rounds: list[list[dict[str, Any]]], level: int
) -> dict[str, float]:
    """A system's figures at one level (an index into each round) against the seed's, above 1
    better: each the median of the rounds' ratios, each round's two runs measured back to back."""
    pairs = [(mine[level], theirs[level]) for mine, theirs in zip(rounds, seed_rounds, strict=True)]
    ratios: dict[str, float] = {}
    for name, (figure, higher_is_better) in _FIGURES.items():
        values = [figure(mine) / figure(theirs) for mine, theirs in pairs]
        ratios[name] = statistics.median(
            values if higher_is_better else [1 / value for value in values]
        )
    return ratios


def ratios(results: dict[str, dict[str, Any]]) -> str:
    """microshop against the seed at each level (`against_seed`)."""
    lines = [
        "| clients | orders/s, microshop / seed | p50, seed / microshop | p99, seed / microshop "
        "| CPU per order, seed / microshop |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for level, run in enumerate(results["microshop"]["runs"]):
        ratio = against_seed(results["microshop"]["rounds"], results[SEED]["rounds"], level)
        lines.append(
            f"| {run['concurrency']} | {ratio['orders_per_second']:.2f}x | {ratio['p50']:.2f}x "
            f"| {ratio['p99']:.2f}x | {ratio['cpu_per_order']:.2f}x |"
        )
    return "\n".join(lines)


def cpu_by_service(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| system | clients | CPU us per order, by process |", "| --- | ---: | --- |"]
    for system, run in each_run(results):
        shares = ", ".join(f"{name} {value:,}" for name, value in run["cpu_us_per_order"].items())
        lines.append(f"| {system} | {run['concurrency']} | {shares} |")
    return "\n".join(lines)


def plot(results: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(10, 4))
    for system, measured in results.items():
        runs = measured["runs"]
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
    parser.add_argument("--rounds", type=int, default=3, help="runs of each system per level")
    parser.add_argument("--seed-dir", type=Path, help="a checkout of the seed's Node.js demo")
    options = parser.parse_args()
    levels = [int(level) for level in options.concurrency.split(",")]

    microshop = Microshop()
    systems: list[Microshop | Seed] = [microshop]
    if options.seed_dir:
        systems.append(Seed(options.seed_dir))
    with contextlib.ExitStack() as running:
        for system in systems:
            running.enter_context(system)
        rounds = load_in_turns(systems, levels, options.duration, options.rounds)
        memory = microshop.memory_after(options.memory_orders)
    results: dict[str, dict[str, Any]] = {
        name: {
            "runs": [
                median_run([each_round[index] for each_round in measured])
                for index in range(len(levels))
            ],
            "rounds": measured,
        }
        for name, measured in rounds.items()
    }
    results["microshop"]["memory_mb_after_orders"] = memory
    results_table = table(results)
    if SEED in results:
        results_table += "\n\nIn the same run, against the seed:\n\n" + ratios(results)
    results_table += "\n\n" + cpu_by_service(results)
    print(results_table)
    print("resident memory (MB) after", options.memory_orders, "more orders:", memory)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": machine(),
                "date": time.strftime("%Y-%m-%d"),
                "duration_seconds": options.duration,
                "rounds": options.rounds,
                "results": results,
                "table": results_table,
            },
            indent=2,
        )
        + "\n"
    )
    plot(results)
    write_report(results_table, memory, options.rounds)


def write_report(results_table: str, memory: dict[str, float], rounds: int) -> None:
    """Replaces the measured part of docs/performance.md, between its two markers."""
    resident = ", ".join(f"{name} {megabytes} MB" for name, megabytes in memory.items())
    write_results(
        REPORT,
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()}, each figure the median of "
        f"{rounds} rounds:\n\n{results_table}\n\n"
        f"Resident memory after those runs and the extra orders: {resident}.",
    )


if __name__ == "__main__":
    main()
