#!/usr/bin/env bash
# Runs the end-to-end suite (tests/e2e) inside a fresh local sandbox: the whole shop on free ports
# with its own data, created for this run and deleted afterwards, whether the tests pass or not.
# Exits with the tests' exit code (or 1 if they passed but the sandbox could not be deleted).
# Arguments are passed on to pytest:
#   .ci/e2e-in-sandbox.sh                 # every e2e test
#   .ci/e2e-in-sandbox.sh -k idempotency  # some of them
# PYTHON names the interpreter with microshop installed (default: .venv/bin/python, else python).
#
# With MICROSHOP_SANDBOX_SERVER (and MICROSHOP_SANDBOX_SERVER_TOKEN) set, the sandbox comes from
# that sandbox server instead, through its API with curl (.ci/sandbox-api.sh), for
# MICROSHOP_SANDBOX_DURATION (default 30m); MICROSHOP_SANDBOX_BLUEPRINT names a blueprint file.
# Then microshop need not be installed: only curl, and pytest and httpx for the suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
sandbox="e2e-$(date +%s)-$$"

api=.ci/sandbox-api.sh

show_logs() {
    echo "--- the sandbox's last log lines ---" >&2
    if [ -n "${MICROSHOP_SANDBOX_SERVER:-}" ]; then
        for service in db payment-service order-service api-gateway; do
            "$api" logs "$sandbox" "$service" 15 >&2 2>/dev/null || true
        done
    else
        "$PYTHON" -m microshop sandbox logs "$sandbox" --tail 60 >&2 2>/dev/null || true
    fi
}

delete_sandbox() {
    if [ -n "${MICROSHOP_SANDBOX_SERVER:-}" ]; then
        "$api" delete "$sandbox"
    else
        "$PYTHON" -m microshop sandbox delete "$sandbox" --if-exists
    fi
}

finish() {
    local status=$?
    if [ "$status" -ne 0 ]; then
        show_logs
    fi
    if ! delete_sandbox; then
        [ "$status" -ne 0 ] || status=1
    fi
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -n "${MICROSHOP_SANDBOX_SERVER:-}" ]; then
    "$api" create "$sandbox" "${MICROSHOP_SANDBOX_DURATION:-30m}" \
        "${MICROSHOP_SANDBOX_BLUEPRINT:-}" >/dev/null
    environment=$(mktemp)
    "$api" environment "$sandbox" >"$environment"
    set -a
    # shellcheck source=/dev/null
    . "$environment"
    set +a
    rm -f "$environment"
    echo "sandbox $sandbox is ready: $MICROSHOP_GATEWAY_URL"
    # Not tests/conftest.py, which needs microshop: the suite needs only pytest and httpx.
    "$PYTHON" -m pytest --confcutdir tests/e2e tests/e2e "$@"
else
    "$PYTHON" -m microshop sandbox create "$sandbox"
    "$PYTHON" -m microshop sandbox exec "$sandbox" -- "$PYTHON" -m pytest tests/e2e "$@"
fi
