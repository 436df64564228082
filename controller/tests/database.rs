//! Dump, wipe and load against the real test servers (scripts/ci/start-services.sh).

use std::collections::BTreeMap;
use std::time::Duration;

use aps_controller::database::{self, Database, DatabaseError, DbKind};
use camino::{Utf8Path, Utf8PathBuf};
use test_support::database::{TestDatabase, TestServers};

const T: Duration = Duration::from_secs(300);

fn fresh(kind: DbKind, hint: &str) -> Option<TestDatabase> {
    TestServers::from_env().map(|s| s.create_database(kind, hint))
}

fn sql(db: &Database, text: &str) -> String {
    database::query(db, text, T).unwrap_or_else(|e| panic!("{e}"))
}

fn all_bytes_hex() -> String {
    (0u8..=255).map(|b| format!("{b:02x}")).collect()
}

const TEXT: &str = "日本語 中文 한국어 🎉🦀 Ünïcödé 'quote' \"dq\" back\\slash tab\there";

fn tmp() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

fn mysql_fixture(db: &Database) {
    let text = TEXT.replace('\\', "\\\\").replace('\'', "\\'");
    sql(
        db,
        &format!(
            "CREATE TABLE items (
               id INT AUTO_INCREMENT PRIMARY KEY,
               data LONGBLOB NULL,
               txt TEXT CHARACTER SET utf8mb4 NULL,
               note VARCHAR(100) NULL,
               amount DECIMAL(10,2) NULL
             ) ENGINE=InnoDB;
             CREATE TABLE parent (id INT PRIMARY KEY) ENGINE=InnoDB;
             CREATE TABLE child (id INT PRIMARY KEY, parent_id INT,
               FOREIGN KEY (parent_id) REFERENCES parent(id)) ENGINE=InnoDB;
             CREATE TRIGGER items_bi BEFORE INSERT ON items FOR EACH ROW
               SET NEW.note = CONCAT('trg:', COALESCE(NEW.note, ''));
             CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
             CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY DO DELETE FROM items WHERE 1 = 0;
             INSERT INTO items (data, txt, note, amount) VALUES
               (UNHEX('{hex}'), '{text}', 'all bytes', 12.34),
               (NULL, NULL, NULL, NULL),
               ('', '', '', 0);
             INSERT INTO parent VALUES (1), (2);
             INSERT INTO child VALUES (10, 1), (20, 2);
             CREATE VIEW items_view AS SELECT id, twice(id) AS doubled, txt FROM items;",
            hex = all_bytes_hex()
        ),
    );
}

const MYSQL_STATE: &str = "
    SELECT id, HEX(data), HEX(txt), txt, note, amount, data IS NULL, txt IS NULL
      FROM items ORDER BY id;
    SELECT id, doubled, HEX(txt) FROM items_view ORDER BY id;
    SELECT * FROM child ORDER BY id;
    SELECT TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION, ACTION_STATEMENT
      FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE();
    SELECT ROUTINE_NAME, ROUTINE_TYPE, ROUTINE_DEFINITION
      FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE();
    SELECT EVENT_NAME, EVENT_DEFINITION FROM information_schema.EVENTS
      WHERE EVENT_SCHEMA = DATABASE();
    SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES
      WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME;
    SHOW CREATE TABLE items;";

fn pg_fixture(db: &Database) {
    sql(
        db,
        &format!(
            "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
             CREATE TABLE items (
               id SERIAL PRIMARY KEY,
               data BYTEA NULL,
               txt TEXT NULL,
               note TEXT NULL,
               amount NUMERIC(10,2) NULL,
               m mood NULL
             );
             CREATE TABLE ident (id INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v TEXT);
             CREATE TABLE parent (id INT PRIMARY KEY);
             CREATE TABLE child (id INT PRIMARY KEY, parent_id INT REFERENCES parent(id));
             CREATE FUNCTION twice(x INT) RETURNS INT LANGUAGE sql IMMUTABLE AS 'SELECT x * 2';
             CREATE FUNCTION items_note() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN NEW.note := 'trg:' || COALESCE(NEW.note, ''); RETURN NEW; END $$;
             CREATE TRIGGER items_bi BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION items_note();
             INSERT INTO items (data, txt, note, amount, m) VALUES
               (decode('{hex}', 'hex'), $t${TEXT}$t$, 'all bytes', 12.34, 'happy'),
               (NULL, NULL, NULL, NULL, NULL),
               ('', '', '', 0, 'sad');
             INSERT INTO ident (v) VALUES ('a'), ('b');
             INSERT INTO parent VALUES (1), (2);
             INSERT INTO child VALUES (10, 1), (20, 2);
             CREATE VIEW items_view AS SELECT id, twice(id) AS doubled, txt FROM items;
             CREATE SCHEMA other;
             CREATE TABLE other.\"odd name\" (x INT);
             INSERT INTO other.\"odd name\" VALUES (1), (2), (3);",
            hex = all_bytes_hex()
        ),
    );
}

