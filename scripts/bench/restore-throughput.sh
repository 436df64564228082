#!/usr/bin/env bash
# Restore throughput of the release `aps-controller` beside the plain tools on the same data.
#
#   scripts/bench/restore-throughput.sh [--small]
#
# Generates under $APS_RESTORE_BENCH_DIR (default /tmp/aps-restore-bench, never in the
# repository) an instance
# of the nobackup-sample fixture (no backup-script: the controller restores everything itself)
# with a web folder of >= 1 GiB (many small files + a few large random ones) and a MariaDB
# database of >= 100k rows (its PostgreSQL requirement gets an empty database). Then:
#   1. aps-controller backup (zstd level 3, the default);
#   2. aps-controller restore, with the safety snapshot (the default) and with
#      --no-safety-snapshot, each under /usr/bin/time -v;
#   3. the baseline on the same data: `zstd -d | tar -x` of a tar.zst of the same folder plus
#      `mariadb DB < dump.sql` of a mariadb-dump of the same database, under /usr/bin/time -v.
# Prints wall seconds, MiB/s of web data + dump and peak RSS for each, and the ratios.
# Needs the test servers (scripts/ci/start-services.sh), zstd and GNU time
# (apt-get install zstd time). `--small` makes ~100 MiB / 20k rows for a quick check.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
# shellcheck source=scripts/bench/common.sh
. scripts/bench/common.sh

small=0
[ "${1:-}" = --small ] && small=1
bench=${APS_RESTORE_BENCH_DIR:-/tmp/aps-restore-bench}
env_file=${APS_CI_STATE_DIR:-/tmp/aps-ci}/services.env
# shellcheck disable=SC1090
. "$env_file"

for tool in zstd /usr/bin/time mariadb mariadb-dump python3; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install zstd time)" >&2; exit 2; }
done

if [ "$small" = 1 ]; then
    small_files=20000 large_files=1 large_mib=64 rows=20000
else
    small_files=100000 large_files=3 large_mib=256 rows=200000
fi

echo "== build (release)"
cargo build --release -q --bin aps-controller
bin=$repo/target/release/aps-controller

rm -rf "$bench"
mkdir -p "$bench"
www=$bench/www
state=$bench/state

echo "== generate web folder: $small_files small files, $large_files x $large_mib MiB"
gen_site "$www" "$small_files" "$large_files" "$large_mib" 16000
web_bytes=$(du -sb "$www" | cut -f1)

echo "== databases"
db=apsbench_$$
pw=benchpw$$
admin_my=(mariadb -h "$APS_TEST_MYSQL_HOST" -P "$APS_TEST_MYSQL_PORT" -u "$APS_TEST_MYSQL_USER")
export MYSQL_PWD=$APS_TEST_MYSQL_PASSWORD
"${admin_my[@]}" -e "DROP DATABASE IF EXISTS $db; DROP USER IF EXISTS '$db'@'%';
  CREATE DATABASE $db CHARACTER SET utf8mb4; CREATE USER '$db'@'%' IDENTIFIED BY '$pw';
  GRANT ALL ON $db.* TO '$db'@'%';"
"${admin_my[@]}" "$db" -e "CREATE TABLE posts (id INT PRIMARY KEY, title VARCHAR(200),
  body TEXT, data BLOB) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
  SET SESSION max_recursive_iterations = 100000000;
  INSERT INTO posts WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < $rows)
  SELECT n, CONCAT('Post ', n, ' – grüße'), REPEAT(CONCAT('text ', n, ' '), 20),
         UNHEX(SHA2(n, 256)) FROM s;"
export PGPASSWORD=$APS_TEST_PG_PASSWORD
psql_admin=(psql -X -q -h "$APS_TEST_PG_HOST" -p "$APS_TEST_PG_PORT" -U "$APS_TEST_PG_USER" -d postgres)
"${psql_admin[@]}" -c "DROP DATABASE IF EXISTS $db" -c "DROP ROLE IF EXISTS $db" \
    -c "CREATE ROLE $db LOGIN PASSWORD '$pw'" -c "CREATE DATABASE $db OWNER $db"
