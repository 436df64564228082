# Shared by the bench scripts (sourced, not run): the generated site, its databases, the
# instance file, and timing under GNU time. Nothing here is committed data: every byte is made
# under the bench folder at run time.

# need_tools TOOL…: exits 2 naming the first missing tool.
need_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install time)" >&2; exit 2; }
    done
}

# site_sizes SMALL(0|1): sets small_files, large_files, large_mib and rows for the generated
# instance (`--small`: 3,000 small files and 4 x 8 MiB; else 30,000 and 4 x 80 MiB).
site_sizes() {
    if [ "$1" = 1 ]; then
        small_files=3000 large_files=4 large_mib=8 rows=20000
    else
        small_files=30000 large_files=4 large_mib=80 rows=20000
    fi
}

# gen_site DIR SMALL_FILES LARGE_FILES LARGE_MIB MAX_SMALL_BYTES [RANDOM_EVERY]: text-like small
# files (as PHP, HTML and CSS are, with a random tail) and a few incompressible large ones;
# with RANDOM_EVERY=N every Nth small file is random bytes too (images, minified archives).
gen_site() {
    python3 - "$@" <<'PY'
import os, sys, random
www, n_small, n_large, large_mib, max_small = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
every = int(sys.argv[6]) if len(sys.argv) > 6 else 0
random.seed(42)
words = [b"lorem", b"ipsum", b"dolor", b"sit", b"amet", "grüße".encode(), b"<?php", b"echo", b"$var;", b"\n"]
os.makedirs(os.path.join(www, "uploads"), exist_ok=True)
for i in range(n_small):
    d = os.path.join(www, "wp-content", f"d{i // 500:03d}")
    if i % 500 == 0:
        os.makedirs(d, exist_ok=True)
    size = random.randint(200, max_small)
    if every and i % every == every - 1:
        body = os.urandom(size)
    else:
        body = b" ".join(random.choice(words) for _ in range(size // 6)) + os.urandom(64)
    with open(os.path.join(d, f"file-{i}.php"), "wb") as f:
        f.write(body)
for i in range(n_large):
    with open(os.path.join(www, "uploads", f"video-{i}.mp4"), "wb") as f:
        for _ in range(large_mib):
            f.write(os.urandom(1 << 20))
PY
}

# make_databases NAME PASSWORD ROWS: a MariaDB database of ROWS rows and an empty PostgreSQL
# one, both owned by a login NAME; drop_databases NAME removes them (call it from a trap).
make_databases() {
    local db=$1 pw=$2 rows=$3
    MYSQL_PWD=$APS_TEST_MYSQL_PASSWORD mariadb -h "$APS_TEST_MYSQL_HOST" -P "$APS_TEST_MYSQL_PORT" -u "$APS_TEST_MYSQL_USER" -e "
      DROP DATABASE IF EXISTS $db; DROP USER IF EXISTS '$db'@'%';
      CREATE DATABASE $db CHARACTER SET utf8mb4; CREATE USER '$db'@'%' IDENTIFIED BY '$pw';
      GRANT ALL ON $db.* TO '$db'@'%';
      USE $db;
      CREATE TABLE posts (id INT PRIMARY KEY, title VARCHAR(200), body TEXT, data BLOB)
        ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
      SET SESSION max_recursive_iterations = 100000000;
      INSERT INTO posts WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < $rows)
        SELECT n, CONCAT('Post ', n, ' – grüße'), REPEAT(CONCAT('text ', n, ' '), 20),
               UNHEX(SHA2(n, 256)) FROM s;"
    PGOPTIONS=--client-min-messages=warning PGPASSWORD=$APS_TEST_PG_PASSWORD psql -X -q -h "$APS_TEST_PG_HOST" -p "$APS_TEST_PG_PORT" -U "$APS_TEST_PG_USER" -d postgres \
        -c "DROP DATABASE IF EXISTS $db" -c "DROP ROLE IF EXISTS $db" \
        -c "CREATE ROLE $db LOGIN PASSWORD '$pw'" -c "CREATE DATABASE $db OWNER $db"
}
drop_databases() {
    local db=$1
    MYSQL_PWD=$APS_TEST_MYSQL_PASSWORD mariadb -h "$APS_TEST_MYSQL_HOST" -P "$APS_TEST_MYSQL_PORT" -u "$APS_TEST_MYSQL_USER" \
        -e "DROP DATABASE IF EXISTS $db; DROP USER IF EXISTS '$db'@'%';" || true
    PGOPTIONS=--client-min-messages=warning PGPASSWORD=$APS_TEST_PG_PASSWORD psql -X -q -h "$APS_TEST_PG_HOST" -p "$APS_TEST_PG_PORT" -U "$APS_TEST_PG_USER" -d postgres \
        -c "DROP DATABASE IF EXISTS $db" -c "DROP ROLE IF EXISTS $db" || true
}

# web_instance_toml FILE NAME PACKAGE WWW: the instance NAME of the package folder PACKAGE with
# one web folder, WWW, and no database.
web_instance_toml() {
    cat >"$1" <<TOML
name = "$2"
package = "$3"
base-url = "http://$2.example.test/"
[web-dirs]
"/" = "$4"
[settings]
admin_password = "pw"
TOML
}

# instance_toml FILE REPO WWW DB PASSWORD: the nobackup-sample instance "bench" (no
# backup-script: the controller archives and restores everything itself).
instance_toml() {
    web_instance_toml "$1" bench "$2/fixtures/packages/nobackup-sample" "$3"
    cat >>"$1" <<TOML
[databases.main]
type = "mysql"
name = "$4"
login = "$4"
password = "$5"
host = "$APS_TEST_MYSQL_HOST"
port = $APS_TEST_MYSQL_PORT
[databases.stats]
type = "postgresql"
name = "$4"
login = "$4"
password = "$5"
host = "$APS_TEST_PG_HOST"
port = $APS_TEST_PG_PORT
TOML
}

# time_run DIR NAME CMD... : runs CMD under GNU time, output in DIR/NAME.*; prints
# "wall_s max_rss_kib cpu_s" (cpu: user + system of CMD and its children). A failing command
# stops the bench with its output.
time_run() {
    local dir=$1 name=$2
    shift 2
    /usr/bin/time -v -o "$dir/$name.time" "$@" >"$dir/$name.out" 2>&1 || {
        cat "$dir/$name.out" >&2
        exit 1
    }
    local wall rss cpu
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$dir/$name.time" |
        awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/$name.time")
    cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$dir/$name.time")
    echo "$wall $rss $cpu"
}

# median_spread "w r" ...: median wall, min-max of the walls, largest RSS (KiB).
median_spread() {
    printf '%s\n' "$@" | sort -n -k1,1 | awk '{w[NR]=$1; if ($2 > r) r = $2}
        END { m = (NR % 2) ? w[(NR + 1) / 2] : (w[NR / 2] + w[NR / 2 + 1]) / 2; print m, w[1] "-" w[NR], r }'
}

# change_files DIR SMALL_FILES GEN: appends to 1% of the small files gen_site made (a day's
# edits and uploads), a different 1% for each GEN.
change_files() {
    python3 - "$@" <<'PY'
import os, sys, random
www, n, gen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(gen)
for i in rng.sample(range(n), max(1, n // 100)):
    p = os.path.join(www, "wp-content", f"d{i // 500:03d}", f"file-{i}.php")
    with open(p, "ab") as f:
        f.write(os.urandom(256))
PY
}

# register_many BIN STATE WORK N: N small sh-sample instances (a page and an empty folder each,
# a `sufficient` sh backup-script) registered in STATE, their folders under WORK. As root with
# the test account aps-tenant1 they are its, so every backup drops to it as in production;
# else root-owned folders are allowed to run as root. Run from the repository's top folder.
register_many() {
    local bin=$1 state=$2 work=$3 n=$4 i name tenant=
    mkdir -p "$state"
    if [ "$(id -u)" -eq 0 ] && id aps-tenant1 >/dev/null 2>&1; then
        tenant=aps-tenant1
    else
        echo 'allow-root-scripts = true' >"$state/controller.toml"
    fi
    for i in $(seq -w 0 $((n - 1))); do
        name=site$i
        if [ ! -d "$work/www/$name" ]; then
            mkdir -p "$work/www/$name/cache"
            printf '<h1>%s</h1>\n' "$name" >"$work/www/$name/index.html"
            [ -z "$tenant" ] || chown -R "$tenant:" "$work/www/$name"
        fi
        web_instance_toml "$work/$name.toml" "$name" "$PWD/fixtures/packages/sh-sample" "$work/www/$name"
        "$bin" instance register --file "$work/$name.toml" --state-dir "$state" >/dev/null
    done
}

# gen_package DIR FILES: the nobackup-sample package with FILES generated text files under
# htdocs/, and an APP-LIST.xml that lists every file with its size and SHA-256. Run from the
# repository's top folder.
gen_package() {
    rm -rf "$1"
    cp -r fixtures/packages/nobackup-sample "$1"
    python3 - "$@" <<'PY'
import hashlib, os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
for i in range(n):
    d = os.path.join(root, "htdocs", "lib", f"m{i // 300:03d}")
    if i % 300 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"class-{i}.php"), "wb") as f:
        f.write(b"<?php // generated\n" * rng.randint(5, 600))
entries = []
for dirpath, _, files in os.walk(root):
    for name in files:
        path = os.path.join(dirpath, name)
        rel = os.path.relpath(path, root)
        if rel == "APP-LIST.xml":
            continue
        with open(path, "rb") as f:
            data = f.read()
        entries.append(f'    <file name="{rel}" size="{len(data)}" sha256="{hashlib.sha256(data).hexdigest()}"/>')
entries.sort()
with open(os.path.join(root, "APP-LIST.xml"), "w") as f:
    f.write('<?xml version="1.0" encoding="UTF-8"?>\n<files xmlns="http://apstandard.com/ns/1">\n')
    f.write("\n".join(entries) + "\n</files>\n")
PY
}
