#!/usr/bin/env bash
# A sandbox server's API from a CI job, with nothing but curl (docs/sandboxes.md, "In CI").
#   .ci/sandbox-api.sh create NAME [DURATION] [BLUEPRINT.json]  # waits until ready; prints its JSON
#   .ci/sandbox-api.sh environment NAME   # MICROSHOP_GATEWAY_URL=... lines, for `set -a; . FILE`
#   .ci/sandbox-api.sh logs NAME SERVICE [LINES]
#   .ci/sandbox-api.sh delete NAME        # no error when it is already gone
# MICROSHOP_SANDBOX_SERVER is the server's URL and MICROSHOP_SANDBOX_SERVER_TOKEN its token;
# the token goes to curl on its standard input, never on a command line that `ps` shows.
# MICROSHOP_SANDBOX_WAIT (default 300) is how many seconds `create` waits for the sandbox.
set -euo pipefail

server="${MICROSHOP_SANDBOX_SERVER:?set MICROSHOP_SANDBOX_SERVER to the sandbox server URL}"
token="${MICROSHOP_SANDBOX_SERVER_TOKEN:?set MICROSHOP_SANDBOX_SERVER_TOKEN to its token}"
server="${server%/}"

request() {
    # request METHOD PATH [curl options...]: the token goes in through standard input.
    local method=$1 path=$2
    shift 2
    curl --silent --show-error --max-time 900 --request "$method" --header @- "$@" \
        "$server$path" <<<"Authorization: Bearer $token"
}

call() {
    # call METHOD PATH [curl options...]: the answer's body on stdout; fails on an HTTP error.
    request "$@" --fail-with-body
}

usage() {
    sed -n '2,6p' "$0" >&2
    exit 2
}

command=${1:-}
name=${2:-}
[ -n "$command" ] && [ -n "$name" ] || usage
case "$command" in
    create)
        duration=${3:-30m}
        body="{\"name\": \"$name\", \"duration\": \"$duration\", \"owner\": \"${MICROSHOP_SANDBOX_OWNER:-ci}\""
        if [ -n "${4:-}" ]; then
            body="$body, \"blueprint\": $(cat "$4")"
        fi
        call POST "/sandboxes?wait=${MICROSHOP_SANDBOX_WAIT:-300}" \
            --header 'Content-Type: application/json' --data-binary "$body}"
        echo
        ;;
    environment)
        call GET "/sandboxes/$name/environment"
        ;;
    logs)
        [ -n "${3:-}" ] || usage
        call GET "/sandboxes/$name/logs/$3?tail=${4:-200}"
        ;;
    delete)
        status=$(request DELETE "/sandboxes/$name" --output /dev/null --write-out '%{http_code}')
        case "$status" in
            204) echo "deleted sandbox $name" ;;
            404) echo "no sandbox named $name" ;;
            *) echo "deleting sandbox $name failed: HTTP $status" >&2; exit 1 ;;
        esac
        ;;
    *) usage ;;
esac
