#!/usr/bin/env bash
# Starts the test database servers on loopback, each with its own data folder under the state
# folder, and writes their connection facts to $STATE/services.env for the tests:
#   MariaDB    127.0.0.1:13306
#   PostgreSQL 127.0.0.1:15432
# Both get an admin login aps_admin / aps_admin_pw that may create databases and logins.
# Idempotent: a server that already answers is left alone. Quiet: one line per step, the
# servers' own logs and the setup output go to $STATE/logs.
set -euo pipefail

STATE=${APS_CI_STATE_DIR:-/tmp/aps-ci}
LOGS="$STATE/logs"
MYSQL_PORT=${APS_CI_MYSQL_PORT:-13306}
PG_PORT=${APS_CI_PG_PORT:-15432}
ADMIN_USER=aps_admin
ADMIN_PW=aps_admin_pw
WAIT_SECONDS=${APS_CI_WAIT_SECONDS:-90}

step() { printf 'start-services: %s\n' "$*"; }
fail() { printf 'start-services: ERROR: %s\n' "$*" >&2; exit 1; }

mkdir -p "$STATE" "$LOGS"
chmod 755 "$STATE"
# The server users must be able to write their logs.
chmod 1777 "$LOGS"

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

# Runs a command as the given system user when we are root (servers refuse to run as root),
# as ourselves otherwise.
as_user() {
    local user=$1; shift
    if [ "$IS_ROOT" -eq 1 ]; then
        runuser -u "$user" -- "$@"
    else
        "$@"
    fi
}

