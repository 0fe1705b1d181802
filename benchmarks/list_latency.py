"""How one page of `GET /orders` (gateway) behaves as stored orders grow, on sqlite and PostgreSQL.

    python benchmarks/list_latency.py                 # 1,000 and 1,000,000 orders, both backends
    python benchmarks/list_latency.py --sizes 1000,100000 --backends sqlite

For each backend and size it fills a fresh database directly with SQL (the shop itself would take
too long to place a million orders), starts the shop with `microshop up`, and times sequential
requests for a first page, a page deep in the data, and a filtered page. It prints a Markdown table;
with `--write` the table goes into docs/storage-scaling.md.
"""

import argparse
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_results  # noqa: E402
from tests.conftest import start_shop  # noqa: E402
from tests.postgres import BINARY_DIRECTORIES, PostgresServer, free_port  # noqa: E402

REQUESTS_PER_CASE = 300
CUSTOMERS = 10
STATUSES = ("paid", "paid", "paid", "declined", "pending")


def migrate(environment: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "microshop", "db", "migrate"],
        env={**os.environ, **environment},
        check=True,
        capture_output=True,
    )


def fill_sqlite(data_dir: Path, size: int) -> None:
    migrate({"MICROSHOP_DATA_DIR": str(data_dir)})
    connection = sqlite3.connect(data_dir / "microshop.sqlite3")
    rows = (
        (
            "t-shirt",
            100 * (1 + number % 500),
            f"customer-{number % CUSTOMERS}",
            STATUSES[number % len(STATUSES)],
        )
        for number in range(size)
    )
    with connection:
        connection.executemany(
            "INSERT INTO orders (item, price_cents, customer, status) VALUES (?, ?, ?, ?)", rows
        )
    connection.close()


def fill_postgresql(server: PostgresServer, url: str, size: int) -> None:
    migrate({"MICROSHOP_DATABASE_URL": url})
    name = url.rsplit("/", 1)[1]
    statuses = "ARRAY['paid','paid','paid','declined','pending']"
    server.run(
        "psql",
        "-h",
        "127.0.0.1",
        "-p",
        str(server.port),
        "-U",
        "postgres",
        "-d",
        name,
        "-c",
        "INSERT INTO orders (item, price_cents, customer, status) "
        f"SELECT 't-shirt', 100 * (1 + n % 500), 'customer-' || (n % {CUSTOMERS}), "
        f"({statuses})[1 + n % 5] FROM generate_series(0, {size - 1}) AS n; ANALYZE orders;",
    )


def time_requests(client: httpx.Client, path: str) -> tuple[float, float]:
    """p50 and p90 in milliseconds of sequential GETs, after a few to warm up."""
    for _ in range(20):
        client.get(path).raise_for_status()
    samples = []
    for _ in range(REQUESTS_PER_CASE):
        started = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        assert len(response.json()) == 100, path
    deciles = statistics.quantiles(samples, n=10)
    return statistics.median(samples), deciles[8]


def cases(size: int) -> dict[str, str]:
    return {
        "first page": "/orders?limit=100",
        "deep page": f"/orders?limit=100&after={size - 1000}",
        "by status": "/orders?limit=100&status=declined",
        "by customer": "/orders?limit=100&customer=customer-3",
    }


def measure(
    backend: str, size: int, server: PostgresServer | None
) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory(prefix="microshop-bench-") as directory:
        workdir = Path(directory)
        arguments: list[str] = []
        if backend == "sqlite":
            fill_sqlite(workdir / "data", size)
        else:
            assert server is not None
            url = server.create_database()
            fill_postgresql(server, url, size)
            arguments = ["--database", url]
        shop = start_shop(workdir, *arguments)
        try:
            with httpx.Client(base_url=shop.gateway_url, timeout=30) as client:
                return {name: time_requests(client, path) for name, path in cases(size).items()}
        finally:
            shop.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,1000000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--write", action="store_true", help="write docs/storage-scaling.md")
    options = parser.parse_args()
    sizes = [int(size) for size in options.sizes.split(",")]
    backends = options.backends.split(",")

    server = None
    if "postgresql" in backends:
        directory = Path(tempfile.mkdtemp(prefix="microshop-bench-postgres-"))
        os.chmod(directory, 0o777)
        server = PostgresServer(Path(BINARY_DIRECTORIES[-1]), directory, free_port())
        server.run(
            "initdb", "-D", str(server.data_dir), "-U", "postgres", "-A", "trust", "--no-sync"
        )
        server.start()
    try:
        results = {
            (backend, size): measure(backend, size, server)
            for backend in backends
            for size in sizes
        }
    finally:
        if server is not None:
            server.stop()

    lines = [
        "| backend | case | "
        + " | ".join(f"p50 / p90 at {size:,} orders (ms)" for size in sizes)
        + " | ratio of p50 |",
        "| --- | --- | " + " | ".join("---" for _ in sizes) + " | --- |",
    ]
    for backend in backends:
        for case in cases(sizes[0]):
            cells = [
                f"{results[backend, size][case][0]:.2f} / {results[backend, size][case][1]:.2f}"
                for size in sizes
            ]
            ratio = results[backend, sizes[-1]][case][0] / results[backend, sizes[0]][case][0]
            lines.append(f"| {backend} | {case} | " + " | ".join(cells) + f" | {ratio:.2f}x |")
    table = "\n".join(lines)
    print(table)
    if options.write:
        machine = (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        )
        document = ROOT / "docs" / "storage-scaling.md"
        write_results(
            document,
            f"Measured {time.strftime('%Y-%m-%d')} on {machine}, "
            f"{REQUESTS_PER_CASE} sequential requests per case:\n\n{table}",
        )


if __name__ == "__main__":
    main()
