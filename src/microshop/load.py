"""`microshop load`: traffic that runs by itself, so that dashboards and faults show something.

Visits start at a steady rate, each one flow picked by weight: `browse` reads a page of the order
list, `place` places an order (one in three above the decline limit), `view` reads one order placed
earlier. Unlike `microshop bench`, which finds the most the shop can take, this keeps to its rate
whatever the shop does: when answers slow down, visits pile up to `MAX_IN_FLIGHT` and later ones
are counted as skipped, so a broken shop is never hammered harder. It runs until `--duration` is
up or it is stopped (Ctrl-C, SIGTERM), then waits for the visits under way and exits 0.
"""

import asyncio
import contextlib
import random
import signal
import sys
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import aiohttp
import orjson
from rich.console import Console
from rich.live import Live
from rich.table import Table

from microshop.bench import percentile

MAX_IN_FLIGHT = 256
REQUEST_TIMEOUT_SECONDS = 10.0
RECENT_ORDERS = 1000
LATENCY_WINDOW = 10_000
"""Percentiles are of each flow's latest visits, so that a load running for days stays small."""
ITEMS = ("t-shirt", "mug", "hoodie", "sticker pack", "poster", "cap")
CUSTOMERS = ("ada", "grace", "alan", "edsger", "barbara", "ken", "margaret", "linus")


class Flow(StrEnum):
    BROWSE = "browse"
    PLACE = "place"
    VIEW = "view"


DEFAULT_MIX: dict[Flow, float] = {Flow.BROWSE: 3, Flow.PLACE: 2, Flow.VIEW: 2}


