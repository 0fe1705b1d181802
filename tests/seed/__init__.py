"""Stand-ins of the seed, the Node.js demo that microshop replaces, from its observed behaviour.

`python -m tests.seed <service> --port N <peer host:port> ...` runs one of its four services;
`tests.seed.processes` starts them (or, with MICROSHOP_SEED_DIR, the real original) for tests.
"""

SEED_PORTS = {"api-gateway": 3000, "payment-service": 3001, "order-service": 3002, "db": 3004}
"""The ports the original listens on, whatever it is told."""
SEED_PEERS: dict[str, tuple[str, ...]] = {
    "api-gateway": ("payment-service", "order-service"),
    "order-service": ("payment-service", "db"),
    "payment-service": ("db",),
    "db": (),
}
"""The peers whose `host:port` each service takes as arguments, in their order."""
