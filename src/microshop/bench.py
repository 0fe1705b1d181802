"""`microshop bench`: place orders as fast as a given number of clients can, then read them back.

Every acknowledged order (201 or 202) must be listed afterwards; one that is not counts as lost.
"""

import asyncio
import statistics
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import orjson
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

ACKNOWLEDGED = (201, 202)
PAGE_SIZE = 1000


@dataclass
class BenchResult:
    url: str
    concurrency: int
    orders: int
    seconds: float
    orders_per_second: float
    latency_ms: dict[str, float]
    errors: dict[str, int]
    lost: int
    acknowledged: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class Recorder:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    acknowledged_ids: set[int] = field(default_factory=set)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def percentile(sorted_values: list[float], share: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, round(share * (len(sorted_values) - 1)))
    return sorted_values[index]


async def place_orders(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    recorder: Recorder,
    keep_going: "Budget",
    progress: Progress,
    task: TaskID,
    strict: bool,
) -> None:
    headers = {"Content-Type": "application/json"}
    while keep_going.take():
        started = time.perf_counter()
        try:
            async with session.post(url + "/orders", data=body, headers=headers) as response:
                answer = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            recorder.error(type(error).__name__)
            continue
        finally:
            progress.advance(task)
        recorder.latencies.append(time.perf_counter() - started)
        if status in ACKNOWLEDGED or (status == 200 and not strict):
            recorder.acknowledged_ids.add(placed_order_id(orjson.loads(answer)))
        else:
            recorder.error(f"HTTP {status}")


def placed_order_id(answer: dict[str, Any]) -> int:
    """The order's id; the seed answered with the transaction only, which names it too."""
    if "order" in answer:
        order_id: int = answer["order"]["id"]
    else:
        order_id = answer["transaction"]["orderId"]
    return order_id


class Budget:
    """How long the clients keep placing orders: a number of requests or a duration."""

    def __init__(self, requests: int | None, duration: float | None) -> None:
        self.remaining = requests
        self.deadline = None if duration is None else time.monotonic() + duration

    def take(self) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return False
        if self.remaining is not None:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
        return True


async def listed_ids(session: aiohttp.ClientSession, url: str, customer: str) -> set[int]:
    """Every order id the gateway lists for this run's customer, page by page."""
    found: set[int] = set()
    after = 0
    while True:
        params = {"customer": customer, "limit": str(PAGE_SIZE), "after": str(after)}
        async with session.get(url + "/orders", params=params) as response:
            response.raise_for_status()
            page = orjson.loads(await response.read())
        if not page:
            return found
        found.update(order["id"] for order in page)
        after = page[-1]["id"]


async def run_bench(
    url: str,
    concurrency: int,
    requests: int | None,
    duration: float | None,
    progress: Progress,
    verify: bool = True,
) -> BenchResult:
    """With `verify`, every acknowledged order must be listed afterwards (and answered 201/202);
    without, for systems that cannot list them all (the seed's broke at about 1,100 orders)."""
    url = url.rstrip("/")
    customer = f"bench-{uuid.uuid4().hex[:12]}"
    body = orjson.dumps({"item": "t-shirt", "price": 100, "customer": customer})
    recorder = Recorder()
    budget = Budget(requests, duration)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    total = requests if requests is not None else None
    task = progress.add_task(f"placing orders with {concurrency} clients", total=total)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(
            *(
                place_orders(session, url, body, recorder, budget, progress, task, strict=verify)
                for _ in range(concurrency)
            )
        )
        seconds = time.perf_counter() - started
        progress.update(task, total=progress.tasks[task].completed)
        found = recorder.acknowledged_ids
        if verify:
            read_back = progress.add_task("reading every order back", total=None)
            found = await listed_ids(session, url, customer)
            progress.update(read_back, total=1, completed=1)
    latencies = sorted(value * 1000 for value in recorder.latencies)
    placed = len(recorder.latencies) + sum(recorder.errors.values())
    return BenchResult(
        url=url,
        concurrency=concurrency,
        orders=placed,
        seconds=round(seconds, 3),
        orders_per_second=round(len(recorder.latencies) / seconds, 1) if seconds else 0.0,
        latency_ms={
            "p50": round(statistics.median(latencies), 3) if latencies else 0.0,
            "p90": round(percentile(latencies, 0.90), 3),
            "p99": round(percentile(latencies, 0.99), 3),
            "max": round(latencies[-1], 3) if latencies else 0.0,
        },
        errors=recorder.errors,
        lost=len(recorder.acknowledged_ids - found),
        acknowledged=len(recorder.acknowledged_ids),
    )


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed} requests"),
        TimeRemainingColumn(),
        transient=True,
    )
