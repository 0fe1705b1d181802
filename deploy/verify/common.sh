# shellcheck shell=bash
# Shared by image.sh and pods.sh (sourced, not run): a private Docker engine, the offline build of
# the image, and waiting for a service.
#
# The engine is started here and stopped by its PID at exit. It never creates a bridge network
# (containers share the host's network and listen on 127.0.0.1) and it keeps its images in a cache
# directory, so the base image and the build's layers survive from one run to the next:
#   MICROSHOP_VERIFY_CACHE  (default: ${XDG_CACHE_HOME:-~/.cache}/microshop-verify)
# One run at a time uses the cache (a lock); a run waits for the one before it.
#
# The build itself has no network. The host downloads the wheels from PyPI (or PIP_INDEX_URL) and,
# when no registry answers for the base image, makes a stand-in for it once with debootstrap
# (Debian bookworm and its Python, from a Debian mirror), imported under the tag FROM names.

REPOSITORY=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VERIFY_CACHE=${MICROSHOP_VERIFY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/microshop-verify}
IMAGE=${MICROSHOP_IMAGE:-microshop:verify}
DOCKERFILE=${DOCKERFILE:-$REPOSITORY/Dockerfile}
STAND_IN_LABEL=io.microshop.verify.stand-in
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$REPOSITORY/.venv/bin/python" ]; then PYTHON=$REPOSITORY/.venv/bin/python; else PYTHON=python3; fi
fi
# Short, because the engine's unix sockets live under it (108 characters at most).
RUN_DIRECTORY=$(mktemp -d /tmp/microshop-verify.XXXXXX)
DOCKER_PID=