const PG_STATE: &str = "
    SELECT id, encode(data, 'hex'), encode(convert_to(txt, 'UTF8'), 'hex'), txt, note, amount, m,
           data IS NULL, txt IS NULL FROM items ORDER BY id;
    SELECT id, doubled, txt FROM items_view ORDER BY id;
    SELECT * FROM ident ORDER BY id;
    SELECT * FROM child ORDER BY id;
    SELECT * FROM other.\"odd name\" ORDER BY x;
    SELECT last_value, is_called FROM items_id_seq;
    SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1;
    SELECT proname, pg_get_functiondef(oid) FROM pg_proc
     WHERE pronamespace = 'public'::regnamespace ORDER BY 1;
    SELECT enum_range(NULL::mood);
    SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname IN ('public', 'other') ORDER BY 1;";

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Dump, wipe (checked empty), load: everything reads back identical and still works.
fn round_trip(db: &Database, state_sql: &str, expected_counts: BTreeMap<String, u64>) {
    let (_dir, dir) = tmp();
    let before = sql(db, state_sql);
    assert!(
        before.contains("🎉🦀"),
        "fixture text not stored as UTF-8:\n{before}"
    );
    assert_eq!(database::row_counts(db, T).unwrap(), expected_counts);

    let file = dir.join("dump.sql");
    let info = database::dump(db, &file, T).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.database, db.name);
    assert_eq!(info.size, std::fs::metadata(&file).unwrap().len());
    let bytes = std::fs::read(&file).unwrap();
    use sha2::Digest;
    assert_eq!(info.sha256, hex::encode(sha2::Sha256::digest(&bytes)));
    assert_eq!(info.row_counts, expected_counts);
    assert!(!info.server_version.is_empty());
    assert_eq!(
        info.server_version,
        database::server_version(db, T).unwrap()
    );

    database::wipe(db, T).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(database::row_counts(db, T).unwrap(), BTreeMap::new());
    // Wiping an empty database is fine.
    database::wipe(db, T).unwrap();

    database::load(db, &file, T).unwrap_or_else(|e| panic!("{e}"));
    let after = sql(db, state_sql);
    assert_eq!(after, before, "database differs after dump → wipe → load");
    assert_eq!(database::row_counts(db, T).unwrap(), expected_counts);

    // Loading again over a loaded database works too (load empties it first).
    database::load(db, &file, T).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sql(db, state_sql), before);
}

#[test]
fn mysql_round_trip_keeps_data_views_triggers_routines() {
    let Some(db) = fresh(DbKind::Mysql, "roundtrip") else {
        return;
    };
    mysql_fixture(&db);
    round_trip(
        &db,
        MYSQL_STATE,
        counts(&[("child", 2), ("items", 3), ("parent", 2)]),
    );
    // The restored trigger, function and AUTO_INCREMENT still work.
    let out = sql(
        &db,
        "INSERT INTO items (note) VALUES ('new'); SELECT id, note FROM items WHERE id = LAST_INSERT_ID();
         SELECT twice(21);",
    );
    assert_eq!(out, "4\ttrg:new\n42\n");
}

#[test]
fn postgres_round_trip_keeps_data_views_triggers_routines() {
    let Some(db) = fresh(DbKind::Postgresql, "roundtrip") else {
        return;
    };
    pg_fixture(&db);
    round_trip(
        &db,
        PG_STATE,
        counts(&[
            ("child", 2),
            ("ident", 2),
            ("items", 3),
            ("other.odd name", 3),
            ("parent", 2),
        ]),
    );
    let out = sql(
        &db,
        "INSERT INTO items (note) VALUES ('new') RETURNING id, note; SELECT twice(21);
         INSERT INTO ident (v) VALUES ('c') RETURNING id;",
    );
    assert_eq!(out, "4\ttrg:new\n42\n3\n");
}

