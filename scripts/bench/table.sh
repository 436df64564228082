#!/usr/bin/env bash
# Every row of the speed table (docs/performance.md) with its yardstick, in one invocation:
# paired and alternating (ours, yardstick, ours …; the order turned round every other round),
# wall time and peak RSS under GNU time, printed as a Markdown table.
#
#   scripts/bench/table.sh [--small]
#
# The data, never in the repository: a web folder of 800 MB in 30,005 files (PHP-like text,
# one small file in five random bytes, two 128 MiB random files; `--small`: 3,005 files and
# 2 x 13 MiB, ~80 MB, a minute's try) under $APS_TABLE_DIR (default /tmp/aps-table), a copy on
# a tmpfs mounted at $APS_TABLE_DIR/t when run as root (otherwise the tmpfs rows are skipped
# and the backup and repository rows read the disk copy), 1,000 small instances for the
# many-sites row (100 with `--small`) and a generated package of 30,000 files (3,000) for the
# package check row.
# The page cache is warm for every run (nothing drops it).
#
# Environment:
#   RUNS=N      rounds per row (default 5); medians with [min–max] are printed
#   OLD=PATH    another commit's release aps-controller: an "old" column beside "new"
#   BIN=PATH    the aps-controller measured as "new" (default: `cargo build --release`)
#   ROWS="..."  only these rows (keys: backup restore-tmpfs restore-disk repo check many;
#               default all)
#   MANY=N      instances of the many-sites row (default 1000; `--small`: 100)
# Needs GNU time, zstd, tar, restic (scripts/ci/install-deps.sh), zip, unzip, python3, and the
# test account aps-tenant1 for the many-sites row as root (scripts/ci/test-user.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
# shellcheck source=scripts/bench/common.sh
. scripts/bench/common.sh

small=0
[ "${1:-}" = --small ] && small=1
runs=${RUNS:-5}
rows=${ROWS:-backup restore-tmpfs restore-disk repo check many}
bench=${APS_TABLE_DIR:-/tmp/aps-table}
need_tools /usr/bin/time zstd tar restic zip unzip python3
wants() { [[ " $rows " == *" $1 "* ]]; }

if [ "$small" = 1 ]; then
    small_files=3003 large_mib=13 pkg_files=3000 many=${MANY:-100}
else
    small_files=30003 large_mib=128 pkg_files=30000 many=${MANY:-1000}
fi

if [ -z "${BIN:-}" ]; then
    echo "== build (release)"
    cargo build --release -q --bin aps-controller
    BIN=${CARGO_TARGET_DIR:-$repo/target}/release/aps-controller
fi

mountpoint -q "$bench/t" && umount "$bench/t"
rm -rf "$bench"
mkdir -p "$bench/t" "$bench/log" "$bench/disk"
t=$bench/t
on_tmpfs=0
if [ "$(id -u)" = 0 ] && [ "${APS_BENCH_TMPFS:-1}" = 1 ]; then
    mount -t tmpfs -o size=6g,mode=0755 tmpfs "$t"
    on_tmpfs=1