wait_for() {
    local what=$1; shift
    local i
    for ((i = 0; i < WAIT_SECONDS * 4; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    return 1
}

# ---------------------------------------------------------------- MariaDB
MY_DIR="$STATE/mariadb"
MY_DATA="$MY_DIR/data"
MY_SOCK="$MY_DIR/mysqld.sock"
MY_LOG="$LOGS/mariadb.log"
MY_USER=mysql
[ "$IS_ROOT" -eq 1 ] || MY_USER=$(id -un)

command -v mariadbd >/dev/null 2>&1 || PATH="$PATH:/usr/sbin"
command -v mariadbd >/dev/null 2>&1 || fail "mariadbd not found: run scripts/ci/install-deps.sh"

my_ping() { mariadb-admin --no-defaults --socket="$MY_SOCK" -uroot ping; }

if my_ping >/dev/null 2>&1; then
    step "MariaDB already running on 127.0.0.1:$MYSQL_PORT"
else
    mkdir -p "$MY_DIR"
    [ "$IS_ROOT" -eq 1 ] && chown "$MY_USER": "$MY_DIR"
    if [ ! -d "$MY_DATA/mysql" ]; then
        step "MariaDB: initialising $MY_DATA"
        # root@localhost authenticates by unix socket (the OS user root); tests use aps_admin.
        mariadb-install-db --no-defaults --user="$MY_USER" --datadir="$MY_DATA" \
            --auth-root-authentication-method=socket --skip-test-db \
            >>"$LOGS/mariadb-install.log" 2>&1 \
            || { tail -n 20 "$LOGS/mariadb-install.log" >&2; fail "mariadb-install-db failed"; }
    fi
    step "MariaDB: starting on 127.0.0.1:$MYSQL_PORT"
    # Test-only durability settings: these servers hold throw-away data.
    setsid nohup mariadbd --no-defaults --user="$MY_USER" --datadir="$MY_DATA" \
        --socket="$MY_SOCK" --pid-file="$MY_DIR/mysqld.pid" --log-error="$MY_LOG" \
        --port="$MYSQL_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
        --innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=0 \
        --innodb-doublewrite=0 --max-connections=500 \
        </dev/null >>"$LOGS/mariadb.out" 2>&1 &
    wait_for mariadb my_ping || { tail -n 30 "$MY_LOG" >&2; fail "MariaDB did not answer within ${WAIT_SECONDS}s (log: $MY_LOG)"; }
fi

mariadb --no-defaults --socket="$MY_SOCK" -uroot >>"$LOGS/mariadb-setup.log" 2>&1 <<SQL \
    || { tail -n 20 "$LOGS/mariadb-setup.log" >&2; fail "MariaDB: creating $ADMIN_USER failed"; }
CREATE USER IF NOT EXISTS '$ADMIN_USER'@'127.0.0.1' IDENTIFIED BY '$ADMIN_PW';
CREATE USER IF NOT EXISTS '$ADMIN_USER'@'localhost' IDENTIFIED BY '$ADMIN_PW';
GRANT ALL PRIVILEGES ON *.* TO '$ADMIN_USER'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO '$ADMIN_USER'@'localhost' WITH GRANT OPTION;
SQL
step "MariaDB: ready ($(mariadb --no-defaults --socket="$MY_SOCK" -uroot -N -e 'SELECT VERSION()'))"

# ---------------------------------------------------------------- PostgreSQL
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$PG_BIN" ] && [ -x "$PG_BIN/pg_ctl" ] || fail "PostgreSQL server not found under /usr/lib/postgresql: run scripts/ci/install-deps.sh"
PG_DIR="$STATE/postgres"
PG_DATA="$PG_DIR/data"
PG_LOG="$LOGS/postgres.log"
PG_USER=postgres
[ "$IS_ROOT" -eq 1 ] || PG_USER=$(id -un)

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

if pg_ready; then
    step "PostgreSQL already running on 127.0.0.1:$PG_PORT"
else
    mkdir -p "$PG_DIR"
    [ "$IS_ROOT" -eq 1 ] && chown "$PG_USER": "$PG_DIR"
    # A postmaster.pid left by a server that died with its machine session: its pid may now
    # belong to another process, which would make postgres refuse to start.
    if [ -f "$PG_DATA/postmaster.pid" ]; then
        old_pid=$(head -n 1 "$PG_DATA/postmaster.pid")
        if ! ps -o comm= -p "$old_pid" 2>/dev/null | grep -q postgres; then
            step "PostgreSQL: removing stale postmaster.pid (pid $old_pid)"
            rm -f "$PG_DATA/postmaster.pid"
        fi
    fi
    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
        step "PostgreSQL: initdb $PG_DATA"
        # Local (socket) connections by the OS user; TCP needs a password.
        as_user "$PG_USER" "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --encoding=UTF8 \
            --locale=C.UTF-8 --auth-local=peer --auth-host=scram-sha-256 \
            >>"$LOGS/postgres-initdb.log" 2>&1 \
            || { tail -n 20 "$LOGS/postgres-initdb.log" >&2; fail "initdb failed"; }
    fi
    step "PostgreSQL: starting on 127.0.0.1:$PG_PORT"
    # Test-only durability settings: these servers hold throw-away data.
    as_user "$PG_USER" "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$WAIT_SECONDS" \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        start >>"$LOGS/postgres-ctl.log" 2>&1 \
        || { tail -n 30 "$PG_LOG" >&2; fail "PostgreSQL did not start (log: $PG_LOG)"; }
    wait_for postgres pg_ready || fail "PostgreSQL did not answer within ${WAIT_SECONDS}s (log: $PG_LOG)"
fi

as_user "$PG_USER" psql -X -q -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    >>"$LOGS/postgres-setup.log" 2>&1 <<SQL \
    || { tail -n 20 "$LOGS/postgres-setup.log" >&2; fail "PostgreSQL: creating $ADMIN_USER failed"; }
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ADMIN_USER') THEN
    CREATE ROLE $ADMIN_USER LOGIN SUPERUSER CREATEDB CREATEROLE PASSWORD '$ADMIN_PW';
  ELSE
    ALTER ROLE $ADMIN_USER LOGIN SUPERUSER CREATEDB CREATEROLE PASSWORD '$ADMIN_PW';
  END IF;
END
\$\$;
SQL
step "PostgreSQL: ready ($(PGPASSWORD=$ADMIN_PW psql -X -At -h 127.0.0.1 -p "$PG_PORT" -U "$ADMIN_USER" -d postgres -c 'SHOW server_version'))"

# ---------------------------------------------------------------- facts for the tests
ENV_FILE="$STATE/services.env"
cat >"$ENV_FILE.tmp" <<ENV
APS_TEST_MYSQL_HOST=127.0.0.1
APS_TEST_MYSQL_PORT=$MYSQL_PORT
APS_TEST_MYSQL_USER=$ADMIN_USER
APS_TEST_MYSQL_PASSWORD=$ADMIN_PW
APS_TEST_PG_HOST=127.0.0.1
APS_TEST_PG_PORT=$PG_PORT
APS_TEST_PG_USER=$ADMIN_USER
APS_TEST_PG_PASSWORD=$ADMIN_PW
ENV
mv "$ENV_FILE.tmp" "$ENV_FILE"
step "connection facts in $ENV_FILE"
