"""`microshop chaos`: switch faults on and off in a running shop, one service or a named scenario.

A thin client of each service's `/admin/faults` (common/faults.py). The services are found as
`microshop up` places them (`--host`, `--base-port`), or through the same `MICROSHOP_*_URL`
variables the services read, so that `kubectl exec deploy/api-gateway -- microshop chaos ...`
reaches its peers by their Service names. The credential, when the shop has one, is the shared
`MICROSHOP_INTERNAL_TOKEN`, or else `MICROSHOP_SERVICE_TOKEN` (the gateway's own identity).
"""

import contextlib
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import orjson
import typer
from pydantic import ValidationError
from rich.table import Table

from microshop.common.faults import ADMIN_PATH, HEALTHY, Faults, LatencyDistribution
from microshop.services import SERVICES, URL_SETTINGS, resolve, service_ports, service_urls
from microshop.terminal import USAGE_ERROR, console, fail

ADMIN_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Scenario:
    summary: str
    faults: Mapping[str, Faults]
    """The faults of each service it touches; every other service is cleared."""


SCENARIOS: dict[str, Scenario] = {
    "payment-slow": Scenario(
        "payment-service takes 3 s, past order-service's 2 s timeout: orders answer 202 pending, "
        "then the sweep settles them",
        {"payment-service": Faults(latency_seconds=3)},
    ),
    "payment-flaky": Scenario(
        "half of the payment calls fail with 503: about half the orders answer 202 pending and "
        "settle within seconds",
        {"payment-service": Faults(error_rate=0.5)},
    ),
    "db-stall": Scenario(
        "every storage call of db waits 5 s: orders answer 504 (they may still complete; retry "
        "with the Idempotency-Key), lists 504, and db reports down",
        {"db": Faults(storage_latency_seconds=5)},
    ),
    "order-errors": Scenario(
        "a third of order-service's requests fail with 500: the gateway answers those 502",
        {"order-service": Faults(error_rate=0.3, error_status=500)},
    ),
    "gateway-jitter": Scenario(
        "the gateway waits 0.2 s on average, with an exponential tail: p99 latency climbs, "
        "nothing fails",
        {
            "api-gateway": Faults(
                latency_seconds=0.2, latency_distribution=LatencyDistribution.EXPONENTIAL
            )
        },
    ),
}

chaos_app = typer.Typer(
    help="Switch faults on and off in a running shop (docs/chaos.md).", no_args_is_help=True
)

HostOption = Annotated[str, typer.Option(help="Where the shop runs.")]
BasePortOption = Annotated[int, typer.Option(help="The gateway's port; the others follow it.")]
UrlOption = Annotated[
    str | None,
    typer.Option(
        help="The one service's own address instead, e.g. http://127.0.0.1:3004 inside its pod.",
        show_default=False,
    ),
]
ServiceArgument = Annotated[
    str | None, typer.Argument(help="One service (default: all four).", show_default=False)
]


def _admin_urls(host: str, base_port: int) -> dict[str, str]:
    """Each service's /admin/faults; a `MICROSHOP_*_URL` variable overrides where one is."""
    urls = service_urls(host, service_ports(base_port))
    for name, setting in URL_SETTINGS.items():
        urls[name] = os.environ.get(setting, urls[name]).rstrip("/")
    return {name: url + ADMIN_PATH for name, url in urls.items()}


def _call(method: str, url: str, faults: Faults | None = None) -> Faults:
    """One admin call; a refusal or an unreachable service ends the command with its reason."""
    headers = {"Accept": "application/json"}
    # The shared token, or inside the gateway's pod with per-service identities, its own.
    token = os.environ.get("MICROSHOP_INTERNAL_TOKEN") or os.environ.get("MICROSHOP_SERVICE_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if faults is not None:
        data = orjson.dumps(faults.model_dump(mode="json"))
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=ADMIN_TIMEOUT_SECONDS) as answer:
            return Faults.model_validate_json(answer.read())
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
            detail = orjson.loads(detail).get("detail", detail)
        fail(f"{url} answered {error.code}: {detail}", code=1)
    except (urllib.error.URLError, TimeoutError, ValidationError) as error:
        fail(f"{url} could not be reached: {getattr(error, 'reason', error)}", code=1)


