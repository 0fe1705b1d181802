"""Reading what a client sends: bodies (bounded, JSON or form), query strings and path ids."""

import functools
import json
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request

from microshop.common.errors import Problem, validation_problem
from microshop.common.models import MAX_ORDER_ID

MAX_BODY_BYTES = 64 * 1024
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"

MAX_DIGITS = 19
"""As many as the largest id has."""

ModelT = TypeVar("ModelT", bound=BaseModel)


def _request_header(request: Request, name: bytes) -> str | None:
    """The first value of a header, by its lower-case name (the server lowers every name), read
    straight from the ASGI scope: each of Starlette's `Headers` lookups goes through several
    layers, and a request on the busy routes looks up three or four headers."""
    headers: list[tuple[bytes, bytes]] = request.scope["headers"]
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


async def read_bounded_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """Reads at most `limit` bytes; a larger declared length is refused before reading."""
    declared = _request_header(request, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"The request body must be at most {limit} bytes.")
    chunks = []
    size = 0
    more_body = True
    while more_body:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise Problem(400, "The client went away before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"The request body must be at most {limit} bytes.")
        chunks.append(chunk)
        more_body = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def media_type(request: Request) -> str:
    return (_request_header(request, b"content-type") or "").split(";", 1)[0].strip().lower()


@functools.cache
def _form_types(model: type[BaseModel]) -> dict[str, str]:
    """The fields of `model` that are JSON integers or booleans, whose text a form sends."""
    types = {}
    for name, field in model.model_json_schema()["properties"].items():
        kinds = {field.get("type")} | {choice.get("type") for choice in field.get("anyOf", ())}
        for kind in ("integer", "boolean"):
            if kind in kinds:
                types[name] = kind
    return types


def typed_form(model: type[BaseModel], fields: dict[str, str]) -> dict[str, Any]:
    """A form's text read as the JSON values it stands for, so that a form and a JSON body are
    held to the same rules: "12" is the integer 12 and "true" is true; other text stays text,
    which such a field refuses."""
    typed: dict[str, Any] = dict(fields)
    for name, kind in _form_types(model).items():
        text = fields.get(name)
        if text is None:
            continue
        if kind == "integer" and text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS:
            typed[name] = int(text)
        elif kind == "boolean" and text in ("true", "false"):
            typed[name] = text == "true"
    return typed


async def read_model(request: Request, model: type[ModelT]) -> ModelT:
    """The body as `model`: JSON (strictly typed) or a form (where every field is text)."""
    kind = media_type(request)
    if kind not in (JSON_TYPE, FORM_TYPE) and not kind.endswith("+json"):
        raise Problem(415, f"Send the body as {JSON_TYPE} or {FORM_TYPE}.")
    body = await read_bounded_body(request)
    try:
        if kind == FORM_TYPE:
            try:
                fields = dict(
                    parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
                )
            except UnicodeDecodeError:
                raise Problem(400, "The form body is not valid UTF-8.") from None
            return model.model_validate(typed_form(model, fields))
        return model.model_validate_json(body)
    except ValidationError as error:
        if error.errors()[0]["type"] == "json_invalid":
            raise Problem(400, f"The body is not valid JSON: {error.errors()[0]['msg']}.") from None
        raise validation_problem(error) from None


def read_query(request: Request, model: type[ModelT]) -> ModelT:
    """The query string as `model`; a parameter it does not name is refused, not ignored, so that
    a misspelt filter (`?costumer=Ann`) cannot pass for an answer to it."""
    parameters = dict(request.query_params)
    unknown = [name for name in parameters if name not in model.model_fields]
    if unknown:
        names = ", ".join(json.dumps(name) for name in unknown)
        taken = ", ".join(model.model_fields)
        raise Problem(
            400,
            f"Unknown query parameter {names}: this operation takes {taken}.",
            title="Unknown query parameter",
            errors=[{"field": name, "message": "Unknown query parameter"} for name in unknown],
        )
    return model.model_validate(parameters)


class OrderIdConvertor(Convertor[int]):
    """`{order_id:order_id}` in a path: at most 19 digits, as many as the largest id has. A longer
    number is no route, so 404, rather than a server error (Python turns at most 4,300 digits into
    an int)."""

    regex = f"[0-9]{{1,{MAX_DIGITS}}}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("order_id", OrderIdConvertor())


def order_id_from(request: Request) -> int:
    """The `{order_id}` of the path; ids the database could never hold are simply not found."""
    order_id = int(request.path_params["order_id"])
    if not 1 <= order_id <= MAX_ORDER_ID:
        raise order_not_found(order_id)
    return order_id


def order_not_found(order_id: int) -> Problem:
    return Problem(404, f"Order {order_id} does not exist.")


IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_FIELD = IDEMPOTENCY_HEADER.lower().encode("latin-1")
MAX_IDEMPOTENCY_KEY_LENGTH = 200


def idempotency_key_from(request: Request) -> str | None:
    """The client's `Idempotency-Key`, if it sent a usable one; an empty header counts as none."""
    key = (_request_header(request, _IDEMPOTENCY_FIELD) or "").strip(" \t")
    if not key:
        return None
    # ASCII only: other bytes in a header have no agreed encoding, and each hop would read
    # them differently.
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not (key.isascii() and key.isprintable()):
        raise Problem(
            422,
            f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII "
            "characters.",
        )
    return key
