#!/usr/bin/env bash
# The repository store (rustic_core, restic format) beside today's archive store, on one
# generated instance, with the release `aps-controller`.
#
#   scripts/bench/repository-store.sh [--small]
#
# Generates under $APS_REPO_BENCH_DIR (default /tmp/aps-repo-bench, never in the repository)
# an instance of the nobackup-sample fixture with a web folder of 30,004 files / ~800 MB
# (text-like small files and a few random large ones; `--small`: 3,004 files / ~80 MB) and a
# MariaDB database of 20k rows, then measures, each run under GNU time (wall s, peak RSS),
# medians of 3, page cache warm:
#   archive store:  aps-controller backup --to FILE;  restore --from FILE --no-safety-snapshot
#                   (restores interleaved with the repository's, which meet the same file system)
#   repository:     `backup NAME` with [store] kind = "repository": first backup (a fresh
#                   repository each time), unchanged repeat, repeat after 1% of the files
#                   changed; `restore NAME --latest --no-safety-snapshot` (staged, checked
#                   against the snapshot's tagged manifest, then the controller's restore);
#   space:          repository bytes after 7 dailies with 1% of the files changed per day,
#                   beside one archive's bytes.
# Needs the test servers (scripts/ci/start-services.sh) and GNU time (apt-get install time).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
# shellcheck source=scripts/bench/common.sh
. scripts/bench/common.sh

small=0
[ "${1:-}" = --small ] && small=1
bench=${APS_REPO_BENCH_DIR:-/tmp/aps-repo-bench}
env_file=${APS_CI_STATE_DIR:-/tmp/aps-ci}/services.env
# shellcheck disable=SC1090
. "$env_file"

need_tools /usr/bin/time mariadb psql python3

site_sizes "$small"

# APS_BENCH_BIN=path/to/aps-controller skips the release build (e.g. a debug binary for a
# quick, indicative run; say so beside its numbers).
if [ -n "${APS_BENCH_BIN:-}" ]; then
    bin=$APS_BENCH_BIN
else
    echo "== build (release)"
    cargo build --release -q --bin aps-controller
    bin=$repo/target/release/aps-controller
fi

rm -rf "$bench"
mkdir -p "$bench"
www=$bench/www
state=$bench/state

echo "== generate web folder: $small_files small files, $large_files x $large_mib MiB"
gen_site "$www" "$small_files" "$large_files" "$large_mib" 32000
web_bytes=$(du -sb "$www" | cut -f1)
web_files=$(find "$www" -type f | wc -l)

echo "== database"
db=apsrepo_$$
pw=benchpw$$
admin_my=(mariadb -h "$APS_TEST_MYSQL_HOST" -P "$APS_TEST_MYSQL_PORT" -u "$APS_TEST_MYSQL_USER")
export MYSQL_PWD=$APS_TEST_MYSQL_PASSWORD
"${admin_my[@]}" -e "DROP DATABASE IF EXISTS $db; DROP USER IF EXISTS '$db'@'%';
  CREATE DATABASE $db CHARACTER SET utf8mb4; CREATE USER '$db'@'%' IDENTIFIED BY '$pw';
  GRANT ALL ON $db.* TO '$db'@'%';"
"${admin_my[@]}" "$db" -e "CREATE TABLE posts (id INT PRIMARY KEY, title VARCHAR(200),
  body TEXT) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
  SET SESSION max_recursive_iterations = 100000000;
  INSERT INTO posts WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < $rows)
  SELECT n, CONCAT('Post ', n), REPEAT(CONCAT('text ', n, ' '), 20) FROM s;"
unset MYSQL_PWD
# The package's PostgreSQL requirement gets an empty database.
psql_admin=(psql -X -q -h "$APS_TEST_PG_HOST" -p "$APS_TEST_PG_PORT" -U "$APS_TEST_PG_USER" -d postgres)
PGPASSWORD=$APS_TEST_PG_PASSWORD "${psql_admin[@]}" -c "DROP DATABASE IF EXISTS $db" -c "DROP ROLE IF EXISTS $db" \
    -c "CREATE ROLE $db LOGIN PASSWORD '$pw'" -c "CREATE DATABASE $db OWNER $db"
cleanup() {
    MYSQL_PWD=$APS_TEST_MYSQL_PASSWORD "${admin_my[@]}" -e "DROP DATABASE IF EXISTS $db; DROP USER IF EXISTS '$db'@'%';" || true
    PGPASSWORD=$APS_TEST_PG_PASSWORD "${psql_admin[@]}" -c "DROP DATABASE IF EXISTS $db" -c "DROP ROLE IF EXISTS $db" || true
}
trap cleanup EXIT

cat >"$bench/bench.toml" <<EOF
name = "bench"
package = "$repo/fixtures/packages/nobackup-sample"
base-url = "http://bench.example.test/"
[web-dirs]
"/" = "$www"
[settings]
admin_password = "pw"
[databases.main]
type = "mysql"
name = "$db"
login = "$db"
password = "$pw"
host = "$APS_TEST_MYSQL_HOST"
port = $APS_TEST_MYSQL_PORT
[databases.stats]
type = "postgresql"
name = "$db"
login = "$db"
password = "$pw"
host = "$APS_TEST_PG_HOST"
port = $APS_TEST_PG_PORT
EOF
# The generated tree is root's: the bench allows root-owned instances, as run-many.sh does.
mkdir -p "$state"
echo 'allow-root-scripts = true' >"$state/controller.toml"
"$bin" instance register --file "$bench/bench.toml" --state-dir "$state" >/dev/null

