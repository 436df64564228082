#!/usr/bin/env bash
# Starts a local S3-compatible server (s3s-fs) for the panel's off-machine copy tests.
# Idempotent: installs s3s-fs only when missing (~2.5 min compile), starts it only when
# nothing answers on the port, and always rewrites the env file the tests read:
#   /tmp/aps-ci/s3.env  APS_TEST_S3_ENDPOINT / ACCESS_KEY / SECRET_KEY / BUCKET
set -euo pipefail

S3_VERSION=0.14.1
HOST=127.0.0.1
PORT=${APS_CI_S3_PORT:-19000}
BASE=/tmp/aps-ci
ROOT=$BASE/s3
BUCKET=aps-test
# Fixed test credentials: the server is bound to loopback and holds nothing real.
ACCESS_KEY=aps-test-access
SECRET_KEY=aps-test-secret-key
LOG_DIR=${APS_CI_LOG_DIR:-$BASE/logs}
LOG=$LOG_DIR/s3-server.log
ENV_FILE=$BASE/s3.env

step() { printf 's3-server: %s\n' "$*"; }
mkdir -p "$ROOT/$BUCKET" "$LOG_DIR"

# `cargo install` puts binaries in $CARGO_HOME/bin, which may not be on PATH in CI shells.
CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin
export PATH="$CARGO_BIN:$PATH"

if ! command -v s3s-fs >/dev/null || ! s3s-fs --version 2>/dev/null | grep -q "$S3_VERSION"; then
    step "installing s3s-fs $S3_VERSION into $CARGO_BIN (a few minutes; log: $LOG_DIR/s3s-install.log)"
    if ! cargo install s3s-fs --version "$S3_VERSION" --locked --features binary \
        >"$LOG_DIR/s3s-install.log" 2>&1; then
        step "cargo install s3s-fs FAILED; tail of $LOG_DIR/s3s-install.log:"
        tail -n 20 "$LOG_DIR/s3s-install.log" >&2
        exit 1
    fi
fi

answers() {
    # Any HTTP status means the server is up (unauthenticated requests get 403).
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$HOST:$PORT/" 2>/dev/null | grep -q '^[1-5]'
}

if answers; then
    step "already answering on $HOST:$PORT"
else
    step "starting s3s-fs on $HOST:$PORT, data in $ROOT (log: $LOG)"
    # setsid: the server outlives this script and the shell that ran it.
    setsid s3s-fs --host "$HOST" --port "$PORT" \
        --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" "$ROOT" \
        >>"$LOG" 2>&1 </dev/null &
    echo $! >"$BASE/s3.pid"
    for _ in $(seq 1 100); do
        if answers; then break; fi
        sleep 0.1
    done
    if ! answers; then
        step "s3s-fs did not answer on $HOST:$PORT within 10 s; tail of $LOG:"
        tail -n 20 "$LOG" >&2
        exit 1
    fi
fi

cat >"$ENV_FILE" <<ENV
APS_TEST_S3_ENDPOINT=http://$HOST:$PORT
APS_TEST_S3_ACCESS_KEY=$ACCESS_KEY
APS_TEST_S3_SECRET_KEY=$SECRET_KEY
APS_TEST_S3_BUCKET=$BUCKET
ENV
step "ready: http://$HOST:$PORT bucket $BUCKET (env: $ENV_FILE)"
