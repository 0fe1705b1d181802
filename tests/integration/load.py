"""A steady stream of orders for fault tests, recording what every client saw."""

import asyncio
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Outcome:
    status: int | None
    body: dict[str, object] | None
    error: str | None


@dataclass
class OrderStream:
    gateway_url: str
    customer: str
    concurrency: int = 8
    outcomes: list[Outcome] = field(default_factory=list)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, seconds: float) -> None:
        """Places orders from `concurrency` clients until `seconds` pass or `stop()`."""
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(base_url=self.gateway_url, timeout=15) as client:
            await asyncio.gather(
                *(self.client_loop(client, deadline) for _ in range(self.concurrency))
            )

    async def client_loop(self, client: httpx.AsyncClient, deadline: float) -> None:
        order = {"item": "t-shirt", "price": 100, "customer": self.customer}
        while time.monotonic() < deadline and not self.stopped.is_set():
            try:
                response = await client.post("/orders", json=order)
            except httpx.TransportError as error:
                self.outcomes.append(Outcome(None, None, type(error).__name__))
                await asyncio.sleep(0.05)
                continue
            self.outcomes.append(Outcome(response.status_code, response.json(), None))
            if response.status_code >= 500:
                await asyncio.sleep(0.05)

    @property
    def acknowledged_ids(self) -> set[int]:
        return {
            outcome.body["order"]["id"]  # type: ignore[index]
            for outcome in self.outcomes
            if outcome.status in (201, 202) and outcome.body is not None
        }


def all_pages(url: str, params: dict[str, str]) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = []
    after = 0
    while True:
        page = httpx.get(url, params={**params, "after": str(after), "limit": "1000"}, timeout=10)
        page.raise_for_status()
        batch = page.json()
        if not batch:
            return entries
        entries.extend(batch)
        after = batch[-1]["id"]


def wait_until_settled(
    gateway_url: str, customer: str, timeout: float = 60
) -> list[dict[str, object]]:
    """Every order of `customer`, once none of them is pending (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while True:
        orders = all_pages(gateway_url + "/orders", {"customer": customer})
        if all(order["status"] != "pending" for order in orders) or time.monotonic() > deadline:
            return orders
        time.sleep(0.5)