/// A dump cut short and spoiled: the error names database, tool and the server's complaint.
fn corrupted_dump_fails(db: &Database, fixture: fn(&Database), tool: &str) {
    fixture(db);
    let (_dir, dir) = tmp();
    let good = dir.join("good.sql");
    database::dump(db, &good, T).unwrap();
    let text = std::fs::read_to_string(&good).unwrap();
    let cut = text
        .find("INSERT INTO")
        .or_else(|| text.find("COPY "))
        .unwrap();
    let bad = dir.join("bad.sql");
    std::fs::write(
        &bad,
        format!("{}THIS IS NOT SQL AT ALL;\n{}", &text[..cut], &text[cut..]),
    )
    .unwrap();

    let err = database::load(db, &bad, T).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DatabaseError::Load { .. }), "{err:?}");
    assert!(msg.contains(&db.name), "{msg}");
    assert!(msg.contains(tool), "{msg}");
    assert!(msg.contains(bad.as_str()), "{msg}");
    assert!(
        msg.to_lowercase().contains("syntax"),
        "stderr tail missing: {msg}"
    );
    assert!(!msg.contains(db.password.expose()), "{msg}");
}

#[test]
fn mysql_corrupted_dump_fails_with_clear_error() {
    let Some(db) = fresh(DbKind::Mysql, "corrupt") else {
        return;
    };
    corrupted_dump_fails(&db, mysql_fixture, "mariadb");
}

#[test]
fn postgres_corrupted_dump_fails_and_leaves_database_empty() {
    let Some(db) = fresh(DbKind::Postgresql, "corrupt") else {
        return;
    };
    corrupted_dump_fails(&db, pg_fixture, "psql");
    // One transaction: nothing of the failed load stays.
    assert_eq!(database::row_counts(&db, T).unwrap(), BTreeMap::new());
}

fn wrong_password(db: &TestDatabase) {
    let bad = db.with_password("not-the-password-42");
    let (_dir, dir) = tmp();
    let file = dir.join("d.sql");
    let err = database::dump(&bad, &file, T).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, DatabaseError::Authentication { .. }),
        "{err:?}"
    );
    assert!(
        msg.contains(&db.login) && msg.contains(&db.name) && msg.contains(&db.server()),
        "{msg}"
    );
    assert!(
        !msg.contains("not-the-password-42") && !format!("{err:?}").contains("not-the-password-42")
    );
    assert!(!file.exists(), "a failed dump left {file}");
    let err = database::row_counts(&bad, T).unwrap_err();
    assert!(
        matches!(err, DatabaseError::Authentication { .. }),
        "{err:?}"
    );
}

#[test]
fn mysql_wrong_password_is_an_authentication_error() {
    let Some(db) = fresh(DbKind::Mysql, "badpw") else {
        return;
    };
    wrong_password(&db);
}

#[test]
fn postgres_wrong_password_is_an_authentication_error() {
    let Some(db) = fresh(DbKind::Postgresql, "badpw") else {
        return;
    };
    wrong_password(&db);
}

