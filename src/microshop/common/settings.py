"""Configuration from `MICROSHOP_*` environment variables (12-factor): never from code edits."""

import os
import re
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, HttpUrl, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from microshop.services import SERVICES


class Storage(StrEnum):
    SQLITE = "sqlite"
    MEMORY = "memory"
    POSTGRESQL = "postgresql"


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


def default_data_dir() -> Path:
    """Where sqlite data lives unless told otherwise: the user's data directory (XDG)."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "microshop"


POSTGRESQL_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")

MIN_TOKEN_LENGTH = 16
SHA256_HEX = re.compile(r"[0-9a-f]{64}")

PositiveSeconds = Annotated[float, Field(gt=0, le=600)]


class Settings(BaseSettings):
    """Everything a service can be told at start-up; each field is `MICROSHOP_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="MICROSHOP_", extra="ignore", frozen=True)

    host: str = "0.0.0.0"
    port: Annotated[int | None, Field(ge=1, le=65535)] = None

    order_service_url: HttpUrl = HttpUrl("http://order-service:3002")
    payment_service_url: HttpUrl = HttpUrl("http://payment-service:3001")
    db_service_url: HttpUrl = HttpUrl("http://db:3004")

    storage: Storage = Storage.SQLITE
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: SecretStr | None = None
    """`postgresql://user:password@host:5432/name`: setting it selects PostgreSQL."""

    decline_above: Annotated[Decimal, Field(ge=0)] = Decimal(10_000)

    request_timeout: PositiveSeconds = 2.0
    connect_timeout: PositiveSeconds = 0.5
    retries: Annotated[int, Field(ge=0, le=5)] = 2
    shutdown_timeout: Annotated[int, Field(ge=1, le=600)] = 10
    drain_seconds: Annotated[float, Field(ge=0, le=600)] = 0.0
    """After SIGTERM: seconds of not-ready serving (with `Connection: close`) before stopping."""
    max_header_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = 16 * 1024
    """The most bytes a request's line and headers may take: more is answered `431`."""
    max_headers: Annotated[int, Field(ge=1, le=10_000)] = 100
    """The most header fields a request may have: more is answered `431`."""
    header_timeout: PositiveSeconds = 10.0
    """Seconds a client has to send a request's line and headers (from connecting, or from the
    request's first byte on a kept-alive connection): then `408`, and the connection is closed."""
    body_timeout: PositiveSeconds = 30.0
    """Seconds a client has to send a request's body once its headers arrived: then `408`."""
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    """Connections one service process keeps open at most: a request on any further one is
    answered `503` with `Retry-After`, and that connection closed."""
    settle_interval: PositiveSeconds = 5.0
    """Seconds between order-service's sweeps for pending orders; backs off while they fail."""

    payment_fault_latency: Annotated[float, Field(ge=0, le=600)] = 0.0
    """Fault injection for demos and tests: extra seconds before payment-service answers."""
    payment_fault_failure_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Fault injection for demos and tests: the share of payment requests answered 503."""

    internal_token: SecretStr | None = None
    """One token shared by every service (the weaker mode): when set, internal services accept
    only calls that present it as a bearer token, and every service sends it."""
    service_token: SecretStr | None = None
    """This service's own credential (per-service identities), sent on every call it makes."""
    caller_digests: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    """`SERVICE=SHA256,...`: the SHA-256 (hex) of each caller's service token. An internal service
    with this or a service token set knows its callers by them, and refuses everyone else."""

    log_format: LogFormat = LogFormat.AUTO
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def upper_case_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("internal_token", "service_token")
    @classmethod
    def long_enough_to_guess_hard(cls, value: SecretStr | None) -> SecretStr | None:
        """An empty token would let `Authorization: Bearer ` through: refuse it at start-up."""
        if value is not None and len(value.get_secret_value().strip()) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"must be at least {MIN_TOKEN_LENGTH} characters (`openssl rand -hex 32` makes "
                "one), or unset"
            )
        return value

    @field_validator("caller_digests", mode="before")
    @classmethod
    def digests_by_service(cls, value: Any) -> Any:
        """`api-gateway=<hex>,order-service=<hex>`: one line of text, as an environment holds it."""
        if not isinstance(value, str):
            return value
        digests: dict[str, str] = {}
        for entry in filter(None, (part.strip() for part in value.split(","))):
            name, _, digest = entry.partition("=")
            name, digest = name.strip(), digest.strip().lower()
            if name not in SERVICES or not SHA256_HEX.fullmatch(digest):
                raise ValueError(
                    "must be SERVICE=SHA256 pairs separated by commas, each SERVICE one of "
                    f"{', '.join(SERVICES)} and each SHA256 64 hex digits "
                    "(`microshop identities` makes them)"
                )
            digests[name] = digest
        return digests

    @model_validator(mode="after")
    def one_kind_of_internal_auth(self) -> "Settings":
        if self.internal_token is not None and (self.service_token or self.caller_digests):
            raise ValueError(
                "MICROSHOP_INTERNAL_TOKEN (one token shared by every service) cannot be combined "
                "with MICROSHOP_SERVICE_TOKEN or MICROSHOP_CALLER_DIGESTS (one identity per "
                "service): set one or the other"
            )
        return self

    @field_validator("database_url")
    @classmethod
    def postgresql_only(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().split("://", 1)[0] not in (
            POSTGRESQL_SCHEMES
        ):
            raise ValueError("must start with postgresql://")
        return value

    @model_validator(mode="after")
    def database_url_selects_postgresql(self) -> "Settings":
        if self.database_url is not None:
            object.__setattr__(self, "storage", Storage.POSTGRESQL)
        elif self.storage is Storage.POSTGRESQL:
            raise ValueError("MICROSHOP_STORAGE=postgresql needs MICROSHOP_DATABASE_URL")
        return self


class ConfigurationError(Exception):
    """Raised with a message a person can act on when the environment holds bad settings."""


def load_settings(flags: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """The settings from the environment and `overrides`; `flags` names the command-line options
    that gave some of the overrides, so that an error names what the person typed."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        lines = []
        for problem in error.errors(include_url=False):
            field = ".".join(str(part) for part in problem["loc"])
            message = problem["msg"].removeprefix("Value error, ")
            name = (flags or {}).get(field) or f"MICROSHOP_{field.upper()}"
            if not field:  # a rule across fields: its message names the variables
                lines.append(message)
            elif any(secret in field for secret in ("database_url", "token", "digests")):
                # never print secrets, nor what may be a token set in the wrong variable
                lines.append(f"{name}: {message}")
            else:
                lines.append(f"{name}={problem.get('input')!r}: {message}")
        raise ConfigurationError("bad configuration:\n  " + "\n  ".join(lines)) from None
