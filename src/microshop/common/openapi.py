"""OpenAPI 3.1 built from the routes' pydantic models, so it cannot drift from the code."""

import html
import re
from collections.abc import Callable, Sequence
from typing import Any, is_typeddict

from pydantic import BaseModel, TypeAdapter
from starlette.convertors import Convertor, IntegerConvertor
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "required": ["title", "status"],
}
REF_TEMPLATE = "#/components/schemas/{model}"
CONVERTOR = re.compile(r":\w+}")


class ApiRoute(Route):
    """A Starlette route that also describes itself for the OpenAPI document."""

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
        headers: Sequence[str] = (),
    ) -> None:
        super().__init__(path, endpoint, methods=list(methods))
        self.summary = summary
        self.body = body
        self.query = query
        self.responses = responses or {200: None}
        self.header_names = headers
        self.allowed_methods = set(self.methods or ())
        """Every method its path answers, across the routes that share it: what a 405 lists."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette's own 405 lists only this route's methods, not those of its path's others.
        if self.methods and scope["method"] not in self.methods:
            allow = ", ".join(sorted(self.allowed_methods))
            raise HTTPException(status_code=405, headers={"Allow": allow})
        await self.app(scope, receive, send)


def share_allowed_methods(routes: Sequence[BaseRoute]) -> None:
    """Gives each `ApiRoute` the methods of every route on its path."""
    by_path: dict[str, set[str]] = {}
    api_routes = [route for route in routes if isinstance(route, ApiRoute)]
    for route in api_routes:
        by_path.setdefault(route.path, set()).update(route.methods or ())
    for route in api_routes:
        route.allowed_methods = by_path[route.path]


def schema_of(annotation: Any, components: dict[str, Any]) -> dict[str, Any]:
    schema = TypeAdapter(annotation).json_schema(ref_template=REF_TEMPLATE, mode="serialization")
    components.update(schema.pop("$defs", {}))
    if is_typeddict(annotation) or (
        isinstance(annotation, type) and issubclass(annotation, BaseModel)
    ):
        components[annotation.__name__] = schema
        return {"$ref": REF_TEMPLATE.format(model=annotation.__name__)}
    return schema


def path_schema(convertor: Convertor[Any]) -> dict[str, Any]:
    if isinstance(convertor, IntegerConvertor):
        return {"type": "integer", "minimum": 1}
    return {"type": "string"}


def operation(route: ApiRoute, components: dict[str, Any]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": path_schema(convertor)}
        for name, convertor in route.param_convertors.items()
    ]
    if route.query is not None:
        query_schema = route.query.model_json_schema(ref_template=REF_TEMPLATE)
        components.update(query_schema.pop("$defs", {}))
        for name, schema in query_schema["properties"].items():
            parameters.append({"name": name, "in": "query", "required": False, "schema": schema})
    parameters.extend(
        {
            "name": name,
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": 200},
        }
        for name in route.header_names
    )
    result: dict[str, Any] = {"summary": route.summary, "parameters": parameters, "responses": {}}
    if route.body is not None:
        body_schema = schema_of(route.body, components)
        result["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": body_schema},
                "application/x-www-form-urlencoded": {"schema": body_schema},
            },
        }
    for status, model in route.responses.items():
        answer: dict[str, Any] = {"description": str(status)}
        if model is not None:
            answer["content"] = {"application/json": {"schema": schema_of(model, components)}}
        result["responses"][str(status)] = answer
    result["responses"]["default"] = {
        "description": "An error, as RFC 9457 problem details.",
        "content": {
            "application/problem+json": {"schema": {"$ref": REF_TEMPLATE.format(model="Problem")}}
        },
    }
    return result


def build_openapi(title: str, version: str, routes: Sequence[BaseRoute]) -> dict[str, Any]:
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
            paths.setdefault(path, {})[method.lower()] = operation(route, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": components},
    }


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
