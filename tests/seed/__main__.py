"""`python -m tests.seed <service> [--port N] <peers>`: one stand-in, with the seed's arguments.

The seed took its peers' `host:port` as arguments (api-gateway: payment-service, order-service;
order-service: payment-service, db; payment-service: db) and listened on a fixed port; a
stand-in takes the same arguments and, with `--port`, listens elsewhere.
"""

import argparse
from collections.abc import Callable

from tests.seed import SEED_PEERS, SEED_PORTS, services
from tests.seed.express import Routes, application, serve

ROUTES: dict[str, Callable[..., Routes]] = {
    "api-gateway": services.api_gateway,
    "payment-service": services.payment_service,
    "order-service": services.order_service,
    "db": services.db,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.seed", description=__doc__)
    parser.add_argument("service", choices=ROUTES)
    parser.add_argument("peers", nargs="*", metavar="host:port")
    parser.add_argument("--port", type=int, help="default: the seed's own port")
    arguments = parser.parse_intermixed_args()
    expected = SEED_PEERS[arguments.service]
    if len(arguments.peers) != len(expected):
        parser.error(f"{arguments.service} takes {len(expected)} peers: {' '.join(expected)}")
    routes = ROUTES[arguments.service](*arguments.peers)
    serve(application(routes), arguments.port or SEED_PORTS[arguments.service])


if __name__ == "__main__":
    main()
