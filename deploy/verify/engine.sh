# shellcheck shell=bash
# Shared by image.sh and pods.sh (sourced, not run): a private Docker engine and an offline build.
#
# The engine is started here and stopped by its PID at exit. It never creates a bridge network
# (containers share the host's network and listen on 127.0.0.1) and it keeps its images in a cache
# directory, so the base image and the build's layers survive from one run to the next:
#   MICROSHOP_VERIFY_CACHE  (default: ${XDG_CACHE_HOME:-~/.cache}/microshop-verify)
# With no registry to pull from, a base image that is not there yet is made by debootstrap
# (Debian bookworm with its Python) and imported under the tag the Dockerfile's FROM names.

REPOSITORY=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VERIFY_CACHE=${MICROSHOP_VERIFY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/microshop-verify}
IMAGE=${MICROSHOP_IMAGE:-microshop:verify}
DOCKERFILE=${DOCKERFILE:-$REPOSITORY/Dockerfile}
# Short, because the engine's unix sockets live under it (108 characters at most).
RUN_DIRECTORY=$(mktemp -d /tmp/microshop-verify.XXXXXX)
DOCKER_PID=

step() { printf '\n==> %s\n' "$*" >&2; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

docker() { command docker -H "unix://$RUN_DIRECTORY/docker.sock" "$@"; }

start_docker_engine() {
    command -v dockerd >/dev/null || fail "dockerd not found (Debian: apt-get install docker.io)"
    [ "$(id -u)" = 0 ] || fail "a private Docker engine needs root"
    step "starting a private Docker engine (no bridge network, data in $VERIFY_CACHE/docker)"
    mkdir -p "$VERIFY_CACHE/docker"
    # An engine left by a run that was killed would hold the same data directory.
    if pkill --full -- "--data-root $VERIFY_CACHE/docker "; then sleep 2; fi
    dockerd --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
        --data-root "$VERIFY_CACHE/docker" --exec-root "$RUN_DIRECTORY/exec" \
        --pidfile "$RUN_DIRECTORY/docker.pid" -H "unix://$RUN_DIRECTORY/docker.sock" \
        >"$RUN_DIRECTORY/dockerd.log" 2>&1 &
    DOCKER_PID=$!
    for _ in $(seq 100); do
        if docker version >/dev/null 2>&1; then return; fi
        kill -0 "$DOCKER_PID" 2>/dev/null || break
        sleep 0.2
    done
    cat "$RUN_DIRECTORY/dockerd.log" >&2
    fail "the Docker engine did not start"
}

stop_docker_engine() {
    if [ -n "$DOCKER_PID" ] && kill -0 "$DOCKER_PID" 2>/dev/null; then
        kill "$DOCKER_PID"
        for _ in $(seq 150); do kill -0 "$DOCKER_PID" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$DOCKER_PID" 2>/dev/null || true
    fi
    DOCKER_PID=
    # The engine leaves its default network namespace mounted under its exec root.
    umount "$RUN_DIRECTORY/exec/netns/default" 2>/dev/null || true
}

base_image() { sed -n 's/^FROM[[:space:]]\{1,\}\([^[:space:]]*\).*/\1/p' "$DOCKERFILE" | tail -1; }

ensure_base_image() {
    local base rootfs
    base=$(base_image)
    if docker image inspect "$base" >/dev/null 2>&1; then return; fi
    if docker pull "$base" >/dev/null 2>&1; then return; fi
    command -v debootstrap >/dev/null || fail "no $base and no debootstrap to make a stand-in"
    step "no registry: making a stand-in for $base with debootstrap (once per cache)"
    rootfs="$VERIFY_CACHE/rootfs"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
        bookworm "$rootfs" >"$RUN_DIRECTORY/debootstrap.log" 2>&1 \
        || { tail -20 "$RUN_DIRECTORY/debootstrap.log" >&2; fail "debootstrap failed"; }
    tar -C "$rootfs" -c . | docker import - "$base" >/dev/null
    rm -rf "$rootfs"
}

# The wheels of microshop's dependencies and of its build backend, for the base image's Python
# and platform, downloaded on the host: the build itself has no network.
prepare_wheelhouse() {
    local base python_version machine requirements=() platforms=()
    base=$(base_image)
    read -r python_version machine < <(docker run --rm --network none --entrypoint python3 "$base" \
        -c 'import platform, sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}", platform.machine())')
    step "wheelhouse for Python $python_version on $machine"
    mapfile -t requirements < <(python3 - "$REPOSITORY/pyproject.toml" <<'PYTHON'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join(project["project"]["dependencies"] + project["build-system"]["requires"]))
PYTHON
    )
    for minor in $(seq 17 40); do platforms+=(--platform "manylinux_2_${minor}_$machine"); done
    mkdir -p "$REPOSITORY/wheelhouse"
    python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
        --python-version "$python_version" "${platforms[@]}" --platform "manylinux2014_$machine" \
        --dest "$REPOSITORY/wheelhouse" "${requirements[@]}"
}

build_image() {
    ensure_base_image
    prepare_wheelhouse
    step "building $IMAGE from $DOCKERFILE with no network"
    DOCKER_BUILDKIT=0 docker build --network none --tag "$IMAGE" --file "$DOCKERFILE" \
        --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/src/wheelhouse \
        --build-arg REVISION="$(git -C "$REPOSITORY" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        "$REPOSITORY" || fail "docker build failed (its output is above)"
}
