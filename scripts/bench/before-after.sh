#!/usr/bin/env bash
# Two builds of the controller side by side on one generated instance, in one invocation, so
# that a change is measured against the code before it under the same machine conditions.
#
#   scripts/bench/before-after.sh OLD_BIN NEW_BIN [--small]
#
# OLD_BIN and NEW_BIN are release `aps-controller` binaries (e.g. one built from the commit
# before a change with `git worktree add` + `cargo build --release`). Generates under
# $APS_BEFORE_AFTER_DIR (default /tmp/aps-before-after; on a tmpfs mounted there when run as
# root, so that the file system's own cost of re-creating deleted files does not swing the
# numbers) an instance of the nobackup-sample fixture: a web folder of 30,004 files / ~800 MB
# (`--small`: 3,004 files / ~80 MB) and a MariaDB database of 20k rows. Then, RUNS times (default
# 3) in the order A B B A A B …, each binary with its own state folder:
#   backup --to FILE       (the archive store's whole backup: walk, dumps, zstd, hashes, tag)
#   restore --from FILE    (verification, safety snapshot, web folder and databases put back)
# Prints the median wall time with its spread and the peak RSS of each, and NEW/OLD ratios.
# APS_BENCH_RESTORE_ARGS adds arguments to both restores (e.g. --no-safety-snapshot, to see
# what the safety snapshot costs).
# Needs the test servers (scripts/ci/start-services.sh) and GNU time (apt-get install time).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
# shellcheck source=scripts/bench/common.sh
. scripts/bench/common.sh

[ $# -ge 2 ] || { sed -n '2,20p' "$0" >&2; exit 2; }
old=$(realpath "$1")
new=$(realpath "$2")
small=0
[ "${3:-}" = --small ] && small=1
runs=${RUNS:-3}
bench=${APS_BEFORE_AFTER_DIR:-/tmp/aps-before-after}
# shellcheck disable=SC1090
. "${APS_CI_STATE_DIR:-/tmp/aps-ci}/services.env"
need_tools /usr/bin/time mariadb psql python3

site_sizes "$small"

mountpoint -q "$bench" && umount "$bench"
rm -rf "$bench"
mkdir -p "$bench"
on=disk
if [ "$(id -u)" = 0 ] && [ "${APS_BENCH_TMPFS:-1}" = 1 ]; then
    mount -t tmpfs -o size=8g,mode=0755 tmpfs "$bench"
    on=tmpfs
fi
db=apsba_$$
pw=benchpw$$
cleanup() {
    drop_databases "$db"
    cd /
    mountpoint -q "$bench" && umount "$bench" || true
}
trap cleanup EXIT

echo "== generate: $small_files small files, $large_files x $large_mib MiB, $rows rows ($on)"
www=$bench/www
gen_site "$www" "$small_files" "$large_files" "$large_mib" 32000
web_bytes=$(du -sb "$www" | cut -f1)
make_databases "$db" "$pw" "$rows"
instance_toml "$bench/bench.toml" "$repo" "$www" "$db" "$pw"
for side in old new; do
    mkdir -p "$bench/state-$side"
    # The generated tree is root's: the bench allows root-owned instances, as the others do.
    echo 'allow-root-scripts = true' >"$bench/state-$side/controller.toml"
done
"$old" instance register --file "$bench/bench.toml" --state-dir "$bench/state-old" >/dev/null
"$new" instance register --file "$bench/bench.toml" --state-dir "$bench/state-new" >/dev/null

declare -A results
one() {
    local side=$1 i=$2 bin
    [ "$side" = old ] && bin=$old || bin=$new
    rm -f "$bench/$side.aps"
    results[backup-$side]+="$(time_run "$bench" "backup-$side-$i" "$bin" backup bench --to "$bench/$side.aps" --state-dir "$bench/state-$side" --json);"
    results[restore-$side]+="$(time_run "$bench" "restore-$side-$i" "$bin" restore bench --from "$bench/$side.aps" ${APS_BENCH_RESTORE_ARGS:-} --state-dir "$bench/state-$side" --json);"
}
for ((i = 1; i <= runs; i++)); do
    echo "== round $i of $runs"
    if ((i % 2)); then one old "$i"; one new "$i"; else one new "$i"; one old "$i"; fi
done

summary() { IFS=';' read -ra r <<<"${results[$1]%;}"; median_spread "${r[@]}"; }
echo
echo "old: $old"
echo "new: $new"
echo "data: web folder $((web_bytes / 1048576)) MiB in $((small_files + large_files)) files on $on, MariaDB $rows rows; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-24s %-22s %-22s %s\n' "run (median of $runs)" "old: wall s (spread)" "new: wall s (spread)" "new/old wall, old/new peak RSS MiB"
for op in backup restore; do
    read -r ow ospread orss < <(summary "$op-old")
    read -r nw nspread nrss < <(summary "$op-new")
    printf '%-24s %-22s %-22s %s\n' "$op" "$ow ($ospread)" "$nw ($nspread)" \
        "$(awk -v a="$nw" -v b="$ow" 'BEGIN { printf "%.2f", a / b }'), $((orss / 1024)) / $((nrss / 1024))"
done
