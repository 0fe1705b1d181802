"""The one layer around every request (common/asgi.py): the routes it calls directly answer as
those it leaves to Starlette's router, with the same request id, trace, guards, faults, errors
and metrics."""

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.testclient import TestClient
from starlette.types import Scope

from microshop.common.app import Service, create_app
from microshop.common.errors import ExceptionHandler, Problem, problem_response
from microshop.common.faults import Faults
from microshop.common.guards import Guard
from microshop.common.responses import JSONResponse
from microshop.common.settings import Settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


class ItemMissing(LookupError):
    pass


class ArchivedItemMissing(ItemMissing):
    """Answered by the handler of its base class."""


def _refuse_visitors(scope: Scope) -> Problem | None:
    if any(name == b"x-visitor" for name, _ in scope["headers"]):
        return Problem(403, f"Visitors may not call {scope['path']}.")
    return None


class ItemService(Service):
    name = "item-service"

    def routes(self) -> Sequence[BaseRoute]:
        return [
            Route("/items", self.list_items, methods=["GET"]),
            Route("/items", self.add_item, methods=["POST"]),
            Route("/items/{item_id:int}", self.get_item, methods=["GET"]),
            Route("/plain", self.plain, methods=["GET"]),
            Route("/archived", self.archived, methods=["GET"]),
            Route("/broken", self.broken, methods=["GET"]),
        ]

    def guards(self) -> Sequence[Guard]:
        return [_refuse_visitors]

    def exception_handlers(self) -> Mapping[type[Exception], ExceptionHandler]:
        return {ItemMissing: self.item_missing}

    async def list_items(self, request: Request) -> Response:
        return JSONResponse([{"id": 1}])

    async def add_item(self, request: Request) -> Response:
        raise Problem(422, "Items are read-only.")

    async def get_item(self, request: Request) -> Response:
        if request.path_params["item_id"] != 1:
            raise ItemMissing(request.path_params["item_id"])
        return JSONResponse({"id": 1})

    def plain(self, request: Request) -> Response:
        """A synchronous endpoint, which the router runs in a thread."""
        return PlainTextResponse("plain")

    async def archived(self, request: Request) -> Response:
        raise ArchivedItemMissing("archived")

    async def broken(self, request: Request) -> Response:
        raise RuntimeError("a bug")

    async def item_missing(self, request: Request, error: Exception) -> Response:
        return problem_response(Problem(404, f"No item {error}."), request)


@pytest.fixture
def service(tmp_path: Path) -> ItemService:
    return ItemService(Settings(data_dir=tmp_path))


@pytest.fixture
def client(service: ItemService) -> TestClient:
    return TestClient(create_app(service), raise_server_exceptions=False)


@pytest.mark.parametrize("path", ["/items", "/items/1"])
def test_every_answer_carries_the_request_id_and_continues_the_trace(
    client: TestClient, path: str
) -> None:
    answer = client.get(path, headers={"X-Request-ID": "order-42", "traceparent": PARENT})
    assert answer.status_code == 200
    assert answer.json() == ([{"id": 1}] if path == "/items" else {"id": 1})
    assert answer.headers["x-request-id"] == "order-42"
    assert answer.headers["traceparent"].startswith(f"00-{TRACE_ID}-")
    assert not answer.headers["traceparent"].endswith("00f067aa0ba902b7-01")


@pytest.mark.parametrize("path", ["/items", "/items/1", "/nowhere"])
def test_a_guard_refuses_before_any_route_runs(client: TestClient, path: str) -> None:
    answer = client.get(path, headers={"X-Visitor": "yes", "X-Request-ID": "seen"})
    assert answer.status_code == 403
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"] == f"Visitors may not call {path}."
    assert answer.headers["x-request-id"] == "seen"


@pytest.mark.parametrize("path", ["/items", "/items/1"])
def test_faults_apply_to_every_route(client: TestClient, service: ItemService, path: str) -> None:
    service.faults.set(Faults(error_rate=1, error_status=502))
    answer = client.get(path)
    assert answer.status_code == 502
    assert answer.json()["detail"] == "Failure injected on item-service (see /admin/faults)."
    assert client.get("/healthz").status_code == 200


def test_errors_are_answered_by_the_handler_of_their_class_or_its_nearest_base(
    client: TestClient,
) -> None:
    refused = client.post("/items", json={})
    assert (refused.status_code, refused.json()["detail"]) == (422, "Items are read-only.")
    assert refused.json()["instance"] == "/items"
    missing = client.get("/items/2")
    assert (missing.status_code, missing.json()["detail"]) == (404, "No item 2.")
    archived = client.get("/archived")
    assert (archived.status_code, archived.json()["detail"]) == (404, "No item archived.")


def test_an_error_no_handler_knows_is_a_500_problem_with_the_request_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    answer = client.get("/broken", headers={"X-Request-ID": "bug-1"})
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"] == "An unexpected error occurred."
    assert answer.headers["x-request-id"] == "bug-1"
    assert "RuntimeError: a bug" in caplog.text


def test_what_the_router_answers_is_still_answered(client: TestClient) -> None:
    head = client.head("/items")
    assert (head.status_code, head.content) == (200, b"")
    not_allowed = client.delete("/items")
    assert not_allowed.status_code == 405
    assert not_allowed.headers["content-type"] == "application/problem+json"
    not_found = client.get("/nowhere")
    assert not_found.status_code == 404
    assert not_found.headers["content-type"] == "application/problem+json"
    plain = client.get("/plain")
    assert (plain.status_code, plain.text) == (200, "plain")


def test_requests_are_counted_by_route_and_status(client: TestClient) -> None:
    client.get("/items")
    client.get("/items/1")
    client.get("/items/2")
    client.get("/nowhere")
    metrics = client.get("/metrics").text
    for labels in [
        'method="GET",route="/items",status="200"',
        'method="GET",route="/items/{item_id:int}",status="200"',
        'method="GET",route="/items/{item_id:int}",status="404"',
        'method="GET",route="unmatched",status="404"',
    ]:
        assert f"http_requests_total{{{labels}}} 1.0" in metrics


def test_a_draining_service_asks_clients_to_close_their_connection(
    client: TestClient, service: ItemService
) -> None:
    assert "connection" not in client.get("/items").headers
    service.draining = True
    for path in ["/items", "/items/1"]:
        assert client.get(path).headers["connection"] == "close"