def parse_mix(text: str) -> dict[Flow, float]:
    """`browse=3,place=2,view=2`: each flow's weight; flows left out are not visited."""
    mix: dict[Flow, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        try:
            flow = Flow(name.strip())
            mix[flow] = float(weight)
        except ValueError:
            flows = ", ".join(Flow)
            raise ValueError(
                f"{part.strip()!r} is not FLOW=WEIGHT with a flow of {flows}"
            ) from None
        if mix[flow] < 0:
            raise ValueError(f"the weight of {flow} must not be negative")
    if not any(mix.values()):
        raise ValueError("at least one flow needs a weight above 0")
    return mix


@dataclass
class FlowStats:
    visits: int = 0
    succeeded: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def record(self, seconds: float, failure: str | None) -> None:
        self.visits += 1
        self.latencies_ms.append(seconds * 1000)
        if failure is None:
            self.succeeded += 1
        else:
            self.failures[failure] = self.failures.get(failure, 0) + 1


@dataclass
class LoadReport:
    """What the visits met, per flow; `skipped` visits were due while too many were under way."""

    started: float = field(default_factory=time.monotonic)
    flows: dict[Flow, FlowStats] = field(
        default_factory=lambda: {flow: FlowStats() for flow in Flow}
    )
    skipped: int = 0

    def table(self, rate: float) -> Table:
        elapsed = time.monotonic() - self.started
        table = Table(title=f"{elapsed:,.0f} s at {rate:g} visits/s; skipped {self.skipped}")
        for column in ("flow", "visits", "ok", "failed", "p50 ms", "p99 ms"):
            table.add_column(column, justify="left" if column in ("flow", "failed") else "right")
        for flow, stats in self.flows.items():
            latencies = sorted(stats.latencies_ms)
            failed = ", ".join(f"{kind}: {count}" for kind, count in stats.failures.items())
            table.add_row(
                flow,
                f"{stats.visits:,}",
                f"{stats.succeeded:,}",
                failed or "0",
                f"{percentile(latencies, 0.5):.1f}",
                f"{percentile(latencies, 0.99):.1f}",
            )
        return table

    def as_dict(self) -> dict[str, object]:
        flows: dict[str, object] = {}
        for flow, stats in self.flows.items():
            latencies = sorted(stats.latencies_ms)
            flows[flow.value] = {
                "visits": stats.visits,
                "succeeded": stats.succeeded,
                "failures": stats.failures,
                "p50_ms": round(percentile(latencies, 0.5), 2),
                "p99_ms": round(percentile(latencies, 0.99), 2),
            }
        seconds = round(time.monotonic() - self.started, 2)
        return {"seconds": seconds, "skipped": self.skipped, "flows": flows}

    def line(self) -> str:
        """The same, as one line of a log that a container writes."""
        parts = []
        for flow, stats in self.flows.items():
            latencies = sorted(stats.latencies_ms)
            failed = sum(stats.failures.values())
            parts.append(
                f"{flow} {stats.visits} ({failed} failed, p99 {percentile(latencies, 0.99):.0f} ms)"
            )
        elapsed = time.monotonic() - self.started
        return f"{elapsed:.0f} s: " + "; ".join(parts) + f"; skipped {self.skipped}"


class Visitor:
    """Makes the visits; keeps ids of orders it placed for `view` and `browse` to read."""

    def __init__(self, session: aiohttp.ClientSession, url: str, report: LoadReport) -> None:
        self.session = session
        self.url = url
        self.report = report
        self.recent: deque[int] = deque(maxlen=RECENT_ORDERS)

    async def visit(self, flow: Flow) -> None:
        if flow is Flow.VIEW and not self.recent:
            flow = Flow.BROWSE
        started = time.perf_counter()
        try:
            failure = await self._run(flow)
        except aiohttp.ClientError:
            failure = "unreachable"
        except TimeoutError:
            failure = "timeout"
        self.report.flows[flow].record(time.perf_counter() - started, failure)

    async def _run(self, flow: Flow) -> str | None:
        """Makes one visit; returns what went wrong, or None."""
        if flow is Flow.PLACE:
            price = random.choice((random.randint(5, 200), random.randint(5, 200), 12_500))
            order = {
                "item": random.choice(ITEMS),
                "price": price,
                "customer": random.choice(CUSTOMERS),
            }
            headers = {"Idempotency-Key": uuid.uuid4().hex}
            async with self.session.post(
                self.url + "/orders", json=order, headers=headers
            ) as response:
                body = await response.read()
                if response.status in (200, 201, 202):
                    with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                        self.recent.append(orjson.loads(body)["order"]["id"])
                    return None
                return f"HTTP {response.status}"
        if flow is Flow.VIEW:
            path = f"/orders/{random.choice(self.recent)}"
            params: dict[str, str] = {}
        else:
            path = "/orders"
            after = max(0, random.choice(self.recent) - 10) if self.recent else 0
            params = {"limit": "20", "after": str(after)}
        async with self.session.get(self.url + path, params=params) as response:
            await response.read()
            return None if response.status == 200 else f"HTTP {response.status}"


async def run_load(
    url: str,
    rate: float,
    duration: float,
    mix: Mapping[Flow, float],
    report: LoadReport,
    stopping: asyncio.Event,
) -> None:
    """Starts `rate` visits a second until `duration` (0: no end) or `stopping`, then waits for
    the visits under way."""
    flows = list(mix)
    weights = [mix[flow] for flow in flows]
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
    async with aiohttp.ClientSession(
        timeout=timeout,
        connector=connector,
        json_serialize=lambda value: orjson.dumps(value).decode(),
    ) as session:
        visitor = Visitor(session, url.rstrip("/"), report)
        under_way: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        due = 0
        while not stopping.is_set():
            now = time.monotonic()
            if duration and now - started >= duration:
                break
            next_visit = started + due / rate
            if next_visit > now:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), next_visit - now)
                continue
            due += 1
            if len(under_way) >= MAX_IN_FLIGHT:
                report.skipped += 1
                continue
            task = asyncio.create_task(visitor.visit(random.choices(flows, weights)[0]))
            under_way.add(task)
            task.add_done_callback(under_way.discard)
        if under_way:
            await asyncio.wait(under_way)


async def run_with_display(
    url: str, rate: float, duration: float, mix: Mapping[Flow, float], console: Console
) -> LoadReport:
    """Runs the load with a live table on a terminal, or a log line every 10 s elsewhere."""
    report = LoadReport()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stopping.set)
    load = asyncio.create_task(run_load(url, rate, duration, mix, report, stopping))
    if console.is_terminal:
        with Live(report.table(rate), console=console, refresh_per_second=2) as live:
            while not load.done():
                await asyncio.wait({load}, timeout=0.5)
                live.update(report.table(rate))
    else:
        while not load.done():
            await asyncio.wait({load}, timeout=10)
            print(report.line(), file=sys.stdout, flush=True)
    await load
    return report