fn no_server(kind: DbKind) {
    let Some(servers) = TestServers::from_env() else {
        return;
    };
    // Port 1 on loopback: nothing listens there.
    let db = Database {
        port: 1,
        ..servers.admin(kind)
    };
    let err = database::server_version(&db, T).unwrap_err();
    assert!(matches!(err, DatabaseError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(":1"), "{err}");
}

#[test]
fn mysql_unreachable_server_is_named() {
    no_server(DbKind::Mysql);
}

#[test]
fn postgres_unreachable_server_is_named() {
    no_server(DbKind::Postgresql);
}

#[test]
fn mysql_row_counts_are_exact_with_odd_names() {
    let Some(db) = fresh(DbKind::Mysql, "counts") else {
        return;
    };
    sql(
        &db,
        "CREATE TABLE `empty` (x INT);
         CREATE TABLE `with space` (x INT);
         CREATE TABLE `back``tick` (x INT);
         CREATE TABLE `ünï-日本` (x INT);
         INSERT INTO `with space` VALUES (1);
         INSERT INTO `back``tick` VALUES (1), (2);
         INSERT INTO `ünï-日本` SELECT seq FROM seq_1_to_1000;
         -- Identifiers outside the BMP (emoji) are not allowed in MySQL.
         CREATE VIEW v AS SELECT * FROM `with space`;",
    );
    assert_eq!(
        database::row_counts(&db, T).unwrap(),
        counts(&[
            ("back`tick", 2),
            ("empty", 0),
            ("with space", 1),
            ("ünï-日本", 1000)
        ])
    );
}

#[test]
fn postgres_row_counts_are_exact_with_odd_names() {
    let Some(db) = fresh(DbKind::Postgresql, "counts") else {
        return;
    };
    sql(
        &db,
        "CREATE TABLE \"empty\" (x INT);
         CREATE TABLE \"with space\" (x INT);
         CREATE TABLE \"dq\"\"name\" (x INT);
         CREATE TABLE \"ünï-😀\" (x INT);
         INSERT INTO \"with space\" VALUES (1);
         INSERT INTO \"dq\"\"name\" VALUES (1), (2);
         INSERT INTO \"ünï-😀\" SELECT generate_series(1, 1000);
         CREATE VIEW v AS SELECT * FROM \"with space\";",
    );
    assert_eq!(
        database::row_counts(&db, T).unwrap(),
        counts(&[
            ("dq\"name", 2),
            ("empty", 0),
            ("with space", 1),
            ("ünï-😀", 1000)
        ])
    );
}

#[test]
fn missing_dump_file_changes_nothing() {
    let Some(db) = fresh(DbKind::Mysql, "missing") else {
        return;
    };
    sql(
        &db,
        "CREATE TABLE keep (x INT); INSERT INTO keep VALUES (1);",
    );
    let err = database::load(&db, Utf8Path::new("/nonexistent/dump.sql"), T).unwrap_err();
    assert!(matches!(err, DatabaseError::Io { .. }), "{err:?}");
    assert_eq!(
        database::row_counts(&db, T).unwrap(),
        counts(&[("keep", 1)])
    );
}

/// A dump made by one login loads into another login's database (migration): no owner,
/// grant or DEFINER of the first login stays in the way.
fn loads_into_another_login(kind: DbKind, fixture: fn(&Database), state_sql: &str) {
    let Some(servers) = TestServers::from_env() else {
        return;
    };
    let from = servers.create_database(kind, "from");
    let to = servers.create_database(kind, "to");
    fixture(&from);
    let (_dir, dir) = tmp();
    let file = dir.join("dump.sql");
    let info = database::dump(&from, &file, T).unwrap_or_else(|e| panic!("{e}"));
    database::load(&to, &file, T).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sql(&to, state_sql), sql(&from, state_sql));
    assert_eq!(database::row_counts(&to, T).unwrap(), info.row_counts);
}

#[test]
fn mysql_dump_loads_into_another_login() {
    // SHOW CREATE TABLE and the information_schema rows name no login; triggers' and
    // routines' definers differ by design.
    loads_into_another_login(
        DbKind::Mysql,
        mysql_fixture,
        "SELECT id, HEX(data), HEX(txt), note, amount FROM items ORDER BY id;
         SELECT id, doubled FROM items_view ORDER BY id; SELECT twice(4);
         SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS
          WHERE TRIGGER_SCHEMA = DATABASE();",
    );
}

#[test]
fn postgres_dump_loads_into_another_login() {
    loads_into_another_login(DbKind::Postgresql, pg_fixture, PG_STATE);
}

/// A session of the admin login that holds `lock` on `db`'s table `t` until dropped (then
/// releases it), so that a dump of `db` waits for it.
struct Holder {
    child: std::process::Child,
}

