"""Hooks for the schemathesis runs of tests/generated_inputs.py (loaded by SCHEMATHESIS_HOOKS)."""

import hashlib
import re
from typing import Any

import schemathesis

from microshop.common.inputs import IDEMPOTENCY_HEADER
from microshop.common.openapi import IDEMPOTENCY_KEY_SCHEMA

USABLE_KEY = re.compile(IDEMPOTENCY_KEY_SCHEMA["pattern"])


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: Any) -> None:
    """Makes a usable `Idempotency-Key` stand for one body, as a client's key does.

    A key sent again with another body is refused with 422, as the schema says; but whether a
    key was used before is state that generated requests cannot see, so schemathesis, which
    draws a few short keys over and over, would count each such 422 as a valid request
    refused. Keys the service must refuse are sent as they were drawn.
    """
    key = (case.headers or {}).get(IDEMPOTENCY_HEADER)
    if isinstance(key, str) and key.strip(" \t") and USABLE_KEY.search(key):
        body = f"{key}\n{case.media_type}\n{case.body!r}".encode()
        case.headers[IDEMPOTENCY_HEADER] = hashlib.sha256(body).hexdigest()
