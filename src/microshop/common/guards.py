"""Who may call a service: checked for every request before its route runs.

A guard looks at the request's scope and answers the `Problem` that refuses it, or None to let it
by. Internal services carry one (the shared token, or per-service identities); the sandbox server
carries its own token's.
"""

import hmac
from collections.abc import Callable, Mapping

from starlette.types import Scope

from microshop.common.errors import Problem
from microshop.common.faults import ADMIN_PATH
from microshop.common.identities import token_digest

Guard = Callable[[Scope], Problem | None]

QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Probes and scrapes: not logged when they succeed, and open without the internal token."""

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_INTERNAL_REFUSAL = "This service accepts only calls from the shop's own services."
_DESCRIPTION_PATHS = frozenset({"/openapi.json", "/docs"})
_SELF_GUARDED_PATHS = QUIET_PATHS | {ADMIN_PATH}
"""Let by: probes and scrapes are open, and `/admin/faults` decides who may use it itself
(common/faults.py)."""


def _authorization(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bytes(value)
    return b""


class BearerTokenGuard:
    """Refuses calls without `Authorization: Bearer <token>`, except to `open_paths`."""

    def __init__(self, token: str, open_paths: frozenset[str], refusal: str) -> None:
        self._expected = f"Bearer {token}".encode()
        self._open_paths = open_paths
        self._refusal = refusal

    def __call__(self, scope: Scope) -> Problem | None:
        if scope["path"] in self._open_paths:
            return None
        if hmac.compare_digest(_authorization(scope), self._expected):
            return None
        return Problem(401, self._refusal, headers=_CHALLENGE)


def internal_token_guard(token: str) -> BearerTokenGuard:
    """The token shared by all services: probes and metric scrapes stay open."""
    return BearerTokenGuard(token, _SELF_GUARDED_PATHS, _INTERNAL_REFUSAL)


class ServiceIdentityGuard:
    """Per-service identities: knows each caller by the SHA-256 digest of the bearer token it
    presents (so this process holds no caller's credential) and lets it call only the routes that
    `grants` gives it. Unknown or missing credentials are 401; a known caller on a route that is
    not its own is 403. Probes and metric scrapes stay open."""

    def __init__(
        self,
        service: str,
        caller_digests: Mapping[str, bytes],
        grants: Mapping[tuple[str, str], frozenset[str]],
    ) -> None:
        self._service = service
        self._caller_digests = dict(caller_digests)
        self._grants = grants

    def _caller(self, scope: Scope) -> str | None:
        scheme, _, token = _authorization(scope).partition(b" ")
        if scheme != b"Bearer" or not token:
            return None
        digest = token_digest(token)
        caller = None
        for name, expected in self._caller_digests.items():  # every one compared: constant time
            if hmac.compare_digest(digest, expected):
                caller = name
        return caller

    def _permitted(self, caller: str, method: str, path: str) -> bool:
        method = "GET" if method == "HEAD" else method
        if method == "GET" and path in _DESCRIPTION_PATHS:
            return True
        resource = "/" + path.split("/", 2)[1]
        return caller in self._grants.get((method, resource), frozenset())

    def __call__(self, scope: Scope) -> Problem | None:
        if scope["path"] in _SELF_GUARDED_PATHS:
            return None
        caller = self._caller(scope)
        if caller is None:
            return Problem(401, _INTERNAL_REFUSAL, headers=_CHALLENGE)
        method, path = scope["method"], scope["path"]
        if not self._permitted(caller, method, path):
            return Problem(403, f"{caller} may not call {method} {path} of {self._service}.")
        return None
