"""Where each service's CPU time per order goes under load, by component, sampled with py-spy.

    .venv/bin/python benchmarks/profile_services.py [--concurrency 64] [--duration 10] [--keep DIR]

Starts the shop as `microshop up` does, loads it with `microshop bench`, and has `py-spy record`
sample every service meanwhile. Each sample is charged to the component that owns its innermost
Python frame (time in a C extension counts for the Python code that called it), so the table
reads as self time: what each layer itself costs, not what it calls. Each service's CPU time per
order in the same run is split by those shares. `--keep DIR` leaves the raw stacks there, one file
per service, for flame graphs.
"""

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.cpu_per_order import cpu_seconds  # noqa: E402
from tests.shops import start_shop  # noqa: E402

COMPONENTS = [  # (what the table calls it, a pattern of the innermost frame's file), first match
    (
        "HTTP server (uvicorn, httptools, microshop/server.py)",
        r"^(uvicorn/|httptools|microshop/server\.py)",
    ),
    ("Starlette (middleware, routing, requests)", r"^starlette/"),
    (
        "calls to other services (common/http_client.py and its client library)",
        r"^(microshop/common/http_client\.py|pyreqwest/|aiohttp/|yarl/|multidict/)",
    ),
    ("validation (pydantic)", r"^pydantic(_core)?/"),
    ("metrics (prometheus_client)", r"^prometheus_client/"),
    ("access log", r"^(microshop/common/logs\.py|logging/)"),
    ("tracing", r"^microshop/common/tracing\.py"),
    ("storage (sqlite)", r"^(microshop/services/db/(sqlite|repository|storage)\.py|sqlite3/)"),
    ("microshop's own code", r"^microshop/"),
    ("event loop (asyncio, uvloop)", r"^(asyncio|uvloop)/"),
]
_OTHER = "other (standard library, interpreter)"
_NATIVE = "native threads without Python frames"
_FRAME = re.compile(r"\(([^)]*)\)$")


def component_of(frame: str) -> str:
    match = _FRAME.search(frame)
    where = match.group(1) if match else frame
    for name, pattern in COMPONENTS:
        if re.search(pattern, where):
            return name
    return _OTHER


def self_time_by_component(raw: Path) -> collections.Counter[str]:
    """py-spy's raw format: one line per distinct stack, `frame;frame;...;leaf count`; a sample
    without Python frames is a thread busy in native code (the HTTP client's own thread)."""
    shares: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.rsplit(";", 1)[-1]
        shares[component_of(leaf) if leaf else _NATIVE] += int(count)
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="a directory for the raw stacks")
    options = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    directory = Path(tempfile.mkdtemp(prefix="microshop-profile-"))
    stacks = options.keep or directory
    stacks.mkdir(parents=True, exist_ok=True)
    shop = start_shop(directory)
    result_file = directory / "bench.json"
    try:
        pids = {name: shop.pid(name) for name in shop.ports}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        load = subprocess.Popen(
            [
                *(sys.executable, "-m", "microshop", "bench", "--url", shop.gateway_url),
                *("--no-verify", "--concurrency", str(options.concurrency)),
                *("--duration", str(options.duration + 4), "--json", str(result_file)),
            ],
            stdout=subprocess.DEVNULL,
        )
        samplers = [
            subprocess.Popen(
                [
                    *(py_spy, "record", "--format", "raw", "--rate", "200", "--nonblocking"),
                    *("--duration", str(options.duration), "--pid", str(pid)),
                    *("--output", str(stacks / f"{name}.txt")),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, pid in pids.items()
        ]
        for sampler in samplers:
            sampler.wait()
        load.wait()
        orders = json.loads(result_file.read_text())["orders"]
        per_order = {
            name: (cpu_seconds(pid) - before[name]) / orders * 1e6 for name, pid in pids.items()
        }
    finally:
        shop.stop()
    print_table({name: self_time_by_component(stacks / f"{name}.txt") for name in pids}, per_order)
    shutil.rmtree(directory, ignore_errors=True)


def print_table(shares: dict[str, collections.Counter[str]], per_order: dict[str, float]) -> None:
    """Microseconds of CPU per order, each service's run time split by its samples' shares."""
    print(f"| us of CPU per order | {' | '.join(shares)} | all |")
    print("| --- |" + " ---: |" * (len(shares) + 1))
    for component in [name for name, _ in COMPONENTS] + [_OTHER, _NATIVE]:
        cells = [
            per_order[name] * counts[component] / (sum(counts.values()) or 1)
            for name, counts in shares.items()
        ]
        print(
            f"| {component} | {' | '.join(f'{cell:,.0f}' for cell in cells)} | {sum(cells):,.0f} |"
        )
    totals = [per_order[name] for name in shares]
    print(f"| all | {' | '.join(f'{total:,.0f}' for total in totals)} | {sum(totals):,.0f} |")


if __name__ == "__main__":
    main()
