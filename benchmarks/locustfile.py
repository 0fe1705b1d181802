"""A shopper's mix for Locust: browse the orders, look at one, now and then place one.

pip install locust
locust -f benchmarks/locustfile.py --host http://127.0.0.1:3000
"""

import random
import uuid

from locust import HttpUser, between, task


class Shopper(HttpUser):
    wait_time = between(0.5, 2)

    def on_start(self) -> None:
        self.customer = f"shopper-{uuid.uuid4().hex[:8]}"
        self.placed: list[int] = []

    @task(5)
    def browse_orders(self) -> None:
        self.client.get("/orders?limit=20", name="/orders")

    @task(3)
    def view_one_order(self) -> None:
        if self.placed:
            order_id = random.choice(self.placed)
            self.client.get(f"/orders/{order_id}", name="/orders/{id}")

    @task(2)
    def place_order(self) -> None:
        order = {
            "item": random.choice(["t-shirt", "mug", "hat", "lamp"]),
            "price": random.choice([5, 19.99, 100, 12_000]),
            "customer": self.customer,
        }
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        with self.client.post(
            "/orders", json=order, headers=headers, catch_response=True
        ) as answer:
            if answer.status_code in (201, 202):
                self.placed.append(answer.json()["order"]["id"])
            else:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")