# At exit, on success or failure: the script's own clean_up STATUS (its containers; it must
# tolerate running at any point), then the engine and the run directory go.
finish() {
    local status=$?
    set +e
    trap '' INT TERM
    clean_up "$status"
    stop_docker_engine
    rm -rf "$RUN_DIRECTORY"
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf '\n==> %s\n' "$*" >&2; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

# Every docker command of these scripts talks to the private engine, never to the host's.
docker() { command docker -H "unix://$RUN_DIRECTORY/docker.sock" "$@"; }

# Every podman command of these scripts uses a store and network definitions that live only for
# this run, never the host's. Its processes (conmon) must not inherit the cache's lock (see
# lock_cache). `podman_command` writes the same as a program, for tools that run podman themselves.
podman() { "$(podman_command)" "$@" 9>&-; }

podman_command() {
    local wrapper="$RUN_DIRECTORY/podman/podman"
    if [ ! -x "$wrapper" ]; then
        mkdir -p "$RUN_DIRECTORY/podman/networks"
        cat >"$wrapper" <<SCRIPT
#!/bin/sh
CONTAINERS_CONF="$REPOSITORY/deploy/verify/containers.conf" exec $(type -P podman) \\
    --root "$RUN_DIRECTORY/podman/root" --runroot "$RUN_DIRECTORY/podman/run" \\
    --tmpdir "$RUN_DIRECTORY/podman/tmp" --network-config-dir "$RUN_DIRECTORY/podman/networks" "\$@"
SCRIPT
        chmod +x "$wrapper"
    fi
    echo "$wrapper"
}

# Holds the cache's lock until the script exits. Long-lived children (the engine) must not inherit
# it, or a killed run's engine would keep the next run waiting: they are started with 9>&-.
lock_cache() {
    mkdir -p "$VERIFY_CACHE"
    exec 9>"$VERIFY_CACHE/lock"
    if ! flock --nonblock 9; then
        step "waiting for another run to release $VERIFY_CACHE"
        flock --timeout 600 9 || fail "another run has held $VERIFY_CACHE for 10 minutes"
    fi
}

start_docker_engine() {
    local stale
    command -v dockerd >/dev/null || fail "dockerd not found (Debian: apt-get install docker.io)"
    [ "$(id -u)" = 0 ] || fail "a private Docker engine needs root"
    lock_cache
    # With the lock held, an engine on this data directory belongs to a run that was killed.
    stale=$(pgrep --full -- "--data-root $VERIFY_CACHE/docker " || true)
    if [ -n "$stale" ]; then
        step "stopping the engine a killed run left behind (PID $stale)"
        # shellcheck disable=SC2086  # one PID per word
        kill $stale 2>/dev/null || true
        for _ in $(seq 150); do pgrep --full -- "--data-root $VERIFY_CACHE/docker " >/dev/null || break; sleep 0.2; done
    fi
    step "starting a private Docker engine (no bridge network, data in $VERIFY_CACHE/docker)"
    dockerd --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
        --data-root "$VERIFY_CACHE/docker" --exec-root "$RUN_DIRECTORY/exec" \
        --pidfile "$RUN_DIRECTORY/docker.pid" -H "unix://$RUN_DIRECTORY/docker.sock" \
        >"$RUN_DIRECTORY/dockerd.log" 2>&1 9>&- &
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
    if [ -n "$DOCKER_PID" ]; then
        kill "$DOCKER_PID" 2>/dev/null || true
        for _ in $(seq 150); do kill -0 "$DOCKER_PID" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$DOCKER_PID" 2>/dev/null || true
    fi
    DOCKER_PID=
    # The engine leaves its default network namespace mounted under its exec root.
    umount "$RUN_DIRECTORY/exec/netns/default" 2>/dev/null || true
}

# The images the Dockerfile's stages start FROM (not its own stages), and the final stage's.
base_images() {
    awk 'toupper($1) == "FROM" { images[$2] = 1; if (toupper($3) == "AS") stages[$4] = 1 }
         END { for (image in images) if (!(image in stages)) print image }' "$DOCKERFILE"
}
base_image() { awk 'toupper($1) == "FROM" { image = $2 } END { print image }' "$DOCKERFILE"; }

ensure_base_image() {
    local base=$1 rootfs
    if timeout 120 docker pull --quiet "$base" >/dev/null 2>&1; then
        step "base image $base: pulled from its registry"
        return
    fi
    if docker image inspect "$base" >/dev/null 2>&1; then
        if [ -n "$(docker image inspect --format "{{index .Config.Labels \"$STAND_IN_LABEL\"}}" "$base")" ]; then
            step "base image $base: no registry; the debootstrap stand-in made by an earlier run"
        else
            step "base image $base: no registry; the copy pulled by an earlier run"
        fi
        return
    fi
    command -v debootstrap >/dev/null || fail "no registry for $base and no debootstrap to make a stand-in"
    step "base image $base: no registry; making a debootstrap stand-in (once per cache)"
    rootfs="$VERIFY_CACHE/rootfs"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
        bookworm "$rootfs" >"$RUN_DIRECTORY/debootstrap.log" 2>&1 \
        || { tail -20 "$RUN_DIRECTORY/debootstrap.log" >&2; fail "debootstrap failed"; }
    tar -C "$rootfs" -c . | docker import --change "LABEL $STAND_IN_LABEL=debootstrap-bookworm" - "$base" >/dev/null
    rm -rf "$rootfs"
}

# The wheels of microshop's dependencies (with the `otel` extra the Dockerfile installs) and of its
# build backend, for the base image's Python, machine and C library, downloaded on the host: the
# build itself has no network.
prepare_wheelhouse() {
    local base facts python_version machine glibc glibc_minor requirements_text requirements=() platforms=()
    base=$(base_image)
    facts=$(docker run --rm --network none --entrypoint python3 "$base" -c 'import platform, sys
print(f"{sys.version_info[0]}.{sys.version_info[1]}", platform.machine(), platform.libc_ver()[1])') \
        || fail "could not run python3 in $base"
    read -r python_version machine glibc <<<"$facts"
    glibc_minor=${glibc#*.}
    step "wheelhouse for Python $python_version on $machine with glibc $glibc"
    requirements_text=$(python3 - "$REPOSITORY/pyproject.toml" <<'PYTHON'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join(project["project"]["dependencies"] + project["project"]["optional-dependencies"]["otel"]
                + project["build-system"]["requires"]))
PYTHON
    ) || fail "could not read the requirements from pyproject.toml"
    mapfile -t requirements <<<"$requirements_text"
    for minor in $(seq 17 "$glibc_minor"); do platforms+=(--platform "manylinux_2_${minor}_$machine"); done
    mkdir -p "$REPOSITORY/wheelhouse"
    python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
        --python-version "$python_version" "${platforms[@]}" --platform "manylinux2014_$machine" \
        --dest "$REPOSITORY/wheelhouse" "${requirements[@]}" || fail "pip download failed"
}

build_image() {
    local base
    for base in $(base_images); do ensure_base_image "$base"; done
    prepare_wheelhouse
    step "building $IMAGE from $DOCKERFILE with no network"
    DOCKER_BUILDKIT=0 docker build --network none --force-rm --tag "$IMAGE" --file "$DOCKERFILE" \
        --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/src/wheelhouse \
        --build-arg REVISION="$(git -C "$REPOSITORY" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        "$REPOSITORY" || fail "docker build failed (its output is above)"
    # Layers of earlier builds that nothing uses any more; today's stay as the build's cache.
    docker image prune --force --filter until=24h >/dev/null
}

# Waits until SERVICE answers /healthz and /readyz at URL, for at most 30 s. `CHECK_ALIVE SERVICE`
# fails, naming what died, when waiting longer is pointless.
wait_until_ready() {
    local service=$1 url=$2 check_alive=$3
    for _ in $(seq 150); do
        if curl --silent --fail --max-time 1 "$url/healthz" >/dev/null \
            && curl --silent --fail --max-time 1 "$url/readyz" >/dev/null; then
            return
        fi
        "$check_alive" "$service"
        sleep 0.2
    done
    fail "$service did not answer /healthz and /readyz at $url within 30 s"
}
