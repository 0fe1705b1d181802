"""What every seed service got from Express and body-parser around its own two routes.

Routes match case-insensitively, with or without a trailing slash, whatever the query string;
any other path or method is a 404 HTML page "Cannot GET /path". Bodies are parsed before
routing: JSON (objects and arrays only) and extended urlencoded forms, where every value is a
string; any other body reads as `{}`; a body that does not parse is a 400 HTML page, one over
100 KiB a 413. Handlers answer `res.json(value)`: always 200 `application/json; charset=utf-8`.
"""

import html
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web

from tests.seed import javascript

Handler = Callable[[Any], Awaitable[Any]]
"""Takes the parsed body, returns the value the seed passed to `res.json`."""
Routes = dict[tuple[str, str], Handler]
"""Handlers by method and lower-case path, e.g. `("POST", "/orders")`."""

BODY_LIMIT_BYTES = 100 * 1024
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"
IDLE_CONNECTION_SECONDS = 5.0
"""Node.js closes an idle keep-alive connection after 5 s; its callers must cope."""


class UnreadableBody(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def html_page(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """Express's error page: the message inside `<pre>`, as HTML."""
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Error</title>\n</head>\n<body>\n<pre>{html.escape(message)}</pre>\n</body>\n</html>\n"
    )
    return web.Response(
        status=status,
        text=page,
        content_type="text/html",
        headers={
            "Content-Security-Policy": "default-src 'none'",
            "X-Content-Type-Options": "nosniff",
            **(headers or {}),
        },
    )


def json_answer(value: Any) -> web.Response:
    """`res.json(value)`; `res.json(undefined)` is an empty body."""
    body = (javascript.stringify(value) or "").encode()
    return web.Response(body=body, headers={"Content-Type": f"{JSON_TYPE}; charset=utf-8"})


def insert_field(target: dict[str, Any], keys: list[str], value: str) -> None:
    """One `a[b][]=value` pair into the form: `[]` (or an index) appends, a name nests."""
    key, *inner = keys
    if not inner:
        if key in target:
            previous = target[key]
            target[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            target[key] = value
    elif inner == [""] or (len(inner) == 1 and inner[0].isdigit()):
        previous = target.get(key, [])
        target[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
    else:
        nested = target.setdefault(key, {})
        if isinstance(nested, dict):
            insert_field(nested, inner, value)


def parse_form(text: str) -> dict[str, Any]:
    """body-parser's extended urlencoded: repeated names make lists, `a[b]=c` nests, all strings."""
    form: dict[str, Any] = {}
    for pair in filter(None, text.split("&")):
        raw_key, _, raw_value = pair.partition("=")
        key = unquote_plus(raw_key)
        name, bracket, inner = key.partition("[")
        keys = [name, *re.findall(r"\[([^\]]*)\]", bracket + inner)] if name else [key]
        insert_field(form, keys, unquote_plus(raw_value))
    return form


async def read_body(request: web.Request) -> Any:
    if request.content_type not in (JSON_TYPE, FORM_TYPE) or not request.body_exists:
        return {}
    raw = await request.read()
    if len(raw) > BODY_LIMIT_BYTES:
        raise UnreadableBody(413, "PayloadTooLargeError: request entity too large")
    text = raw.decode("utf-8", errors="replace")
    if request.content_type == FORM_TYPE:
        return parse_form(text)
    if not text:
        return {}
    first = text.lstrip(" \t\r\n")[:1]
    if first not in ("{", "["):  # body-parser's strict mode: an object or an array
        raise UnreadableBody(400, f"SyntaxError: Unexpected token {first!r} in JSON at position 0")
    try:
        return javascript.parse(text)
    except ValueError as error:
        raise UnreadableBody(400, f"SyntaxError: {error}") from None


def route_path(path: str) -> str:
    """Express's loose matching: `/Orders/` is `/orders`."""
    return path.lower().removesuffix("/") or "/"


def application(routes: Routes) -> web.Application:
    """One Express app: the body parsers, then `routes`, then the 404 page."""
    paths = {path for _, path in routes}

    async def dispatch(request: web.Request) -> web.StreamResponse:
        try:
            body = await read_body(request)
        except UnreadableBody as error:
            return html_page(error.status, str(error))
        path = route_path(request.rel_url.raw_path)
        method = "GET" if request.method == "HEAD" else request.method
        handler = routes.get((method, path))
        if handler is not None:
            return json_answer(await handler(body))
        if method == "OPTIONS" and path in paths:
            allowed = [m for m, p in routes if p == path] + ["HEAD"]  # Express's order
            return web.Response(
                text=",".join(allowed),
                content_type="text/html",
                headers={"Allow": ",".join(allowed)},
            )
        return html_page(404, f"Cannot {request.method} {request.rel_url.raw_path}")

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{path:.*}", dispatch)
    return app


def serve(app: web.Application, port: int) -> None:
    """`app.listen(port)`, on loopback only: the stand-ins are for tests on a shared machine.
    SIGTERM ends the process at once, as it ends Node.js, whatever requests are still waiting."""
    web.run_app(
        app,
        handle_signals=False,
        host="127.0.0.1",
        port=port,
        print=None,
        access_log=None,
        keepalive_timeout=IDLE_CONNECTION_SECONDS,
    )
