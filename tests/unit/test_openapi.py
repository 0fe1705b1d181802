"""The OpenAPI document says exactly what the services take: for generated inputs, its schemas
(read by the validator schemathesis uses) and the services' own readers agree."""

from typing import Any

import jsonschema_rs
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from starlette.requests import Request
from starlette.testclient import TestClient

from microshop.common.errors import Problem
from microshop.common.inputs import idempotency_key_from
from microshop.common.models import OrderCreate, OrderListQuery
from microshop.common.settings import Settings
from microshop.services.db.app import create

CHECKS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    app = create(Settings(data_dir=tmp_path_factory.mktemp("db")))
    document: dict[str, Any] = TestClient(app).get("/openapi.json").json()
    return document


def validator(spec: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A validator of `schema` whose references resolve in `spec`, as schemathesis reads them."""
    return jsonschema_rs.validator_for({**schema, "components": spec["components"]})


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def parameter(spec: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    parameters = spec["paths"][path][method]["parameters"]
    found: dict[str, Any] = next(item for item in parameters if item["name"] == name)["schema"]
    return found


def accepts(read: Any, value: Any) -> bool:
    try:
        read(value)
    except (ValidationError, Problem):
        return False
    return True


def read_order(body: dict[str, Any]) -> OrderCreate:
    return OrderCreate.model_validate_json(orjson.dumps(body))


price_texts = st.from_regex(r"\A *[+-]?[0-9]{1,12}(\.[0-9]{1,4})? *\Z") | st.text(
    alphabet="0123456789.+- e\u0665", max_size=14
)
prices = (
    st.integers(min_value=-10, max_value=2_000_000_000)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.decimals(min_value=-1, max_value=1_000_000_010, places=3).map(float)
    | st.sampled_from([1e9, 1e9 + 0.01, 0.01, 0.005, 999_999_999.99, 10.5, 0.57])
    | price_texts
    | st.booleans()
    | st.none()
)


@CHECKS
@given(price=prices)
def test_the_price_schema_takes_exactly_the_prices_the_services_take(
    spec: dict[str, Any], price: Any
) -> None:
    body = {"item": "a", "price": price, "customer": "b"}
    assert validator(spec, ref("OrderCreate")).is_valid(body) == accepts(read_order, body)


names = st.text(max_size=210) | st.text(
    alphabet=" \t\u00a0\u2028\u3000\ufeff\u202eab\u0085\x7f\x9f", max_size=6
)


@CHECKS
@given(name=names)
def test_the_name_schema_takes_exactly_the_names_the_services_take(
    spec: dict[str, Any], name: str
) -> None:
    body = {"item": name, "price": 1, "customer": "b"}
    assert validator(spec, ref("OrderCreate")).is_valid(body) == accepts(read_order, body)
    query_schema = parameter(spec, "/orders", "get", "customer")
    taken = accepts(OrderListQuery.model_validate, {"customer": name})
    assert validator(spec, query_schema).is_valid(name) == taken


@CHECKS
@given(limit=st.integers(min_value=-5, max_value=1010), after=st.integers(min_value=-5))
def test_the_query_schema_takes_exactly_the_pages_the_services_take(
    spec: dict[str, Any], limit: int, after: int
) -> None:
    for name, value in (("limit", limit), ("after", after)):
        schema = parameter(spec, "/orders", "get", name)
        taken = accepts(OrderListQuery.model_validate, {name: str(value)})
        assert validator(spec, schema).is_valid(value) == taken


def read_key(value: str) -> str | None:
    scope = {"type": "http", "headers": [(b"idempotency-key", value.encode("latin-1"))]}
    return idempotency_key_from(Request(scope))


@CHECKS
@given(
    key=st.text(alphabet=st.characters(max_codepoint=255), max_size=210)
    | st.text(alphabet=" \t!~a\x7f\xa0", min_size=195, max_size=205)
)
def test_the_idempotency_key_schema_takes_exactly_the_keys_the_services_take(
    spec: dict[str, Any], key: str
) -> None:
    schema = parameter(spec, "/orders", "post", "Idempotency-Key")
    assert validator(spec, schema).is_valid(key) == accepts(read_key, key)
