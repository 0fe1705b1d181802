"""The four services of the shop and where each one listens by default."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    """What the supervisor, the CLI and the manifests need to know about one service."""

    name: str
    module: str
    default_port: int

    @property
    def port_offset(self) -> int:
        return self.default_port - GATEWAY.default_port


GATEWAY = ServiceSpec("api-gateway", "microshop.services.gateway.app", 3000)
PAYMENTS = ServiceSpec("payment-service", "microshop.services.payments.app", 3001)
ORDERS = ServiceSpec("order-service", "microshop.services.orders.app", 3002)
DB = ServiceSpec("db", "microshop.services.db.app", 3004)

SERVICES: dict[str, ServiceSpec] = {spec.name: spec for spec in (DB, PAYMENTS, ORDERS, GATEWAY)}
"""Every service by name, in start-up order: each one only calls services listed before it."""