impl Holder {
    fn lock(db: &TestDatabase) -> Self {
        use std::io::{BufRead, Write};
        let admin = db.admin();
        let (mut cmd, lock) = match db.kind {
            DbKind::Postgresql => {
                let mut cmd = std::process::Command::new("psql");
                cmd.args(["-X", "-q", "-A", "-t", "-d", &db.name])
                    .env("PGHOST", &admin.host)
                    .env("PGPORT", admin.port.to_string())
                    .env("PGUSER", &admin.login)
                    .env("PGPASSWORD", admin.password.expose());
                (
                    cmd,
                    "BEGIN;\nLOCK TABLE public.t IN ACCESS EXCLUSIVE MODE;\nSELECT 'locked';\n",
                )
            }
            DbKind::Mysql => {
                let mut cmd = std::process::Command::new("mariadb");
                cmd.args([
                    "--no-defaults",
                    "--batch",
                    // Its answer is awaited while the session stays open: unflushed, "locked"
                    // would arrive only when the client ends, lock and all.
                    "--unbuffered",
                    "--skip-column-names",
                    &format!("--host={}", admin.host),
                    &format!("--port={}", admin.port),
                    &format!("--user={}", admin.login),
                    &db.name,
                ])
                .env("MYSQL_PWD", admin.password.expose());
                (cmd, "LOCK TABLES t WRITE;\nSELECT 'locked';\n")
            }
        };
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the locking client");
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(lock.as_bytes())
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        Holder { child }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Closing stdin ends the session, which releases the lock.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The dump tool the test process started (its parent is this process): its pid, once running.
fn dump_tool_pid<T>(names: &[&str], dumping: &std::thread::JoinHandle<T>) -> i32 {
    let me = std::process::id().to_string();
    // The dump waits on a lock this test holds, so it stays until found.
    loop {
        assert!(
            !dumping.is_finished(),
            "the dump ended before its tool was seen: the lock did not hold it"
        );
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                continue;
            };
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_owned())
            };
            if field("PPid:").as_deref() == Some(me.as_str())
                && field("Name:").is_some_and(|n| names.contains(&n.as_str()))
            {
                return pid;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The real uid of `pid`.
fn uid_of(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// As the tenant: `PTRACE_ATTACH` to `pid` (detaching again), then `/proc/PID/mem` opened for
/// writing. Returns what each gave: `ok` or `errno N`.
fn tenant_attacks(pid: i32) -> String {
    use std::os::unix::process::CommandExt;
    let tenant = test_support::tenant::tenant();
    let script = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
pid = int(sys.argv[1])
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
if libc.ptrace(PTRACE_ATTACH, pid, None, None) == 0:
    os.waitpid(pid, 0x40000000)  # __WALL: until it stopped
    libc.ptrace(PTRACE_DETACH, pid, None, None)
    attach = "ok"
else:
    attach = "errno %d" % ctypes.get_errno()
try:
    os.close(os.open("/proc/%d/mem" % pid, os.O_RDWR))
    mem = "ok"
except OSError as e:
    mem = "errno %d" % e.errno
print(attach, mem, flush=True)
"#;
    let out = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(pid.to_string())
        .uid(tenant.uid)
        .gid(tenant.gid)
        .output()
        .expect("run the tenant's attacker");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Issue 19, attack 3: the dump tools ran as the tenant, which could attach a debugger to
/// its own pg_dump during a backup and write any bytes into the dump the controller then
/// tags. The backup here is the controller's (`as_account(tenant)` then `dump`, as
/// operation::backup does), held by a lock on a table so that the tenant has all the time it
/// wants: it can neither attach nor open the tool's memory, and the dump still completes.
fn dump_tools_are_out_of_the_tenants_reach(kind: DbKind) {
    let Some(db) = fresh(kind, "ptrace") else {
        return;
    };
    sql(
        &db,
        "CREATE TABLE t (n INT); INSERT INTO t VALUES (1), (2);",
    );
    let tenant = test_support::tenant::tenant();
    let (_dir, dir) = tmp();
    let out = dir.join("dump.sql");
    let holder = Holder::lock(&db);
    let dumping = {
        let (db, out, tenant) = (db.database().clone(), out.clone(), tenant.clone());
        std::thread::spawn(move || {
            database::as_account(Some(&tenant), || database::dump(&db, &out, T))
        })
    };
    let names: &[&str] = match kind {
        DbKind::Postgresql => &["pg_dump"],
        DbKind::Mysql => &["mariadb-dump", "mysqldump"],
    };
    let pid = dump_tool_pid(names, &dumping);
    let uid = uid_of(pid);
    let result = tenant_attacks(pid);
    drop(holder);
    let info = dumping.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        result, "errno 1 errno 13",
        "the tenant (uid {}) reached its dump tool (uid {uid})",
        tenant.uid
    );
    assert!(database::DUMP_UIDS.contains(&uid), "uid {uid}");
    assert_ne!(uid, tenant.uid);
    assert_eq!(info.row_counts.get("t"), Some(&2));
    assert!(info.size > 0);
}

#[test]
fn postgres_dump_tool_is_out_of_the_tenants_reach() {
    dump_tools_are_out_of_the_tenants_reach(DbKind::Postgresql);
}

#[test]
fn mariadb_dump_tool_is_out_of_the_tenants_reach() {
    dump_tools_are_out_of_the_tenants_reach(DbKind::Mysql);
}
