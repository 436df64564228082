#!/usr/bin/env bash
# A three-node Garage cluster on loopback: the distributed S3 store of the fleet tests
# (tests/fleet/), replication factor 3, one bucket and one key made with garage's own CLI.
# A test server only; the controller never links garage.
#
#   garage.sh [up]             install when missing, start what is down, write the env file
#   garage.sh stop N           SIGTERM node N (1–3) and wait for it to go
#   garage.sh kill N           SIGKILL node N
#   garage.sh start N          start node N again (its data and metadata are kept)
#
# Idempotent: installs garage only when missing (~9–20 min compile, see the README), makes the
# rpc secret once, starts only nodes that do not answer, lays the cluster out only once, and
# always rewrites the env file the tests read:
#   /tmp/aps-ci/garage.env  APS_TEST_GARAGE_ENDPOINTS (one per node, space-separated) /
#                           ACCESS_KEY / SECRET_KEY / BUCKET / REGION / SCRIPT
set -euo pipefail

GARAGE_VERSION=2.5.0
HOST=127.0.0.1
BASE=/tmp/aps-ci
ROOT=$BASE/garage
# Port of node N: S3 API 1910N, RPC 1911N, admin 1912N.
S3_BASE=${APS_CI_GARAGE_S3_BASE:-19100}
RPC_BASE=$((S3_BASE + 10))
ADMIN_BASE=$((S3_BASE + 20))
BUCKET=aps-fleet
KEY_NAME=aps-fleet-key
REGION=garage
LOG_DIR=${APS_CI_LOG_DIR:-$BASE/logs}
ENV_FILE=$BASE/garage.env
# A root-owned prefix of its own: nothing else installs there, and the tests find it by path.
PREFIX=${APS_CI_GARAGE_PREFIX:-/opt/aps-ci}
GARAGE=$PREFIX/bin/garage

step() { printf 'garage: %s\n' "$*"; }
mkdir -p "$ROOT" "$LOG_DIR"

install_garage() {
    if [ -x "$GARAGE" ] && "$GARAGE" --version 2>/dev/null | grep -qE "[:v]$GARAGE_VERSION( |$)"; then
        return
    fi
    step "installing garage $GARAGE_VERSION into $PREFIX (9+ minutes; log: $LOG_DIR/garage-install.log)"
    local started=$SECONDS
    if ! cargo install garage --version "$GARAGE_VERSION" --locked --root "$PREFIX" \
        >"$LOG_DIR/garage-install.log" 2>&1; then
        step "cargo install garage FAILED; tail of $LOG_DIR/garage-install.log:"
        tail -n 20 "$LOG_DIR/garage-install.log" >&2
        exit 1
    fi
    step "installed in $((SECONDS - started)) s"
}

config() { echo "$ROOT/$1/garage.toml"; }

write_config() {
    local n=$1 dir=$ROOT/$1
    mkdir -p "$dir/meta" "$dir/data"
    cat >"$(config "$n")" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "$HOST:$((RPC_BASE + n))"
rpc_public_addr = "$HOST:$((RPC_BASE + n))"
rpc_secret_file = "$ROOT/rpc-secret"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "$HOST:$((S3_BASE + n))"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "$HOST:$((ADMIN_BASE + n))"
TOML
}

g() { "$GARAGE" -c "$(config 1)" "$@"; }

answers() {
    # Any HTTP status means the node's S3 API is up (an unsigned request gets 403).
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$HOST:$((S3_BASE + $1))/" 2>/dev/null |
        grep -q '^[1-5]'
}

pid_of() { cat "$ROOT/$1/pid" 2>/dev/null || true; }

start_node() {
    local n=$1
    if answers "$n"; then
        return
    fi
    write_config "$n"
    # setsid: the node outlives this script and the shell that ran it.
    setsid "$GARAGE" -c "$(config "$n")" server >>"$LOG_DIR/garage-$n.log" 2>&1 </dev/null &
    echo $! >"$ROOT/$n/pid"
    for _ in $(seq 1 100); do
        if answers "$n"; then return; fi
        sleep 0.1
    done
    step "node $n did not answer on $HOST:$((S3_BASE + n)) within 10 s; tail of $LOG_DIR/garage-$n.log:"
    tail -n 20 "$LOG_DIR/garage-$n.log" >&2
    exit 1
}

stop_node() {
    local n=$1 signal=$2 pid
    pid=$(pid_of "$n")
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        return
    fi
    kill "-$signal" "$pid"
    for _ in $(seq 1 100); do
        if ! kill -0 "$pid" 2>/dev/null; then return; fi
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

up() {
    local started=$SECONDS
    install_garage
    if [ ! -s "$ROOT/rpc-secret" ]; then
        (umask 077 && openssl rand -hex 32 >"$ROOT/rpc-secret")
    fi
    for n in 1 2 3; do start_node "$n"; done
    # Connect the nodes to node 1 (harmless when they already are).
    for n in 2 3; do
        local id
        id=$("$GARAGE" -c "$(config "$n")" node id -q 2>/dev/null)
        g node connect "$id" >/dev/null
    done
    if ! g layout show 2>/dev/null | grep -q 'Current cluster layout version: [1-9]'; then
        step "laying out 3 nodes in 3 zones, replication factor 3"
        for n in 1 2 3; do
            local id
            id=$("$GARAGE" -c "$(config "$n")" node id -q 2>/dev/null | cut -d@ -f1)
            g layout assign -z "zone$n" -c 1G "$id" >/dev/null
        done
        g layout apply --version 1 >/dev/null
    fi
    if ! g bucket info "$BUCKET" >/dev/null 2>&1; then
        g bucket create "$BUCKET" >/dev/null
    fi
    if ! g key info "$KEY_NAME" >/dev/null 2>&1; then
        g key create "$KEY_NAME" >/dev/null
    fi
    g bucket allow --read --write --owner "$BUCKET" --key "$KEY_NAME" >/dev/null
    local info key_id secret
    info=$(g key info --show-secret "$KEY_NAME")
    key_id=$(awk '/Key ID:/ {print $3}' <<<"$info")
    secret=$(awk '/Secret key:/ {print $3}' <<<"$info")
    if [ -z "$key_id" ] || [ -z "$secret" ]; then
        step "cannot read the key from \`garage key info\`:"
        printf '%s\n' "$info" >&2
        exit 1
    fi
    local endpoints=""
    for n in 1 2 3; do endpoints="$endpoints http://$HOST:$((S3_BASE + n))"; done
    cat >"$ENV_FILE" <<ENV
APS_TEST_GARAGE_ENDPOINTS=${endpoints# }
APS_TEST_GARAGE_ACCESS_KEY=$key_id
APS_TEST_GARAGE_SECRET_KEY=$secret
APS_TEST_GARAGE_BUCKET=$BUCKET
APS_TEST_GARAGE_REGION=$REGION
APS_TEST_GARAGE_SCRIPT=$(realpath "$0")
ENV
    step "ready in $((SECONDS - started)) s: 3 nodes at ${endpoints# }, bucket $BUCKET (env: $ENV_FILE)"
}

node_arg() {
    case "${1:-}" in
    1 | 2 | 3) ;;
    *)
        echo "usage: $0 stop|kill|start 1|2|3" >&2
        exit 2
        ;;
    esac
}

case "${1:-up}" in
up) up ;;
stop) node_arg "${2:-}" && stop_node "$2" TERM ;;
kill) node_arg "${2:-}" && stop_node "$2" KILL ;;
start) node_arg "${2:-}" && start_node "$2" ;;
*)
    echo "usage: $0 [up] | stop N | kill N | start N" >&2
    exit 2
    ;;
esac
