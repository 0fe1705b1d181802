#!/usr/bin/env bash
# Runs the end-to-end suite (tests/e2e) inside a fresh local sandbox: the whole shop on free ports
# with its own data, created for this run and deleted afterwards, whether the tests pass or not.
# Exits with the tests' exit code (or 1 if they passed but the sandbox could not be deleted).
# Arguments are passed on to pytest:
#   ci/e2e-in-sandbox.sh                 # every e2e test
#   ci/e2e-in-sandbox.sh -k idempotency  # some of them
# PYTHON names the interpreter with microshop installed (default: .venv/bin/python, else python).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
sandbox="e2e-$(date +%s)-$$"

finish() {
    local status=$?
    if [ "$status" -ne 0 ]; then
        echo "--- the sandbox's last log lines ---" >&2
        "$PYTHON" -m microshop sandbox logs "$sandbox" --tail 60 >&2 2>/dev/null || true
    fi
    if ! "$PYTHON" -m microshop sandbox delete "$sandbox" --if-exists; then
        [ "$status" -ne 0 ] || status=1
    fi
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$PYTHON" -m microshop sandbox create "$sandbox"
"$PYTHON" -m microshop sandbox exec "$sandbox" -- "$PYTHON" -m pytest tests/e2e "$@"
