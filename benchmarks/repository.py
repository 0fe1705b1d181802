"""Time per order spent in the db service's storage alone: create an order, then pay it.

    .venv/bin/python benchmarks/repository.py [--orders 2000]

No HTTP, no other service: this isolates what the repository costs on sqlite (file and memory).
"""

import argparse
import asyncio
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from microshop.common.models import OrderCreate
from microshop.common.settings import Settings, Storage
from microshop.services.db.storage import open_repository


async def time_per_order(storage: Storage, orders: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        repository = open_repository(Settings(storage=storage, data_dir=Path(directory)))
        await repository.migrate()
        order = OrderCreate(item="t-shirt", price=Decimal(100), customer="Gregor")
        started = time.perf_counter()
        for number in range(orders):
            created = await repository.create_order(order, f"key-{number}")
            await repository.record_transaction(created.value["order"]["id"], True, None)
        elapsed = time.perf_counter() - started
        await repository.close()
    return elapsed / orders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    options = parser.parse_args()
    for storage in (Storage.SQLITE, Storage.MEMORY):
        seconds = asyncio.run(time_per_order(storage, options.orders))
        print(f"{storage.value:8} {seconds * 1e6:8.0f} us per order (create + pay)")


if __name__ == "__main__":
    main()
