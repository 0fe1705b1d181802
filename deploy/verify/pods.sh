#!/usr/bin/env bash
# Runs the rendered Kubernetes manifests as real pods with Podman, the closest thing to a cluster a
# single machine without one allows:
#   - renders the local overlay (kubectl kustomize), builds the image (common.sh) and loads
#     it into a private Podman store that lives only for this run;
#   - plays the Deployments with `podman kube play --network host`, after the few changes a host
#     without a cluster forces (for_podman.py says which);
#   - checks that all four pods run with the manifest's securityContext and limits (check_pods.py),
#     that every service answers /healthz and /readyz, and places an order through the gateway pod;
#   - stops the pods (SIGTERM, exit code 0 expected), then `podman kube down`.
# Any failure exits non-zero with the failing step and the pods' logs.
#
# Needs root, podman, catatonit, dockerd, kubectl and curl, and the manifests' ports (3000, 3001,
# 3002, 3004) free on 127.0.0.1.
#   deploy/verify/pods.sh
#   MANIFEST=rendered.yaml deploy/verify/pods.sh   # manifests rendered (and changed) elsewhere
# PYTHON names an interpreter with PyYAML (default: .venv/bin/python, else python3).
set -euo pipefail
# shellcheck source=deploy/verify/common.sh
source "$(dirname "$0")/common.sh"
cd "$REPOSITORY"

MANIFEST=${MANIFEST:-}
# The contract's ports; the manifests' Services use the same ones.
declare -A PORTS=([api-gateway]=3000 [payment-service]=3001 [order-service]=3002 [db]=3004)
PODS="$RUN_DIRECTORY/pods"
PLAYED=

clean_up() {
    local status=$1
    if [ -n "$PLAYED" ]; then
        if [ "$status" -ne 0 ]; then show_pod_logs; fi
        podman kube down "$PODS/shop.yaml" >/dev/null 2>&1
    fi
    if [ -d "$RUN_DIRECTORY/podman" ]; then
        # Only what this run made: `podman system reset` would also delete the host's networks.
        podman pod rm --all --force >/dev/null 2>&1
        podman volume rm --all --force >/dev/null 2>&1
        podman rmi --all --force >/dev/null 2>&1
        findmnt --list --noheadings --output TARGET | grep "^$RUN_DIRECTORY/" | sort -r \
            | xargs --no-run-if-empty umount 2>/dev/null
    fi
}

server_containers() { podman ps --all --format '{{.Names}}' | grep -v -- '-infra$' || true; }

show_pod_logs() {
    printf '\n--- pods ---\n' >&2
    podman ps --all --format '{{.Names}}\t{{.Status}}' >&2
    for container in $(server_containers); do
        printf '\n--- %s: last log lines ---\n' "$container" >&2
        podman logs --tail 60 "$container" >&2
    done
}

require_free_ports() {
    local port
    for port in "${PORTS[@]}"; do
        if (: </dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
            fail "port $port on 127.0.0.1 is taken: the pods use the manifests' ports (stop 'microshop up'?)"
        fi
    done
}

# Pods restart exited containers (restartPolicy Always), so a restart counts as having exited.
no_container_exited() {
    local died
    [ -n "$(server_containers)" ] || fail "no containers are running"
    # shellcheck disable=SC2046  # one container name per word
    died=$(podman inspect --format '{{.Name}} {{.State.Status}} {{.RestartCount}}' $(server_containers) \
        | awk '$2 == "exited" || $3 > 0 { print $1 }' | sed 's/-pod.*//' | sort -u | tr '\n' ' ')
    [ -z "$died" ] || fail "containers exited: $died"
}

require_free_ports
command -v podman >/dev/null || fail "podman not found (Debian: apt-get install podman catatonit)"
if [ -z "$MANIFEST" ]; then
    step "rendering deploy/k8s/overlays/local"
    MANIFEST="$RUN_DIRECTORY/rendered.yaml"
    kubectl kustomize deploy/k8s/overlays/local >"$MANIFEST"
fi
"$PYTHON" deploy/verify/for_podman.py "$PODS" <"$MANIFEST"

start_docker_engine
build_image
step "loading $IMAGE into a Podman store that lives for this run only"
mkdir -p "$RUN_DIRECTORY/podman"
docker save "$IMAGE" | podman load --quiet >/dev/null
stop_docker_engine
while read -r image; do podman tag "$IMAGE" "$image"; done <"$PODS/images"
for secret in "$PODS"/secrets/*; do
    [ -e "$secret" ] && podman secret create "$(basename "$secret")" "$secret" >/dev/null
done

step "podman kube play --network host (the manifests' Deployments as pods)"
require_free_ports
PLAYED=1
podman kube play --network host "$PODS/shop.yaml" >/dev/null || fail "podman kube play failed"
for service in db payment-service order-service api-gateway; do
    wait_until_ready "$service" "http://127.0.0.1:${PORTS[$service]}" no_container_exited
done
podman ps --format '{{.Names}}\t{{.Status}}'

step "securityContext and limits as the manifests ask"
# shellcheck disable=SC2046  # one container name per word
podman inspect $(server_containers) | "$PYTHON" deploy/verify/check_pods.py "$PODS/shop.yaml" \
    || fail "a pod runs without the manifest's securityContext or limits"

step "an order through the gateway pod"
order=$(curl --silent --fail --show-error --max-time 10 -H 'Content-Type: application/json' \
    -d '{"item": "mug", "price": 12, "customer": "pods-check"}' "http://127.0.0.1:3000/orders") \
    || fail "placing an order through the gateway pod failed"
echo "$order"
"$PYTHON" -c 'import json, sys; assert json.loads(sys.argv[1])["order"]["status"] == "paid"' "$order" \
    || fail "the order was not paid"

step "SIGTERM stops every pod cleanly"
podman pod stop --all --time 20 >/dev/null
for container in $(server_containers); do
    code=$(podman inspect --format '{{.State.ExitCode}}' "$container")
    [ "$code" = 0 ] || fail "$container exited with code $code on SIGTERM"
done
podman kube down "$PODS/shop.yaml" >/dev/null 2>"$RUN_DIRECTORY/kube-down.log" \
    || { cat "$RUN_DIRECTORY/kube-down.log" >&2; fail "podman kube down failed"; }
PLAYED=

step "the manifests ran as pods: secured, limited, serving orders, stopped cleanly"
