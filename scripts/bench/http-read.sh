#!/usr/bin/env bash
# Requests per second of `serve`'s read routes (`GET /v1/instances`, `GET /v1/status`) under
# CONCURRENCY clients (ab, apache2-utils), with N registered instances, and the peak RSS of
# `serve` after them. Everything is made in a fresh state folder under /tmp (never in the
# repository): one sh-sample instance is registered and backed up through the CLI, and its
# record, secrets and status file are copied under N-1 more names (the registry's and the
# status folder's own layout), so that the registry holds N real records.
#
#   BIN=target/debug/aps-controller scripts/bench/http-read.sh [N=1000] [REQUESTS=5000] [CONCURRENCY=50] [WORKERS=4]
#
# BIN may be an older build, to compare (a build without /v1/status answers it 404: not counted).
set -euo pipefail

N=${1:-1000}
REQUESTS=${2:-5000}
CONCURRENCY=${3:-50}
WORKERS=${4:-4}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$REPO/target/release/aps-controller}
command -v ab >/dev/null || { echo "missing: ab (apt-get install apache2-utils)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "no binary at $BIN (cargo build, or set BIN)" >&2; exit 2; }
WORK=$(mktemp -d /tmp/aps-bench-http-read.XXXXXX)
SERVE_PID=
cleanup() {
    [ -z "$SERVE_PID" ] || kill "$SERVE_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

STATE="$WORK/state"
mkdir -p "$STATE" "$WORK/www/cache"
echo 'allow-root-scripts = true' > "$STATE/controller.toml"
printf '<h1>site</h1>\n' > "$WORK/www/index.html"
cat > "$WORK/site0.toml" <<EOF
name = "site0"
package = "$REPO/fixtures/packages/sh-sample"
base-url = "http://site0.example.test/"
[web-dirs]
"/" = "$WORK/www"
[settings]
admin_name = "admin"
admin_password = "pw"
site_title = "Bench"
behaviour = "normal"
EOF
"$BIN" instance register --file "$WORK/site0.toml" --state-dir "$STATE" >/dev/null
"$BIN" run --periodicity daily --state-dir "$STATE" >/dev/null || true
# N-1 copies of the record (its secrets file is tied to it by digest, so copied unchanged).
python3 - "$STATE" "$N" <<'PY'
import json, os, shutil, sys
state, n = sys.argv[1], int(sys.argv[2])
record = json.load(open(f"{state}/instances/site0.json"))
status_path = f"{state}/status/site0.json"
status = json.load(open(status_path)) if os.path.exists(status_path) else None
for i in range(1, n):
    name = f"site{i}"
    record["name"] = name
    with open(f"{state}/instances/{name}.json", "w") as f:
        json.dump(record, f, indent=2)
    if os.path.exists(f"{state}/secrets/site0.json"):
        shutil.copy(f"{state}/secrets/site0.json", f"{state}/secrets/{name}.json")
    if status is not None:
        status["instance"] = name
        with open(f"{state}/status/{name}.json", "w") as f:
            json.dump(status, f)
PY
# Settled folders: the cache keeps no answer made within a second of a change.
sleep 2

TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$TOKEN" > "$WORK/token"
chmod 600 "$WORK/token"
"$BIN" serve --listen 127.0.0.1:0 --token-file "$WORK/token" --workers "$WORKERS" \
    --state-dir "$STATE" >"$WORK/serve.out" 2>/dev/null &
SERVE_PID=$!
for _ in $(seq 50); do grep -q listening "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$WORK/serve.out")
count=$(curl -s -H "Authorization: Bearer $TOKEN" "$URL/v1/instances" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["instances"]))')
echo "binary: $BIN"
echo "instances registered: $count; $REQUESTS requests, $CONCURRENCY at once, $WORKERS workers"
rss() { awk '/VmHWM/ {print $2 / 1024 " MiB"}' "/proc/$SERVE_PID/status"; }
echo "serve's peak RSS before the load: $(rss)"
# /v1/status twice: a peak RSS that does not grow in the second round is memory held flat.
for path in /v1/instances /v1/status /v1/status; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$URL$path")
    if [ "$code" != 200 ]; then
        echo "GET $path: $code (not served by this binary)"
        continue
    fi
    out=$(ab -q -n "$REQUESTS" -c "$CONCURRENCY" -H "Authorization: Bearer $TOKEN" "$URL$path" 2>&1)
    rps=$(awk '/Requests per second/ {print $4}' <<<"$out")
    # ab counts an answer of another length than the first as failed: /v1/status's ages
    # change every second. Connection errors and statuses other than 2xx are what count.
    failed=$(awk '/Failed requests/ {print $3}' <<<"$out")
    non2xx=$(awk '/Non-2xx responses/ {print $3}' <<<"$out")
    p99=$(awk '/ 99%/ {print $2}' <<<"$out")
    echo "GET $path: $rps requests/s, non-2xx ${non2xx:-0}, failed $failed (of which other lengths), 99% within $p99 ms; peak RSS now $(rss)"
done
