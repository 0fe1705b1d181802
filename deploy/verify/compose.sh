#!/usr/bin/env bash
# Runs the shop from compose.yaml as `docker compose up` would, with podman-compose (the registries
# that Docker's own compose plugin would come from are out of reach here):
#   - builds the image as image.sh does (common.sh; image.sh's cached layers make it quick) and
#     loads it, under the name compose.yaml gives it, into a Podman store that lives only for this
#     run;
#   - `podman-compose up`: the four services on a network of their own, reaching each other by
#     their compose names, db's data on a named volume, the gateway published on a free port;
#   - every service's healthcheck passes, and an order placed through the gateway is paid;
#   - `podman-compose stop`: every container stops on SIGTERM with exit code 0; then `down`.
# The observability and load profiles need images from registries; tests/deploy/test_compose.py
# checks them offline. Any failure exits non-zero with the failing step and the containers' logs.
#
# Needs root, podman (with netavark and aardvark-dns), catatonit, dockerd and curl.
#   deploy/verify/compose.sh
# PYTHON names the interpreter with podman-compose (default: .venv/bin/python, else python3).
set -euo pipefail
# shellcheck source=deploy/verify/common.sh
source "$(dirname "$0")/common.sh"
cd "$REPOSITORY"

SERVICES=(db payment-service order-service api-gateway)
PROJECT="microshop-verify-$$"
STARTED=

compose() {
    "$COMPOSE" --podman-path "$(podman_command)" --project-name "$PROJECT" --file compose.yaml "$@"
}

clean_up() {
    local status=$1
    if [ -n "$STARTED" ]; then
        if [ "$status" -ne 0 ]; then show_container_logs; fi
        compose down --volumes >/dev/null 2>&1
    fi
    if [ -d "$RUN_DIRECTORY/podman" ]; then
        podman rm --all --force >/dev/null 2>&1
        podman volume rm --all --force >/dev/null 2>&1
        podman network prune --force >/dev/null 2>&1
        podman rmi --all --force >/dev/null 2>&1
        findmnt --list --noheadings --output TARGET | grep "^$RUN_DIRECTORY/" | sort -r \
            | xargs --no-run-if-empty umount 2>/dev/null
    fi
}

container() { echo "${PROJECT}_$1_1"; }

show_container_logs() {
    local service
    printf '\n--- containers ---\n' >&2
    podman ps --all --format '{{.Names}}\t{{.Status}}' >&2
    for service in "${SERVICES[@]}"; do
        printf '\n--- %s: last log lines ---\n' "$service" >&2
        podman logs --tail 60 "$(container "$service")" >&2
    done
}

still_running() {
    [ "$(podman inspect --format '{{.State.Running}}' "$(container "$1")")" = true ] \
        || fail "$1 exited"
}

healthy() {
    local service=$1
    for _ in $(seq 30); do
        if podman healthcheck run "$(container "$service")" >/dev/null 2>&1; then return; fi
        still_running "$service"
        sleep 1
    done
    fail "the healthcheck of $service does not pass"
}

COMPOSE=$(dirname "$PYTHON")/podman-compose
[ -x "$COMPOSE" ] || COMPOSE=$(command -v podman-compose) \
    || fail "podman-compose not found (pip install podman-compose; it is in the dev extra)"
command -v podman >/dev/null || fail "podman not found (Debian: apt-get install podman catatonit)"
COMPOSE_IMAGE=$("$PYTHON" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["x-microshop"]["image"])' compose.yaml) \
    || fail "compose.yaml names no image for the shop"

start_docker_engine
build_image
step "loading $IMAGE into a Podman store that lives for this run only, as $COMPOSE_IMAGE"
mkdir -p "$RUN_DIRECTORY/podman"
docker save "$IMAGE" | podman load --quiet >/dev/null
stop_docker_engine
podman tag "$IMAGE" "$COMPOSE_IMAGE"

GATEWAY_PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
GATEWAY="http://127.0.0.1:$GATEWAY_PORT"
step "podman-compose up (the gateway published on $GATEWAY)"
STARTED=1
MICROSHOP_GATEWAY_PORT=$GATEWAY_PORT compose up --detach --no-build >"$RUN_DIRECTORY/up.log" 2>&1 \
    || { tail -40 "$RUN_DIRECTORY/up.log" >&2; fail "podman-compose up failed"; }
wait_until_ready api-gateway "$GATEWAY" still_running
for service in "${SERVICES[@]}"; do healthy "$service"; done
podman ps --format '{{.Names}}\t{{.Status}}'

step "an order through the published gateway"
order=$(curl --silent --fail --show-error --max-time 10 -H 'Content-Type: application/json' \
    -d '{"item": "mug", "price": 12, "customer": "compose-check"}' "$GATEWAY/orders") \
    || fail "placing an order through the gateway failed"
echo "$order"
"$PYTHON" -c 'import json, sys; assert json.loads(sys.argv[1])["order"]["status"] == "paid"' "$order" \
    || fail "the order was not paid"

step "podman-compose stop: SIGTERM stops every service cleanly"
compose stop >/dev/null 2>&1 || fail "podman-compose stop failed"
for service in "${SERVICES[@]}"; do
    code=$(podman inspect --format '{{.State.ExitCode}}' "$(container "$service")")
    [ "$code" = 0 ] || fail "$service exited with code $code on SIGTERM"
done
compose down --volumes >/dev/null 2>&1 || fail "podman-compose down failed"
STARTED=

step "the shop ran from compose.yaml: healthy, serving orders, stopped cleanly"
