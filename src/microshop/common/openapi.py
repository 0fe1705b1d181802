"""OpenAPI 3.1 built from the routes' pydantic models, so it cannot drift from the code."""

import html
import re
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, is_typeddict

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode
from starlette.convertors import Convertor, IntegerConvertor
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from microshop.common.inputs import (
    FORM_TYPE,
    IDEMPOTENCY_HEADER,
    JSON_TYPE,
    MAX_BODY_BYTES,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    OrderIdConvertor,
)
from microshop.common.models import MAX_ORDER_ID
from microshop.common.responses import ProblemResponse

PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "Each invalid field or parameter, on a 400 or 422.",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                "required": ["field", "message"],
            },
        },
    },
    "required": ["title", "status"],
}
REF_TEMPLATE = "#/components/schemas/{model}"
CONVERTOR = re.compile(r":\w+}")
SECURITY_SCHEME = "internalToken"

IDEMPOTENCY_KEY_SCHEMA = {
    "type": "string",
    # Spaces and tabs around the key are no part of it; an empty key is no key.
    "pattern": rf"^[ \t]*(?:[!-~](?:[ -~]{{0,{MAX_IDEMPOTENCY_KEY_LENGTH - 2}}}[!-~])?)?[ \t]*$",
    "description": f"1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters. The same key "
    "with the same body answers as the first time and creates nothing; with another body, 422.",
}
REQUEST_HEADERS = {IDEMPOTENCY_HEADER: IDEMPOTENCY_KEY_SCHEMA}
RESPONSE_HEADERS = {
    "Location": "The order's own path, `/orders/{id}`.",
    IDEMPOTENCY_HEADER: "The key the order was placed with: the client's, or a new one.",
}

DOWNSTREAM_ERRORS = {
    502: "Another service gave an answer that could not be read.",
    503: "Another service is unavailable; retry after `Retry-After` seconds.",
    504: "Another service did not answer in time.",
}
"""What a service that calls others may answer besides its own errors; their 4xx pass through."""
STORAGE_ERRORS = {503: "The database is unavailable; retry after `Retry-After` seconds."}

