"""JavaScript's rules where the seed's code leans on them: `undefined`, property reads, `===`, JSON.

The seed's handlers read fields without checking them: a missing field is `undefined` (and then
left out of JSON), reading a field of `undefined` or `null` is a TypeError, and an uncaught error
in a callback ends the Node.js process.
"""

import json
import math
import os
import sys
from enum import Enum
from typing import Any, NoReturn


class Undefined(Enum):
    """JavaScript's `undefined`: what a missing field reads as; JSON.stringify leaves it out."""

    UNDEFINED = "undefined"


UNDEFINED = Undefined.UNDEFINED


def crash(error: str) -> NoReturn:
    """An uncaught error in a Node.js callback: printed on stderr, and the process exits 1."""
    print(f"Uncaught {error}", file=sys.stderr, flush=True)
    os._exit(1)


def read_property(value: Any, name: str) -> Any:
    """`value.name`: a TypeError on `undefined` and `null`, `undefined` on what lacks the field."""
    if value is None or value is UNDEFINED:
        kind = "null" if value is None else "undefined"
        crash(f"TypeError: Cannot read properties of {kind} (reading '{name}')")
    return value.get(name, UNDEFINED) if isinstance(value, dict) else UNDEFINED


def elements(value: Any, expression: str) -> list[Any]:
    """What `value.forEach` walks over: an array, or a TypeError for anything else."""
    if not isinstance(value, list):
        crash(f"TypeError: {expression}.forEach is not a function")
    return value


def strictly_equal(left: Any, right: Any) -> bool:
    """`left === right`: numbers by value (1 and 1.0 alike), strings by content, objects never."""
    if isinstance(left, dict | list) or isinstance(right, dict | list):
        return False  # two objects from two JSON.parse calls are never the same object
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    return type(left) is type(right) and left == right


def number(text: str) -> int | float | None:
    """A JSON number as JavaScript holds it: integral ones print without `.0`, overflow is null."""
    value = float(text)
    if not math.isfinite(value):
        return None  # Infinity, which JSON.stringify writes as null
    return int(value) if value.is_integer() and abs(value) < 1e21 else value


def refuse_constant(name: str) -> NoReturn:
    """Python reads NaN and Infinity as numbers; JSON.parse refuses them."""
    raise ValueError(f"Unexpected token {name[0]} in JSON")


def parse(text: str) -> Any:
    """JSON.parse: any JSON value; NaN and Infinity are not JSON."""
    return json.loads(text, parse_float=number, parse_int=number, parse_constant=refuse_constant)


def without_undefined(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: without_undefined(item) for key, item in value.items() if item is not UNDEFINED
        }
    if isinstance(value, list):
        return [None if item is UNDEFINED else without_undefined(item) for item in value]
    return value


def stringify(value: Any) -> str | None:
    """JSON.stringify: compact, UTF-8 as is, `undefined` fields left out; None for `undefined`."""
    if value is UNDEFINED:
        return None
    return json.dumps(without_undefined(value), separators=(",", ":"), ensure_ascii=False)