cleanup() {
    MYSQL_PWD=$APS_TEST_MYSQL_PASSWORD "${admin_my[@]}" -e "DROP DATABASE IF EXISTS $db; DROP USER IF EXISTS '$db'@'%';" || true
    PGPASSWORD=$APS_TEST_PG_PASSWORD "${psql_admin[@]}" -c "DROP DATABASE IF EXISTS $db" -c "DROP ROLE IF EXISTS $db" || true
}
trap cleanup EXIT

cat > "$bench/bench.toml" <<EOF
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
"$bin" instance register --file "$bench/bench.toml" --state-dir "$state" >/dev/null

echo "== backup"
"$bin" backup bench --to "$bench/bench.aps" --state-dir "$state" --json >"$bench/backup.json"

# Drops the page cache when allowed, so every run starts cold alike; else all run warm alike.
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

# time_run NAME CMD... : runs under GNU time, prints "wall_s max_rss_kib".
time_run() {
    local name=$1
    shift
    drop_caches
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

echo "== restore (aps-controller, safety snapshot)"
read -r ctl_wall ctl_rss < <(time_run ctl-snapshot "$bin" restore bench --from "$bench/bench.aps" --state-dir "$state" --json)
echo "== restore (aps-controller, --no-safety-snapshot)"
read -r ctl2_wall ctl2_rss < <(time_run ctl-nosnap "$bin" restore bench --from "$bench/bench.aps" --no-safety-snapshot --state-dir "$state" --json)

echo "== baseline: tar.zst of the same folder, mariadb-dump of the same database"
tar -C "$www" -cf - . | zstd -q -3 -T0 -o "$bench/base.tar.zst"
MYSQL_PWD=$pw mariadb-dump -h "$APS_TEST_MYSQL_HOST" -P "$APS_TEST_MYSQL_PORT" -u "$db" \
    --single-transaction --hex-blob --no-tablespaces "$db" >"$bench/base.sql"
dump_bytes=$(stat -c %s "$bench/base.sql")
# The same job as the controller's restore minus verification and snapshot: empty the folder,
# unpack, load the dump (which drops and recreates its tables).
cat >"$bench/baseline.sh" <<EOF
set -e
rm -rf "$www" && mkdir -p "$www"
zstd -d -q -c "$bench/base.tar.zst" | tar -x -C "$www"
MYSQL_PWD=$pw mariadb -h "$APS_TEST_MYSQL_HOST" -P "$APS_TEST_MYSQL_PORT" -u "$db" "$db" <"$bench/base.sql"
EOF
read -r base_wall base_rss < <(time_run baseline bash "$bench/baseline.sh")
rows_after=$(MYSQL_PWD=$pw mariadb -N -h "$APS_TEST_MYSQL_HOST" -P "$APS_TEST_MYSQL_PORT" -u "$db" "$db" -e "SELECT COUNT(*) FROM posts")

total=$((web_bytes + dump_bytes))
mib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
rate() { awk -v b="$total" -v s="$1" 'BEGIN { printf "%.1f", b / 1048576 / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "data: web folder $(mib "$web_bytes") MiB ($small_files small files + $large_files x $large_mib MiB), MariaDB dump $(mib "$dump_bytes") MiB ($rows rows; $rows_after after the baseline load)"
echo "archive: $(mib "$(stat -c %s "$bench/bench.aps")") MiB; baseline tar.zst: $(mib "$(stat -c %s "$bench/base.tar.zst")") MiB"
printf '%-44s %8s %10s %12s %8s\n' "run" "wall s" "MiB/s" "peak RSS MiB" "ratio"
printf '%-44s %8s %10s %12s %8s\n' "zstd -d | tar -x + mariadb < dump (baseline)" "$base_wall" "$(rate "$base_wall")" "$((base_rss / 1024))" "1.00"
printf '%-44s %8s %10s %12s %8s\n' "aps-controller restore --no-safety-snapshot" "$ctl2_wall" "$(rate "$ctl2_wall")" "$((ctl2_rss / 1024))" "$(ratio "$ctl2_wall" "$base_wall")"
printf '%-44s %8s %10s %12s %8s\n' "aps-controller restore (safety snapshot)" "$ctl_wall" "$(rate "$ctl_wall")" "$((ctl_rss / 1024))" "$(ratio "$ctl_wall" "$base_wall")"
echo "(peak RSS of aps-controller is its own process; the database clients it runs are separate processes, as in the baseline's pipeline where GNU time reports the largest process)"
echo "files kept in $bench (remove with rm -rf $bench)"