_MALFORMED = "The HTTP request could not be parsed."
_HEADERS_OF_ERRORS = {
    401: {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": "Bearer"}}},
    503: {"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}}},
}


class ApiRoute(Route):
    """A Starlette route that also describes itself for the OpenAPI document.

    The error statuses its inputs can cause (a body's 400, 413, 415 and 422, a query's 400 and
    422, a path id's 404) are added to `errors`, which names those of the work itself.
    """

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        methods: Sequence[str],
        summary: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        responses: dict[int, Any] | None = None,
        errors: Mapping[int, str] | None = None,
        headers: Sequence[str] = (),
        answer_headers: Sequence[str] = (),
    ) -> None:
        super().__init__(path, endpoint, methods=list(methods))
        self.summary = summary
        self.body = body
        self.query = query
        self.responses = responses or {200: None}
        self.errors = dict(errors or {})
        self.header_names = headers
        self.answer_headers = answer_headers
        """Response headers of every successful answer."""
        self.allowed_methods = set(self.methods or ())
        """Every method its path answers, across the routes that share it: what a 405 lists."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette's own 405 lists only this route's methods, not those of its path's others.
        if self.methods and scope["method"] not in self.methods:
            allow = ", ".join(sorted(self.allowed_methods))
            raise HTTPException(status_code=405, headers={"Allow": allow})
        await self.app(scope, receive, send)

    def error_reasons(self) -> dict[int, list[str]]:
        """Every error status this route can answer, with why."""
        reasons: dict[int, list[str]] = {400: [_MALFORMED]}
        if self.body is not None:
            reasons[400].append("The body is not valid JSON, or a form that is not UTF-8.")
            reasons[413] = [f"The body is larger than {MAX_BODY_BYTES} bytes."]
            reasons[415] = [f"The body is neither JSON ({JSON_TYPE} or +json) nor {FORM_TYPE}."]
            reasons[422] = ["Invalid fields, each listed in `errors`."]
        if self.query is not None:
            reasons[400].append("A query parameter this operation does not take (named in errors).")
            reasons.setdefault(422, []).append("Invalid query parameters, each listed in `errors`.")
        if IDEMPOTENCY_HEADER in self.header_names:
            reasons.setdefault(422, []).append(
                f"An {IDEMPOTENCY_HEADER} that is not printable ASCII, or that was used with "
                "another body."
            )
        if self.param_convertors:
            reasons[404] = ["No such order."]
        for status, reason in self.errors.items():
            reasons.setdefault(status, []).append(reason)
        return reasons


def share_allowed_methods(routes: Sequence[BaseRoute]) -> None:
    """Gives each `ApiRoute` the methods of every route on its path."""
    by_path: dict[str, set[str]] = {}
    api_routes = [route for route in routes if isinstance(route, ApiRoute)]
    for route in api_routes:
        by_path.setdefault(route.path, set()).update(route.methods or ())
    for route in api_routes:
        route.allowed_methods = by_path[route.path]


def schema_of(annotation: Any, components: dict[str, Any], mode: JsonSchemaMode) -> dict[str, Any]:
    schema = TypeAdapter(annotation).json_schema(ref_template=REF_TEMPLATE, mode=mode)
    components.update(schema.pop("$defs", {}))
    if is_typeddict(annotation) or (
        isinstance(annotation, type) and issubclass(annotation, BaseModel)
    ):
        components[annotation.__name__] = schema
        return {"$ref": REF_TEMPLATE.format(model=annotation.__name__)}
    return schema


def path_schema(convertor: Convertor[Any]) -> dict[str, Any]:
    if isinstance(convertor, OrderIdConvertor):
        return {"type": "integer", "minimum": 1, "maximum": MAX_ORDER_ID}
    if isinstance(convertor, IntegerConvertor):
        return {"type": "integer", "minimum": 0}
    return {"type": "string"}


def never_null(field: dict[str, Any]) -> dict[str, Any]:
    """A field of a query or a form, which are text: one left out takes its default, and none can
    be null."""
    schema = dict(field)
    choices = [choice for choice in schema.pop("anyOf", []) if choice != {"type": "null"}]
    if len(choices) == 1:
        schema.update(choices[0])
    elif choices:
        schema["anyOf"] = choices
    if schema.get("default", ...) is None:
        del schema["default"]
    return schema


def query_parameters(query: type[BaseModel], components: dict[str, Any]) -> list[dict[str, Any]]:
    schema = query.model_json_schema(ref_template=REF_TEMPLATE)
    components.update(schema.pop("$defs", {}))
    return [
        {"name": name, "in": "query", "required": False, "schema": never_null(field)}
        for name, field in schema["properties"].items()
    ]


def form_schema(body: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """The body as a form: the JSON body's schema (which `schema_of` put in `components`) without
    its nulls."""
    name = body.__name__
    json_schema = components[name]
    properties = {key: never_null(field) for key, field in json_schema["properties"].items()}
    if properties != json_schema["properties"]:
        name = f"{name}Form"
        components[name] = {**json_schema, "title": name, "properties": properties}
    return {"$ref": REF_TEMPLATE.format(model=name)}


def problem_answer(status: int, reasons: Sequence[str]) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": " ".join(reasons),
        "content": {
            ProblemResponse.media_type: {"schema": {"$ref": REF_TEMPLATE.format(model="Problem")}},
        },
    }
    if status in _HEADERS_OF_ERRORS:
        answer["headers"] = _HEADERS_OF_ERRORS[status]
    return answer


def operation(route: ApiRoute, components: dict[str, Any], protected: bool) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": path_schema(convertor)}
        for name, convertor in route.param_convertors.items()
    ]
    if route.query is not None:
        parameters.extend(query_parameters(route.query, components))
    parameters.extend(
        {"name": name, "in": "header", "required": False, "schema": REQUEST_HEADERS[name]}
        for name in route.header_names
    )
    result: dict[str, Any] = {"summary": route.summary, "parameters": parameters, "responses": {}}
    if route.query is not None:
        result["description"] = "Any other query parameter is refused with 400."
    if route.body is not None:
        body_schema = schema_of(route.body, components, "validation")
        result["requestBody"] = {
            "required": True,
            "content": {
                JSON_TYPE: {"schema": body_schema},
                FORM_TYPE: {"schema": form_schema(route.body, components)},
            },
        }
    errors = route.error_reasons()
    if protected:
        errors[401] = ["The internal token is missing or wrong."]
    for status, model in sorted(route.responses.items()):
        if status >= 400:
            errors.setdefault(status, [HTTPStatus(status).phrase + "."])
            continue
        answer: dict[str, Any] = {"description": HTTPStatus(status).phrase}
        if model is not None:
            schema = schema_of(model, components, "serialization")
            answer["content"] = {JSON_TYPE: {"schema": schema}}
        if route.answer_headers:
            answer["headers"] = {
                name: {
                    "required": True,
                    "description": RESPONSE_HEADERS[name],
                    "schema": {"type": "string"},
                }
                for name in route.answer_headers
            }
        result["responses"][str(status)] = answer
    for status in sorted(errors):
        result["responses"][str(status)] = problem_answer(status, errors[status])
    return result


def build_openapi(
    title: str, version: str, routes: Sequence[BaseRoute], *, protected: bool = False
) -> dict[str, Any]:
    """The service's OpenAPI document; `protected`: every call needs the internal token."""
    components: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, ApiRoute):
            continue
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            path = CONVERTOR.sub(
                "}", route.path
            )  # "/orders/{order_id:order_id}" -> "/orders/{order_id}"
            paths.setdefault(path, {})[method.lower()] = operation(route, components, protected)
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Every error is RFC 9457 problem details. A method that a path does "
            "not take is answered 405, with the methods it does take in `Allow`.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }
    if protected:
        spec["components"]["securitySchemes"] = {
            SECURITY_SCHEME: {"type": "http", "scheme": "bearer"}
        }
        spec["security"] = [{SECURITY_SCHEME: []}]
    return spec


def docs_page(spec: dict[str, Any]) -> str:
    """A self-contained HTML index of the API: nothing is loaded from the internet."""
    rows = []
    for path, methods in spec["paths"].items():
        for method, details in methods.items():
            codes = ", ".join(code for code in details["responses"] if code != "default")
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(details['summary'])}</td><td>{codes}</td></tr>"
            )
    title = html.escape(spec["info"]["title"])
    return (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{title} API</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2rem}td,th{padding:.3rem .8rem;"
        "text-align:left;border-bottom:1px solid #ddd}</style>"
        f"<h1>{title} {html.escape(spec['info']['version'])}</h1>"
        "<p>The full description is at <a href=/openapi.json>/openapi.json</a>.</p>"
        "<table><tr><th>Method</th><th>Path</th><th>What it does</th><th>Answers</th></tr>"
        + "".join(rows)
        + "</table></html>"
    )
