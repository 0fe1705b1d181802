"""RFC 9457 problem details: the one shape every error of every service takes."""

from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from microshop.common.responses import ProblemResponse


class Problem(Exception):
    """An error answer: raise it anywhere in a request and the client gets problem+json."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        self.status = status
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = extensions
        super().__init__(detail or self.title)

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": "about:blank", "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return body


def validation_problem(error: ValidationError) -> Problem:
    """A 422 that lists every invalid field, so a client can fix them all at once."""
    errors = [
        {"field": ".".join(str(part) for part in item["loc"]) or "body", "message": item["msg"]}
        for item in error.errors(include_url=False, include_input=False)
    ]
    detail = "; ".join(f"{item['field']}: {item['message']}" for item in errors)
    return Problem(422, detail, title="Invalid request", errors=errors)


def problem_response(problem: Problem, request: Request) -> Response:
    return ProblemResponse(
        problem.to_dict(instance=request.url.path),
        status_code=problem.status,
        headers=problem.headers,
    )


async def handle_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc, request)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problem_response(Problem(exc.status_code, exc.detail, headers=exc.headers), request)


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    return problem_response(validation_problem(exc), request)


ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]

EXCEPTION_HANDLERS: dict[type[Exception], ExceptionHandler] = {
    Problem: handle_problem,
    HTTPException: handle_http_exception,
    ValidationError: handle_validation_error,
}
"""Errors every service answers; what none of them knows is a 500, answered by common/asgi.py."""
