"""The shop's topology: its four services, where each listens, and how they find each other."""

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    """What the supervisor, the CLI, the sandboxes and the manifests know about one service."""

    name: str
    module: str
    default_port: int
    url_setting: str | None
    """The `MICROSHOP_*_URL` variable that tells its callers where it is; None for the gateway,
    which nothing calls."""

    @property
    def port_offset(self) -> int:
        return self.default_port - GATEWAY.default_port


GATEWAY = ServiceSpec("api-gateway", "microshop.services.gateway.app", 3000, None)
PAYMENTS = ServiceSpec(
    "payment-service", "microshop.services.payments.app", 3001, "MICROSHOP_PAYMENT_SERVICE_URL"
)
ORDERS = ServiceSpec(
    "order-service", "microshop.services.orders.app", 3002, "MICROSHOP_ORDER_SERVICE_URL"
)
DB = ServiceSpec("db", "microshop.services.db.app", 3004, "MICROSHOP_DB_SERVICE_URL")

SERVICES: dict[str, ServiceSpec] = {spec.name: spec for spec in (DB, PAYMENTS, ORDERS, GATEWAY)}
"""Every service by name, in start-up order: each one only calls services listed before it."""

URL_SETTINGS: dict[str, str] = {
    spec.name: spec.url_setting for spec in SERVICES.values() if spec.url_setting is not None
}
"""Each called service's name and the variable that holds its URL."""

Grants = Mapping[tuple[str, str], frozenset[str]]
"""A callee's routes, as (method, resource), and the services that may call each; a resource is
the first segment of a path, so `/orders` covers `/orders/{id}` too."""

PERMITTED_CALLERS: dict[str, Grants] = {
    DB.name: {
        ("GET", "/orders"): frozenset({ORDERS.name, PAYMENTS.name}),
        ("POST", "/orders"): frozenset({ORDERS.name}),
        ("GET", "/transactions"): frozenset({ORDERS.name, PAYMENTS.name}),
        ("POST", "/transactions"): frozenset({PAYMENTS.name}),
    },
    PAYMENTS.name: {
        ("GET", "/transactions"): frozenset({GATEWAY.name}),
        ("POST", "/transactions"): frozenset({ORDERS.name}),
    },
    ORDERS.name: {
        ("GET", "/orders"): frozenset({GATEWAY.name}),
        ("POST", "/orders"): frozenset({GATEWAY.name}),
    },
}
"""With per-service identities, who may call what: only order-service stores orders, only
payment-service records a payment, and only order-service asks for one. Each grant is a call the
services make (the gateway reads payment-service's transactions when order-service is the seed's).
Probes and metrics are open to anyone; a service's description to any of its callers."""


def callers_of(name: str) -> frozenset[str]:
    """The services that call `name` at all: whose token digests it needs."""
    return frozenset().union(*PERMITTED_CALLERS.get(name, {}).values())


ALIASES = {"gateway": "api-gateway", "orders": "order-service", "payments": "payment-service"}
"""The package names of the services, accepted wherever a service is named."""


def resolve(name: str) -> ServiceSpec:
    """A service by its Kubernetes name (`order-service`) or its package name (`orders`)."""
    return SERVICES[ALIASES.get(name, name)]


def service_ports(base_port: int) -> dict[str, int]:
    """The seed's layout moved to `base_port`: gateway +0, payment +1, order +2, db +4."""
    return {name: base_port + spec.port_offset for name, spec in SERVICES.items()}


def service_urls(host: str, ports: Mapping[str, int]) -> dict[str, str]:
    return {name: f"http://{host}:{port}" for name, port in ports.items()}


def wiring_environment(urls: Mapping[str, str]) -> dict[str, str]:
    """The `MICROSHOP_*_URL` settings that point the services at each other."""
    return {setting: urls[name] for name, setting in URL_SETTINGS.items()}
