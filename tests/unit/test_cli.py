"""The command line: bad configuration is a clear message and a non-zero exit."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*arguments: str, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "microshop", *arguments],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **environment},
    )


def test_bad_setting_names_the_variable_and_exits_2() -> None:
    result = run_cli("serve", "db", MICROSHOP_PORT="not-a-port")
    assert result.returncode == 2
    assert "MICROSHOP_PORT" in result.stderr


def test_bad_url_is_refused() -> None:
    result = run_cli("serve", "order-service", MICROSHOP_DB_SERVICE_URL="db:3004 nope")
    assert result.returncode == 2
    assert "MICROSHOP_DB_SERVICE_URL" in result.stderr


def test_unknown_service_is_refused() -> None:
    result = run_cli("serve", "cart")
    assert result.returncode == 2
    assert "unknown service" in result.stderr


def test_a_sqlite_db_service_never_loads_sqlalchemy(tmp_path: Path) -> None:
    """Migrations run in their own short process: the server stays 30 MB smaller."""
    program = (
        "import asyncio, sys; from microshop.common.settings import Settings;"
        "from microshop.services.db.storage import open_repository;"
        f"repository = open_repository(Settings(data_dir={str(tmp_path)!r}));"
        "asyncio.run(repository.migrate()); import microshop.cli;"
        "print(sorted({name.split('.')[0] for name in sys.modules} & {'sqlalchemy', 'alembic'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
    assert (tmp_path / "microshop.sqlite3").exists()


def test_bad_log_level_is_refused() -> None:
    result = run_cli("serve", "db", MICROSHOP_LOG_LEVEL="verbose")
    assert result.returncode == 2
    assert "MICROSHOP_LOG_LEVEL" in result.stderr


def test_flags_have_no_type_placeholder_in_help() -> None:
    result = run_cli("up", "--help")
    assert result.returncode == 0
    assert "--help" in result.stdout
    assert "<bool>" not in result.stdout


def test_a_bad_option_is_named_as_typed() -> None:
    result = run_cli("up", "--database", "mysql://x")
    assert result.returncode == 2
    assert "--database: must start with postgresql://" in result.stderr
    assert "MICROSHOP_DATABASE_URL" not in result.stderr


@pytest.mark.parametrize("token", ["", " ", "short"])
def test_an_empty_or_short_internal_token_is_refused_at_start_up(token: str) -> None:
    """`Authorization: Bearer ` with nothing after it once passed an empty token's check."""
    result = run_cli("serve", "db", MICROSHOP_INTERNAL_TOKEN=token)
    assert result.returncode == 2
    assert "MICROSHOP_INTERNAL_TOKEN: must be at least 16 characters" in result.stderr
    if token.strip():
        assert token not in result.stderr  # a secret, even a bad one, is never printed


@pytest.mark.parametrize("token", ["", " ", "short"])
def test_an_empty_or_short_service_token_is_refused_at_start_up(token: str) -> None:
    result = run_cli("serve", "payment-service", MICROSHOP_SERVICE_TOKEN=token)
    assert result.returncode == 2
    assert "MICROSHOP_SERVICE_TOKEN: must be at least 16 characters" in result.stderr
    if token.strip():
        assert token not in result.stderr


@pytest.mark.parametrize(
    "digests",
    [
        "order-service=",
        "order-service=" + "ab" * 31,
        "shop=" + "ab" * 32,
        "order-service=" + "zz" * 32,
        "a-token-pasted-where-digests-go",
    ],
    ids=["no-digest", "short-digest", "unknown-service", "not-hex", "token"],
)
def test_bad_caller_digests_are_refused_at_start_up(digests: str) -> None:
    result = run_cli("serve", "db", MICROSHOP_CALLER_DIGESTS=digests)
    assert result.returncode == 2
    assert "MICROSHOP_CALLER_DIGESTS: must be SERVICE=SHA256 pairs" in result.stderr
    assert digests not in result.stderr  # it may be a token set in the wrong variable


def test_the_shared_token_and_identities_are_not_combined() -> None:
    """With both, the shared token would still open every route that identities close."""
    result = run_cli(
        "serve",
        "db",
        MICROSHOP_INTERNAL_TOKEN="a" * 32,
        MICROSHOP_CALLER_DIGESTS="payment-service=" + "ab" * 32,
    )
    assert result.returncode == 2
    assert "cannot be combined with MICROSHOP_SERVICE_TOKEN" in result.stderr
    assert "a" * 32 not in result.stderr


def test_identities_are_one_file_per_service_holding_only_its_own_token(tmp_path: Path) -> None:
    result = run_cli("identities", str(tmp_path))

    assert result.returncode == 0, result.stderr
    files = {path.stem: path for path in tmp_path.iterdir()}
    assert sorted(files) == ["api-gateway", "db", "order-service", "payment-service"]
    variables = {
        name: dict(line.split("=", 1) for line in path.read_text().splitlines())
        for name, path in files.items()
    }
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in files.values())
    assert "MICROSHOP_SERVICE_TOKEN" not in variables["db"]  # db calls no one
    assert "MICROSHOP_CALLER_DIGESTS" not in variables["api-gateway"]  # no one calls the gateway
    tokens = {
        name: found["MICROSHOP_SERVICE_TOKEN"] for name, found in variables.items() if name != "db"
    }
    for name, found in variables.items():
        assert not [
            token for caller, token in tokens.items() if caller != name and token in str(found)
        ]
    assert "kubectl create secret generic microshop-identity-db" in result.stdout
    assert not [token for token in tokens.values() if token in result.stdout]


def test_identities_never_overwrite_earlier_ones(tmp_path: Path) -> None:
    assert run_cli("identities", str(tmp_path)).returncode == 0
    before = {path.name: path.read_text() for path in tmp_path.iterdir()}

    again = run_cli("identities", str(tmp_path))

    assert again.returncode == 1
    assert "never overwritten" in again.stderr
    assert {path.name: path.read_text() for path in tmp_path.iterdir()} == before


def test_a_service_process_does_not_hold_the_load_generators() -> None:
    """`microshop serve` keeps whatever the CLI imports: the load generators and their aiohttp
    (10 MB) are imported by `bench` and `load` only."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, microshop.cli; print(sorted({'aiohttp', 'microshop.bench', "
            "'microshop.load'} & sys.modules.keys()))",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"
