#!/usr/bin/env bash
# End-to-end timing of `aps-controller run --periodicity daily --jobs JOBS` (release binary)
# over N registered small instances (sh-sample: a `sufficient` sh backup-script), in a fresh
# state folder under /tmp (never in the repository). Prints wall time, CPU (the controller
# process plus every script it ran, as getrusage of the children reports it) per instance, and
# peak RSS. For the controller's CPU alone, see `cargo bench -p aps-panel --bench run_many`.
#
#   scripts/bench/run-many.sh [N=1000] [JOBS=2]
set -euo pipefail

N=${1:-1000}
JOBS=${2:-2}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$REPO/target/release/aps-controller"
WORK=$(mktemp -d /tmp/aps-bench-run-many-sh.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
(cd "$REPO" && cargo build --release --quiet --bin aps-controller)

STATE="$WORK/state"
# Run as root, the instances belong to aps-tenant1 (scripts/ci/test-user.sh) so every backup
# drops to it, as in production; without that account their root-made web folders are
# allowed to run as root explicitly.
TENANT=
if [ "$(id -u)" -eq 0 ] && id aps-tenant1 >/dev/null 2>&1; then
    TENANT=aps-tenant1
else
    mkdir -p "$STATE"
    echo 'allow-root-scripts = true' > "$STATE/controller.toml"
fi
echo "registering $N sh-sample instances in $STATE (account: ${TENANT:-none, run as root}) …"
for i in $(seq -w 0 $((N - 1))); do
    name="site$i"
    mkdir -p "$WORK/www/$name/cache"
    printf '<h1>%s</h1>\n' "$name" > "$WORK/www/$name/index.html"
    [ -z "$TENANT" ] || chown -R "$TENANT:" "$WORK/www/$name"
    cat > "$WORK/$name.toml" <<EOF
name = "$name"
package = "$REPO/fixtures/packages/sh-sample"
base-url = "http://$name.example.test/"
[web-dirs]
"/" = "$WORK/www/$name"
[settings]
admin_password = "pw"
EOF
    "$BIN" instance register --file "$WORK/$name.toml" --state-dir "$STATE" >/dev/null
done

# stdout (the summary) is kept for the count; the timing line goes to a file.
/usr/bin/time -f '%e %U %S %M' -o "$WORK/time" \
    "$BIN" run --periodicity daily --jobs "$JOBS" --state-dir "$STATE" > "$WORK/summary" 2>&1 || {
    echo "run failed:" >&2; tail -20 "$WORK/summary" >&2; exit 1; }
read -r wall user sys rss < "$WORK/time"
files=$(find "$STATE/backups" -type f -name '*_daily_*' | wc -l)
head -1 "$WORK/summary"
awk -v n="$N" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v f="$files" -v j="$JOBS" 'BEGIN {
    printf "aps-controller run --periodicity daily --jobs %d: %d instances, %d backup files\n", j, n, f
    printf "wall %.2f s (%.2f ms/instance); CPU user %.2f s + sys %.2f s = %.2f ms/instance (controller + scripts)\n", w, w * 1000 / n, u, s, (u + s) * 1000 / n
    printf "peak RSS %.1f MiB (largest single process)\n", r / 1024
}'