fi
cleanup() {
    cd /
    if mountpoint -q "$t"; then umount "$t" || true; fi
}
trap cleanup EXIT
if [ "$on_tmpfs" = 0 ]; then
    echo "not root (or APS_BENCH_TMPFS=0): no tmpfs; the restore rows on tmpfs are skipped" >&2
    rows=${rows//restore-tmpfs/}
fi
where=$([ "$on_tmpfs" = 1 ] && echo tmpfs || echo disk)

# Copies, so that a rebuild during the run does not change what is measured.
cp "$BIN" "$bench/aps-new"
bins=(new)
if [ -n "${OLD:-}" ]; then
    cp "$OLD" "$bench/aps-old"
    bins+=(old)
fi
bin_of() { echo "$bench/aps-$1"; }
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$t/restic-cache
restic_q() { restic --quiet "$@"; }

declare -A res
# timed KEY SIDE ROUND CMD…: one measured run, kept as "wall rss" under KEY-SIDE.
timed() {
    local key=$1 side=$2 i=$3
    shift 3
    res[$key-$side]+="$(time_run "$bench/log" "$key-$side-$i" "$@");"
}
# paired KEY SIDE…: RUNS rounds of row_KEY SIDE ROUND for each side, the order turned round
# every other round; before_KEY ROUND first when it is defined.
paired() {
    local key=$1 i s
    shift
    local sides=("$@") order
    echo "== $key (${sides[*]}) x $runs"
    for ((i = 1; i <= runs; i++)); do
        if declare -F "before_$key" >/dev/null; then "before_$key" "$i"; fi
        order=()
        if ((i % 2)); then order=("${sides[@]}"); else for s in "${sides[@]}"; do order=("$s" "${order[@]}"); done; fi
        for s in "${order[@]}"; do "row_$key" "$s" "$i"; done
    done
}

echo "== generate: $small_files small files (one in five random) + 2 x $large_mib MiB"
www=$t/www
gen_site "$www" "$small_files" 2 "$large_mib" 38000 5
web_bytes=$(du -sb "$www" | cut -f1)
web_files=$(find "$www" -type f | wc -l)
dwww=$bench/disk/www
if wants restore-disk; then cp -a "$www" "$dwww"; fi

# One state folder for each binary and place (tmpfs, disk, repository): the generated trees are
# root's, so root-owned instances are allowed, as in the other benches.
new_state() {
    mkdir -p "$1"
    echo 'allow-root-scripts = true' >"$1/controller.toml"
}
# instance NAME WWW: an instance of the nobackup-sample package (the controller archives the
# folder itself) without its databases: the table compares web folders with tar and restic.
cp -r fixtures/packages/nobackup-sample "$bench/web-package"
rm "$bench/web-package/APP-LIST.xml"
python3 - "$bench/web-package/APP-META.xml" <<'PY'
import re, sys
with open(sys.argv[1]) as f:
    meta = f.read()
with open(sys.argv[1], "w") as f:
    f.write(re.sub(r"\s*<db:db>.*?</db:db>", "", meta, flags=re.S))
PY
instance() { web_instance_toml "$bench/$1.toml" "$1" "$bench/web-package" "$2"; }
instance bench "$www"
instance dbench "$dwww"
for s in "${bins[@]}"; do
    new_state "$t/state-$s"
    "$(bin_of "$s")" instance register --file "$bench/bench.toml" --state-dir "$t/state-$s" >/dev/null
    if wants restore-disk; then
        new_state "$bench/disk/state-$s"
        "$(bin_of "$s")" instance register --file "$bench/dbench.toml" --state-dir "$bench/disk/state-$s" >/dev/null
    fi
done

# ---- archive backup --------------------------------------------------------------------------
row_backup() {
    if [ "$1" = yard ]; then
        rm -f "$t/base.tar.zst"
        timed backup yard "$2" bash -c "tar -C '$www' -cf - . | zstd -q -3 -T0 -o '$t/base.tar.zst'"
    else
        rm -f "$t/arch-$1.aps"
        timed backup "$1" "$2" "$(bin_of "$1")" backup bench --to "$t/arch-$1.aps" --state-dir "$t/state-$1" --json
    fi
}
ensure_archives() {
    local s
    [ -e "$t/base.tar.zst" ] || tar -C "$www" -cf - . | zstd -q -3 -T0 -o "$t/base.tar.zst"
    for s in "${bins[@]}"; do
        [ -e "$t/arch-$s.aps" ] ||
            "$(bin_of "$s")" backup bench --to "$t/arch-$s.aps" --state-dir "$t/state-$s" >/dev/null
    done
}
wants backup && paired backup "${bins[@]}" yard

# ---- archive restore, tmpfs and disk ---------------------------------------------------------
# restore_row KEY PLACE(t|disk) SIDE ROUND [--no-safety-snapshot]
restore_row() {
    local key=$1 dir=$2 side=$3 i=$4 name=bench state
    shift 4
    [ "$dir" = "$t" ] || name=dbench
    if [ "$side" = yard ]; then
        rm -rf "$dir/fresh" && mkdir "$dir/fresh"
        timed "$key" yard "$i" bash -c "zstd -dc '$dir/base.tar.zst' | tar -x -C '$dir/fresh'"
        rm -rf "$dir/fresh"
    else
        [ "$dir" = "$t" ] && state=$t/state-$side || state=$bench/disk/state-$side
        timed "$key" "$side" "$i" "$(bin_of "$side")" restore "$name" --from "$dir/arch-$side.aps" "$@" --state-dir "$state" --json
    fi
}
row_restore_tmpfs_nosnap() { restore_row restore_tmpfs_nosnap "$t" "$1" "$2" --no-safety-snapshot; }
row_restore_tmpfs() { restore_row restore_tmpfs "$t" "$1" "$2"; }
row_restore_disk_nosnap() { restore_row restore_disk_nosnap "$bench/disk" "$1" "$2" --no-safety-snapshot; }
row_restore_disk() { restore_row restore_disk "$bench/disk" "$1" "$2"; }
if wants restore-tmpfs; then
    ensure_archives
    paired restore_tmpfs_nosnap "${bins[@]}" yard
    paired restore_tmpfs "${bins[@]}" yard
fi
if wants restore-disk; then
    ensure_archives
    cp "$t/base.tar.zst" "$bench/disk/"
    for s in "${bins[@]}"; do
        "$(bin_of "$s")" backup dbench --to "$bench/disk/arch-$s.aps" --state-dir "$bench/disk/state-$s" >/dev/null
    done
    paired restore_disk_nosnap "${bins[@]}" yard
    paired restore_disk "${bins[@]}" yard
    rm -rf "$dwww"
fi

# ---- repository store ------------------------------------------------------------------------
# rstate SIDE: the state folder whose store is the repository $t/repo-SIDE.
rstate() { echo "$t/rstate-$1"; }
fresh_repo() {
    local state
    state=$(rstate "$1")
    rm -rf "$t/repo-$1" "$t/repo-$1.key" "$t/repo-$1.password" "$state/repository-cache"
    printf '[store]\nkind = "repository"\npath = "%s"\nkey-file = "%s.key"\npassword-file = "%s.password"\n' \
        "$t/repo-$1" "$t/repo-$1" "$t/repo-$1" >"$state/panel.toml"
    "$(bin_of "$1")" store init --state-dir "$state" >/dev/null
}
row_repo_first() {
    if [ "$1" = yard ]; then
        rm -rf "$t/restic"
        restic_q -r "$t/restic" init >/dev/null
        timed repo_first yard "$2" bash -c "cd '$www' && restic --quiet -r '$t/restic' backup ."
    else
        fresh_repo "$1"
        timed repo_first "$1" "$2" "$(bin_of "$1")" backup bench --state-dir "$(rstate "$1")" --json
    fi
}
# repo_backup KEY SIDE ROUND: a backup into the side's repository, or restic's.
repo_backup() {
    if [ "$2" = yard ]; then
        timed "$1" yard "$3" bash -c "cd '$www' && restic --quiet -r '$t/restic' backup ."
    else
        timed "$1" "$2" "$3" "$(bin_of "$2")" backup bench --state-dir "$(rstate "$2")" --json
    fi
}
row_repo_same() { repo_backup repo_same "$@"; }
before_repo_change() { change_files "$www" "$small_files" "$1"; }
row_repo_change() { repo_backup repo_change "$@"; }
row_tiny() {
    if [ "$1" = yard ]; then
        timed tiny yard "$2" bash -c "cd '$t/tiny' && restic --quiet -r '$t/restic-tiny' backup ."
    else
        timed tiny "$1" "$2" "$(bin_of "$1")" backup tiny --state-dir "$(rstate "$1")" --json
    fi
}
row_repo_restore() {
    if [ "$1" = yard ]; then
        timed repo_restore yard "$2" bash -c "rm -rf '$www' && restic --quiet -r '$t/restic' restore latest --target '$www'"
    else
        timed repo_restore "$1" "$2" "$(bin_of "$1")" restore bench --latest --no-safety-snapshot --state-dir "$(rstate "$1")" --json
    fi
}
if wants repo; then
    mkdir -p "$t/tiny/css"
    for f in index.php config.php css/site.css robots.txt; do echo "<?php // $f" >"$t/tiny/$f"; done
    instance tiny "$t/tiny"
    for s in "${bins[@]}"; do
        new_state "$(rstate "$s")"
        "$(bin_of "$s")" instance register --file "$bench/bench.toml" --state-dir "$(rstate "$s")" >/dev/null
        "$(bin_of "$s")" instance register --file "$bench/tiny.toml" --state-dir "$(rstate "$s")" >/dev/null
    done
    paired repo_first "${bins[@]}" yard
    paired repo_same "${bins[@]}" yard
    paired repo_change "${bins[@]}" yard
    restic_q -r "$t/restic-tiny" init >/dev/null
    (cd "$t/tiny" && restic_q -r "$t/restic-tiny" backup . >/dev/null)
    for s in "${bins[@]}"; do "$(bin_of "$s")" backup tiny --state-dir "$(rstate "$s")" >/dev/null; done
    paired tiny "${bins[@]}" yard
    paired repo_restore "${bins[@]}" yard
fi

# ---- the install's package check -------------------------------------------------------------
# Both unpack where the site is (tmpfs as root): the check's own temporary folder is TMPDIR's.
row_check() {
    if [ "$1" = yard ]; then
        rm -rf "$t/unzipped"
        timed check yard "$2" unzip -q "$t/pkg.app.zip" -d "$t/unzipped"
        rm -rf "$t/unzipped"
    else
        timed check "$1" "$2" env TMPDIR="$t" "$(bin_of "$1")" package check "$t/pkg.app.zip"
    fi
}
if wants check; then
    echo "== generate: a package of $pkg_files files"
    gen_package "$bench/pkg" "$pkg_files"
    (cd "$bench/pkg" && zip -q -r "$t/pkg.app.zip" .)
    rm -rf "$bench/pkg"
    paired check "${bins[@]}" yard
fi

# ---- many sites: one run into the repository, and into the archive store ---------------------
row_many() {
    local side=$1 bin state
    [ "$side" = yard ] && bin=$(bin_of new) || bin=$(bin_of "$side")
    state=$bench/many/state-$side
    timed many "$side" "$2" "$bin" run --periodicity daily --state-dir "$state" --json
}
if wants many; then
    echo "== register $many small instances (x $((${#bins[@]} + 1)))"
    for s in "${bins[@]}" yard; do
        state=$bench/many/state-$s
        if [ "$s" = yard ]; then
            register_many "$(bin_of new)" "$state" "$bench/many" "$many"
            continue
        fi
        register_many "$(bin_of "$s")" "$state" "$bench/many" "$many"
        printf '[store]\nkind = "repository"\npath = "%s"\nkey-file = "%s.key"\npassword-file = "%s.password"\n' \
            "$t/many-repo-$s" "$t/many-repo-$s" "$t/many-repo-$s" >"$state/panel.toml"
        "$(bin_of "$s")" store init --state-dir "$state" >/dev/null
    done
    paired many "${bins[@]}" yard
fi

# ---- the table -------------------------------------------------------------------------------
summary() {
    local r
    IFS=';' read -ra r <<<"${res[$1]%;}"
    median_spread "${r[@]}"
}
# cpu_median KEY: the median CPU seconds (user + system) of KEY's runs.
cpu_median() {
    tr ';' '\n' <<<"${res[$1]%;}" | sort -n -k3,3 | awk '{c[NR] = $3}
        END { printf "%.2f", (NR % 2) ? c[(NR + 1) / 2] : (c[NR / 2] + c[NR / 2 + 1]) / 2 }'
}
cell() {
    [ -n "${res[$1]:-}" ] || { printf '–'; return; }
    local m sp rss
    read -r m sp rss < <(summary "$1")
    printf '%.2f s [%s], CPU %s s, %d MiB' "$m" "$(awk -v s="$sp" 'BEGIN { split(s, a, "-"); printf "%.2f–%.2f", a[1], a[2] }')" \
        "$(cpu_median "$1")" $((rss / 1024))
}
ratio() {
    [ -n "${res[$1]:-}" ] && [ -n "${res[$2]:-}" ] || { printf '–'; return; }
    local a b
    read -r a _ < <(summary "$1")
    read -r b _ < <(summary "$2")
    awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }'
}
# line WORK OURS_KEY YARD_KEY YARD_WORDS
line() {
    local old_cell='' old_ratio=''
    if [ -n "${OLD:-}" ]; then
        old_cell=" $(cell "$2-old") |"
        old_ratio=" $(ratio "$2-old" "$3") |"
    fi
    printf '| %s | %s |%s %s: %s | %s |%s\n' "$1" "$(cell "$2-new")" "$old_cell" "$4" "$(cell "$3")" \
        "$(ratio "$2-new" "$3")" "$old_ratio"
}
echo
echo "binary: new $BIN${OLD:+, old $OLD}"
echo "data: web folder $((web_bytes / 1000000)) MB in $web_files files ($where for the backup and repository rows); $(nproc) CPUs; load at the end $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC'); RUNS=$runs, page cache warm"
echo
if [ -n "${OLD:-}" ]; then
    echo "| work | new: wall median [min–max], CPU median, peak | old: the same | yardstick: the same | new / yardstick (wall) | old / yardstick (wall) |"
    echo "| --- | --- | --- | --- | --- | --- |"