def _targets(service: str | None, host: str, base_port: int, url: str | None) -> dict[str, str]:
    """The admin URL of the named service, or of all four."""
    if service is None:
        if url is not None:
            fail("--url names one service's address: name the service too", code=USAGE_ERROR)
        return _admin_urls(host, base_port)
    try:
        name = resolve(service).name
    except KeyError:
        fail(f"unknown service {service!r}; one of: {', '.join(SERVICES)}", code=USAGE_ERROR)
    if url is not None:
        return {name: url.rstrip("/") + ADMIN_PATH}
    return {name: _admin_urls(host, base_port)[name]}


def _call_each_and_print(
    method: str, targets: Mapping[str, str], sent: Mapping[str, Faults] | None = None
) -> None:
    """Makes one admin call to each service (sending it its faults from `sent`, if given) and
    prints the faults each answers with."""
    table = Table("service", "faults")
    for name, admin in targets.items():
        answered = _call(method, admin, None if sent is None else sent[name])
        table.add_row(name, answered.describe())
    console.print(table)


@chaos_app.command("show")
def show_command(
    service: ServiceArgument = None,
    host: HostOption = "127.0.0.1",
    base_port: BasePortOption = 3000,
    url: UrlOption = None,
) -> None:
    """Show the faults switched on in each service."""
    _call_each_and_print("GET", _targets(service, host, base_port, url))


@chaos_app.command("set")
def set_command(
    service: Annotated[str, typer.Argument(help="The service to break.")],
    latency: Annotated[float, typer.Option(help="Mean seconds of wait before each request.")] = 0,
    distribution: Annotated[
        LatencyDistribution, typer.Option(help="How the wait varies around its mean.")
    ] = LatencyDistribution.FIXED,
    error_rate: Annotated[float, typer.Option(help="Share of requests failed, 0 to 1.")] = 0,
    error_status: Annotated[int, typer.Option(help="The status failed requests get.")] = 503,
    storage_latency: Annotated[
        float, typer.Option(help="db only: seconds of wait before each storage call.")
    ] = 0,
    host: HostOption = "127.0.0.1",
    base_port: BasePortOption = 3000,
    url: UrlOption = None,
) -> None:
    """Replace one service's faults with these (options left out are off)."""
    try:
        faults = Faults(
            latency_seconds=latency,
            latency_distribution=distribution,
            error_rate=error_rate,
            error_status=error_status,
            storage_latency_seconds=storage_latency,
        )
    except ValidationError as error:
        fail(str(error.errors(include_url=False)[0]["msg"]), code=USAGE_ERROR)
    targets = _targets(service, host, base_port, url)
    _call_each_and_print("PUT", targets, dict.fromkeys(targets, faults))


@chaos_app.command("clear")
def clear_command(
    service: ServiceArgument = None,
    host: HostOption = "127.0.0.1",
    base_port: BasePortOption = 3000,
    url: UrlOption = None,
) -> None:
    """Switch every fault off, in one service or all four."""
    _call_each_and_print("DELETE", _targets(service, host, base_port, url))


@chaos_app.command("scenario")
def scenario_command(
    name: Annotated[
        str | None, typer.Argument(help="A scenario; without one, list them.", show_default=False)
    ] = None,
    host: HostOption = "127.0.0.1",
    base_port: BasePortOption = 3000,
) -> None:
    """Switch on a named scenario from the catalogue (docs/chaos.md), clearing other faults."""
    if name is None:
        table = Table("scenario", "what you should see")
        for scenario_name, scenario in SCENARIOS.items():
            table.add_row(scenario_name, scenario.summary)
        console.print(table)
        return
    if name not in SCENARIOS:
        fail(f"unknown scenario {name!r}; one of: {', '.join(SCENARIOS)}", code=USAGE_ERROR)
    scenario = SCENARIOS[name]
    sent = {service: scenario.faults.get(service, HEALTHY) for service in SERVICES}
    _call_each_and_print("PUT", _admin_urls(host, base_port), sent)
    console.print(f"{name}: {scenario.summary}", highlight=False)