# time_run NAME CMD... : runs under GNU time, prints "wall_s max_rss_kib".
time_run() {
    local name=$1
    shift
    /usr/bin/time -v -o "$bench/$name.time" "$@" >"$bench/$name.out" 2>&1 || {
        cat "$bench/$name.out" >&2
        exit 1
    }
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$bench/$name.time" |
        awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$bench/$name.time")
    echo "$wall $rss"
}
# median3 "w1 r1" "w2 r2" "w3 r3": median wall, largest RSS (KiB).
median3() {
    printf '%s\n' "$@" | sort -n -k1,1 | awk '{w[NR]=$1; if ($2 > r) r = $2} END {print w[2], r}'
}
# change_one_percent GEN: rewrites 1% of the small files.
change_one_percent() { change_files "$www" "$small_files" "$1"; }
repo_toml() {
    printf '[store]\nkind = "repository"\npath = "%s"\nkey-file = "%s.key"\npassword-file = "%s.password"\n' "$1" "$1" "$1" >"$state/panel.toml"
}
fresh_repo() {
    rm -rf "$1" "$1.key" "$1.password" "$state/repository-cache"
    repo_toml "$1"
    "$bin" store init --state-dir "$state" >/dev/null
}

echo "== archive store: backup x3"
runs=()
for i in 1 2 3; do
    rm -f "$bench/bench.aps"
    runs+=("$(time_run arch-backup-$i "$bin" backup bench --to "$bench/bench.aps" --state-dir "$state" --json)")
done
read -r arch_b_wall arch_b_rss < <(median3 "${runs[@]}")
archive_bytes=$(stat -c %s "$bench/bench.aps")

echo "== repository: first backup x3 (fresh repository each)"
runs=()
for i in 1 2 3; do
    fresh_repo "$bench/repo-first-$i"
    runs+=("$(time_run repo-first-$i "$bin" backup bench --state-dir "$state" --json)")
done
read -r first_wall first_rss < <(median3 "${runs[@]}")
repo_toml "$bench/repo-first-3"
echo "== repository: unchanged repeat x3"
runs=()
for i in 1 2 3; do
    runs+=("$(time_run repo-same-$i "$bin" backup bench --state-dir "$state" --json)")
done
read -r same_wall same_rss < <(median3 "${runs[@]}")
echo "== repository: repeat after 1% changed x3"
runs=()
for i in 1 2 3; do
    change_one_percent "$i"
    runs+=("$(time_run repo-change-$i "$bin" backup bench --state-dir "$state" --json)")
done
read -r change_wall change_rss < <(median3 "${runs[@]}")
# Each restore empties the web folder and writes it again; ext4 then searches past the
# inodes freed in the last minutes, so every restore is slower than the one before it.
# Interleaved, the two kinds of restore meet the same conditions.
echo "== restores, interleaved: archive store (--from), repository (--latest), x3"
runs=()
repo_runs=()
arch_restore() {
    runs+=("$(time_run arch-restore-$1 "$bin" restore bench --from "$bench/bench.aps" --no-safety-snapshot --state-dir "$state" --json)")
}
repo_restore() {
    repo_runs+=("$(time_run repo-restore-$1 "$bin" restore bench --latest --no-safety-snapshot --state-dir "$state" --json)")
}
# In the order A B B A A B, so that neither kind always comes second.
arch_restore 1
repo_restore 1
repo_restore 2
arch_restore 2
arch_restore 3
repo_restore 3
read -r arch_r_wall arch_r_rss < <(median3 "${runs[@]}")
read -r restore_wall restore_rss < <(median3 "${repo_runs[@]}")

echo "== repository: 7 dailies with 1% changed per day"
fresh_repo "$bench/repo-week"
for day in 1 2 3 4 5 6 7; do
    change_one_percent $((100 + day))
    "$bin" backup bench --state-dir "$state" >/dev/null
done
week_bytes=$(du -sb "$bench/repo-week" | cut -f1)

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "binary: $bin"
echo "data: web folder $(mib "$web_bytes") MiB in $web_files files, MariaDB $rows rows; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg) (shared machine)"
printf '%-46s %8s %12s %s\n' "run (median of 3)" "wall s" "peak RSS MiB" "vs archive"
printf '%-46s %8s %12s %s\n' "archive store: backup --to" "$arch_b_wall" "$((arch_b_rss / 1024))" "1.00"
printf '%-46s %8s %12s %s\n' "archive store: restore --no-safety-snapshot" "$arch_r_wall" "$((arch_r_rss / 1024))" "1.00"
printf '%-46s %8s %12s %s\n' "repository: first backup" "$first_wall" "$((first_rss / 1024))" "$(ratio "$first_wall" "$arch_b_wall") (goal <= 1.5)"
printf '%-46s %8s %12s %s\n' "repository: unchanged repeat" "$same_wall" "$((same_rss / 1024))" "$(ratio "$arch_b_wall" "$same_wall")x faster (goal >= 5)"
printf '%-46s %8s %12s %s\n' "repository: repeat after 1% changed" "$change_wall" "$((change_rss / 1024))" "$(ratio "$change_wall" "$arch_b_wall")"
printf '%-46s %8s %12s %s\n' "repository: restore --latest --no-safety-snap." "$restore_wall" "$((restore_rss / 1024))" "$(ratio "$restore_wall" "$arch_r_wall") (goal <= 1.2, <= 256 MiB)"
echo "space: one archive $(mib "$archive_bytes") MiB; repository after 7 dailies $(mib "$week_bytes") MiB = $(ratio "$week_bytes" "$archive_bytes") archives (goal <= 1.3)"
echo "(both restores replace the instance's folder and load its databases; the repository's first streams the snapshot into a tagged archive)"
echo "files kept in $bench (remove with rm -rf $bench)"
