"""JSON responses rendered by orjson, the fastest encoder we measured."""

from typing import Any

import orjson
from starlette.responses import Response


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ProblemResponse(JSONResponse):
    media_type = "application/problem+json"