else
    echo "| work | ours: wall median [min–max], CPU median, peak | yardstick: the same | ours / yardstick (wall) |"
    echo "| --- | --- | --- | --- |"
fi
wants backup && line "archive backup \`--to\` ($where)" backup backup-yard '`tar -cf - | zstd -3 -T0`'
wants restore-tmpfs && line "archive restore, no safety snapshot (tmpfs)" restore_tmpfs_nosnap restore_tmpfs_nosnap-yard '`zstd -dc | tar -x`, fresh folder'
wants restore-tmpfs && line "archive restore, default (tmpfs)" restore_tmpfs restore_tmpfs-yard '`zstd -dc | tar -x`, fresh folder'
wants restore-disk && line "archive restore, no safety snapshot (disk)" restore_disk_nosnap restore_disk_nosnap-yard '`zstd -dc | tar -x`, fresh folder'
wants restore-disk && line "archive restore, default (disk)" restore_disk restore_disk-yard '`zstd -dc | tar -x`, fresh folder'
if wants repo; then
    line "repository, first backup" repo_first repo_first-yard '`restic backup`'
    wants backup && line "repository, first backup" repo_first backup-new 'our archive backup'
    line "repository, unchanged repeat" repo_same repo_same-yard '`restic backup`'
    wants backup && line "repository, unchanged repeat" repo_same backup-new 'our archive backup'
    line "repository, 1% of files changed" repo_change repo_change-yard '`restic backup`'
    line "repository, tiny site's repeat" tiny tiny-yard '`restic backup`'
    line "repository restore \`--latest\`, no safety snapshot ($where)" repo_restore repo_restore-yard '`rm -rf && restic restore`'
fi
wants check && line "\`package check\` of a $pkg_files-file .app.zip" check check-yard '`unzip`'
wants many && line "\`run --periodicity daily\`, $many instances into the repository" many many-yard 'the same run into the archive store'
echo
echo "logs in $bench/log (remove the folder with rm -rf $bench)"
