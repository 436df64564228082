#!/usr/bin/env bash
# `aps-controller run --periodicity daily` over N small instances (sh-sample) into a repository
# in the Garage cluster of scripts/ci/garage.sh (three nodes, replication factor 3), in a fresh
# state folder under /tmp (never in the repository): the wall time of `store init` and of the
# run, the snapshots made, and the bytes the repository holds in the bucket against the bytes
# the snapshots read (what the archives would hold, before compression).
#
#   scripts/bench/fleet-run.sh [N=1000] [JOBS=2]
#
# BIN=path/to/aps-controller uses that binary (default: a release build, made when missing).
set -euo pipefail

N=${1:-1000}
JOBS=${2:-2}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
ENV_FILE=/tmp/aps-ci/garage.env
[ -f "$ENV_FILE" ] || { echo "no $ENV_FILE: run scripts/ci/garage.sh first" >&2; exit 1; }
# Read, not sourced: the endpoints' value holds spaces and is written unquoted for the tests.
while IFS='=' read -r key value; do
    case $key in APS_TEST_GARAGE_*) printf -v "$key" '%s' "$value" ;; esac
done < "$ENV_FILE"
if [ -z "${BIN:-}" ]; then
    BIN="$REPO/target/release/aps-controller"
    (cd "$REPO" && cargo build --release --quiet --bin aps-controller)
fi
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/aps-bench-fleet-run.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
STATE="$WORK/state"
PREFIX="bench/fleet-run-$$-$(date +%s)/"
ENDPOINT=${APS_TEST_GARAGE_ENDPOINTS%% *}

mkdir -p "$STATE"
echo 'allow-root-scripts = true' > "$STATE/controller.toml"
printf '%s\n' "$APS_TEST_GARAGE_SECRET_KEY" > "$WORK/s3-secret"
cat > "$STATE/panel.toml" <<TOML
jobs = $JOBS
[store]
kind = "repository"
host = "bench"
[store.s3]
endpoint = "$ENDPOINT"
bucket = "$APS_TEST_GARAGE_BUCKET"
prefix = "$PREFIX"
region = "$APS_TEST_GARAGE_REGION"
access-key-id = "$APS_TEST_GARAGE_ACCESS_KEY"
secret-access-key-file = "$WORK/s3-secret"
TOML

echo "registering $N sh-sample instances in $STATE …"
for i in $(seq -w 0 $((N - 1))); do
    name="site$i"
    mkdir -p "$WORK/www/$name/cache"
    printf '<h1>%s</h1>\n' "$name" > "$WORK/www/$name/index.html"
    cat > "$WORK/$name.toml" <<TOML
name = "$name"
package = "$REPO/fixtures/packages/sh-sample"
base-url = "http://$name.example.test/"
[web-dirs]
"/" = "$WORK/www/$name"
[settings]
admin_name = "admin"
admin_password = "pw"
site_title = "Demo"
TOML
    "$BIN" instance register --file "$WORK/$name.toml" --state-dir "$STATE" >/dev/null
done

init_start=$(date +%s.%N)
"$BIN" store init --state-dir "$STATE" >/dev/null
init_end=$(date +%s.%N)
/usr/bin/time -f '%e %U %S %M' -o "$WORK/time" \
    "$BIN" run --periodicity daily --state-dir "$STATE" --json > "$WORK/summary" 2>&1 || {
    echo "run failed:" >&2; tail -5 "$WORK/summary" >&2; exit 1; }
read -r wall user sys rss < "$WORK/time"
"$BIN" store snapshots --state-dir "$STATE" --json > "$WORK/snapshots"
read -r snaps read_bytes < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["snapshots"]
print(len(s), sum(x["bytes_read"] for x in s))' "$WORK/snapshots")

# The bucket's objects under the prefix, page by page.
objects=0; stored=0; token=
while :; do
    # The query is signed as sent: the prefix's "/" percent-encoded, as SigV4 canonicalises it.
    url="$ENDPOINT/$APS_TEST_GARAGE_BUCKET?list-type=2&prefix=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$PREFIX")"
    if [ -n "$token" ]; then
        url="$url&continuation-token=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$token")"
    fi
    page=$(curl -sS --fail-with-body --aws-sigv4 "aws:amz:$APS_TEST_GARAGE_REGION:s3" \
        --user "$APS_TEST_GARAGE_ACCESS_KEY:$APS_TEST_GARAGE_SECRET_KEY" "$url") || {
        echo "listing the bucket failed: its bytes are not counted" >&2; objects=-1; break; }
    read -r n b < <(grep -o '<Size>[0-9]*</Size>' <<<"$page" | tr -dc '0-9\n' |
        awk '{n++; b+=$1} END {print n+0, b+0}')
    objects=$((objects + n)); stored=$((stored + b))
    token=$(grep -o '<NextContinuationToken>[^<]*' <<<"$page" | sed 's/<NextContinuationToken>//' || true)
    [ -n "$token" ] || break
done

awk -v n="$N" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v k="$snaps" -v j="$JOBS" \
    -v i0="$init_start" -v i1="$init_end" -v o="$objects" -v st="$stored" -v rd="$read_bytes" 'BEGIN {
    printf "store init into the cluster: %.2f s\n", i1 - i0
    printf "run --periodicity daily (jobs %d): %d instances, %d snapshots\n", j, n, k
    printf "wall %.1f s (%.1f ms/instance); CPU user %.1f s + sys %.1f s; peak RSS %.1f MiB\n", w, w * 1000 / n, u, s, r / 1024
    printf "bucket: %d objects, %d bytes; the snapshots read %d bytes (%.2f stored per byte read)\n", o, st, rd, (rd > 0 ? st / rd : 0)
}'
