"""Per-service identities: each calling service's own token, and the SHA-256 digests of those
tokens that the callees keep to recognise it, so that a callee's environment never holds a
credential that would let someone call as another service."""

import hashlib
import secrets
from collections.abc import Mapping

from microshop.services import SERVICES, callers_of

SERVICE_TOKEN_VARIABLE = "MICROSHOP_SERVICE_TOKEN"
CALLER_DIGESTS_VARIABLE = "MICROSHOP_CALLER_DIGESTS"


def token_digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def calling_services() -> list[str]:
    """The services that call another one, in start-up order: those that need a token."""
    callers = frozenset().union(*(callers_of(name) for name in SERVICES))
    return [name for name in SERVICES if name in callers]


def new_tokens() -> dict[str, str]:
    """A fresh random token for every calling service."""
    return {name: secrets.token_hex(32) for name in calling_services()}


def identity_environments(tokens: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Each service's variables: its own token if it calls another service, and if another calls
    it, the digests of every calling service's token. Knowing all of them, a callee answers a
    service on a route that is not its own with 403 rather than taking it for a stranger (401)."""
    digests = ",".join(
        f"{name}={token_digest(token.encode()).hex()}" for name, token in sorted(tokens.items())
    )
    environments: dict[str, dict[str, str]] = {}
    for name in SERVICES:
        environment = {}
        if name in tokens:
            environment[SERVICE_TOKEN_VARIABLE] = tokens[name]
        if callers_of(name):
            environment[CALLER_DIGESTS_VARIABLE] = digests
        environments[name] = environment
    return environments
