//! Restore kits, shared by the restore, migrate and hostile-backup tests: instances of the sh-databases fixture with a
//! MariaDB and a PostgreSQL database of their own on the real test servers, a web folder full of
//! hard cases, and exact records of an instance's state (tree + query results) to compare
//! before and after.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::time::Duration;

use crate::database::{TestDatabase, TestServers};
use aps_controller::database::{self, Database, DbKind};
use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

use crate::{self as support, Sandbox, assert_success};

const DB_TIMEOUT: Duration = Duration::from_secs(120);

/// A registered sh-databases instance with its own web root and databases.
pub struct DbInstance {
    pub name: String,
    /// The root mapping's folder.
    pub www: Utf8PathBuf,
    pub main: TestDatabase,
    pub stats: TestDatabase,
    /// The INSTANCE.toml it was registered from (re-registered by `set_behaviour`).
    pub toml: Utf8PathBuf,
}

/// Base URL and extra `[web-dirs]` lines of an instance.
pub struct Site<'a> {
    pub base_url: &'a str,
    pub behaviour: &'a str,
    /// Extra `"<url>" = "<folder>"` lines under `[web-dirs]`.
    pub extra_web_dirs: &'a str,
}

impl Default for Site<'_> {
    fn default() -> Self {
        Site {
            base_url: "http://shop.example.test/",
            behaviour: "normal",
            extra_web_dirs: "",
        }
    }
}

/// Registers `name` from the sh-databases fixture with fresh databases; `None` only with
/// APS_TEST_NO_DB=1.
pub fn db_instance(sb: &Sandbox, name: &str, site: Site<'_>) -> Option<DbInstance> {
    let servers = TestServers::from_env()?;
    let main = servers.create_database(DbKind::Mysql, name);
    let stats = servers.create_database(DbKind::Postgresql, name);
    let www = sb.path(&format!("sites/{name}/htdocs"));
    std::fs::create_dir_all(&www).unwrap();
    let toml = sb.path(&format!("{name}.toml"));
    let inst = DbInstance {
        name: name.to_owned(),
        www,
        main,
        stats,
        toml,
    };
    inst.write_toml(sb, &site);
    let out = sb.cli(&["instance", "register", "--file", inst.toml.as_str()]);
    assert_success(&out, "instance register");
    Some(inst)
}

impl DbInstance {
    fn write_toml(&self, sb: &Sandbox, site: &Site<'_>) {
        let text = format!(
            "name = \"{}\"\npackage = \"{}\"\nbase-url = \"{}\"\n\
             [web-dirs]\n\"/\" = \"{}\"\n{}\
             [settings]\nadmin_password = \"pw\"\nbehaviour = \"{}\"\n{}{}",
            self.name,
            support::fixture("sh-databases"),
            site.base_url,
            self.www,
            site.extra_web_dirs,
            site.behaviour,
            support::db_toml("main", &self.main),
            support::db_toml("stats", &self.stats),
        );
        std::fs::write(sb.path(&format!("{}.toml", self.name)), text).unwrap();
    }

    /// Re-registers the instance with another `behaviour` of the fixture's restore script.
    pub fn set_behaviour(&self, sb: &Sandbox, site: Site<'_>) {
        self.write_toml(sb, &site);
        let out = sb.cli(&[
            "instance",
            "register",
            "--replace",
            "--file",
            self.toml.as_str(),
        ]);
        assert_success(&out, "instance register --replace");
    }

    /// Fills the web folder and both databases with the hard cases.
    pub fn populate(&self) {
        populate_tree(&self.www);
        populate_databases(&self.main, &self.stats);
    }

    /// Deletes and changes files, rows and tables: what a restore must undo.
    pub fn damage(&self) {
        damage_tree(&self.www);
        run_sql(
            &self.main,
            "DELETE FROM posts WHERE id > 100; UPDATE posts SET title = 'changed' WHERE id = 1;\n\
             DROP VIEW titles; CREATE TABLE intruder (a INT); INSERT INTO intruder VALUES (7);",
        );
        run_sql(
            &self.stats,
            "DELETE FROM hits WHERE id < 50; ALTER TABLE hits ADD COLUMN junk int;\n\
             CREATE TABLE intruder (a int); SELECT setval('hits_id_seq', 9999);",
        );
    }

    /// The whole state: every entry of the web folder and the query results of both databases.
    pub fn state(&self) -> State {
        State {
            tree: tree_record(&self.www),
            databases: db_state(&self.main, &self.stats),
        }
    }
}

/// What an instance holds, comparable with `assert_eq!` (and readable when it differs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub tree: BTreeMap<String, String>,
    pub databases: String,
}

impl State {
    /// Only what differs, line by line: states are large and `assert_eq!` would print both.
    pub fn diff(&self, other: &State) -> String {
        let mut d = String::new();
        let keys: std::collections::BTreeSet<_> =
            self.tree.keys().chain(other.tree.keys()).collect();
        for k in keys {
            let (a, b) = (self.tree.get(k), other.tree.get(k));
            if a != b {
                writeln!(d, "tree {k}: {a:?} != {b:?}").unwrap();
            }
        }
        let (la, lb): (Vec<_>, Vec<_>) = (
            self.databases.lines().collect(),
            other.databases.lines().collect(),
        );
        for i in 0..la.len().max(lb.len()) {
            let (a, b) = (la.get(i), lb.get(i));
            if a != b {
                writeln!(d, "db line {i}: {a:?} != {b:?}").unwrap();
            }
        }
        d
    }

    /// Without the files the fixture's restore script writes into the web root.
    pub fn without_script_traces(mut self) -> Self {
        for name in [".aps-restore-env", ".aps-restored-from"] {
            self.tree.remove(name);
        }
        self
    }
}

/// `assert_eq!` for states, printing only the differences.
#[track_caller]
pub fn assert_same(left: &State, right: &State, what: &str) {
    if left != right {
        let diff = left.diff(right);
        let diff: Vec<&str> = diff.lines().take(40).collect();
        panic!(
            "{what}: states differ (left != right):\n{}",
            diff.join("\n")
        );
    }
}

pub fn run_sql(db: &Database, sql: &str) -> String {
    database::query(db, sql, DB_TIMEOUT).unwrap_or_else(|e| panic!("SQL failed: {e}\n{sql}"))
}

/// Every entry below `root` (the root itself as `.`): kind, permission bits (with
/// setuid/setgid/sticky), size, SHA-256 of the content, symlink target. Path bytes are shown
/// escaped so names with newlines stay one key.
pub fn tree_record(root: &Utf8Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root.as_std_path(), std::path::Path::new(""), &mut out);
    out
}

fn walk(abs: &std::path::Path, rel: &std::path::Path, out: &mut BTreeMap<String, String>) {
    let meta = std::fs::symlink_metadata(abs).unwrap_or_else(|e| panic!("{abs:?}: {e}"));
    let key = if rel.as_os_str().is_empty() {
        ".".to_owned()
    } else {
        rel.to_string_lossy().escape_debug().to_string()
    };
    let mode = meta.mode() & 0o7777;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(abs).unwrap();
        out.insert(key, format!("symlink -> {:?}", target.as_os_str()));
    } else if ft.is_dir() {
        out.insert(key, format!("dir {mode:04o}"));
        let mut names: Vec<_> = std::fs::read_dir(abs)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            walk(&abs.join(&name), &rel.join(&name), out);
        }
    } else if ft.is_file() {
        let bytes = std::fs::read(abs).unwrap();
        out.insert(
            key,
            format!(
                "file {mode:04o} {} {}",
                bytes.len(),
                hex::encode(Sha256::digest(&bytes))
            ),
        );
    } else {
        out.insert(key, format!("special {mode:04o}"));
    }
}

fn write(path: Utf8PathBuf, bytes: &[u8], mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mkdir(path: Utf8PathBuf, mode: u32) {
    std::fs::create_dir_all(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Odd names (spaces, a newline, non-ASCII, a leading dash), modes (0600, 0755, 0444, a
/// setgid folder, a 0700 folder), symlinks (relative, upwards, dangling, absolute), empty
/// folders, binary content, and the `media` child mapping's folder inside the root.
pub fn populate_tree(www: &Utf8Path) {
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    write(www.join("index.php"), b"<?php echo 'shop';\n", 0o644);
    write(www.join("file with spaces.txt"), b"spaces\n", 0o644);
    write(www.join("new\nline.txt"), b"a newline in the name\n", 0o644);
    write(
        www.join("ünïcödé 日本語.txt"),
        "grüße 日本語 🎉\n".as_bytes(),
        0o644,
    );
    write(www.join("-leading-dash"), b"--help\n", 0o644);
    write(www.join("secret.conf"), b"password=x\n", 0o600);
    write(www.join("readonly.txt"), b"ro\n", 0o444);
    write(www.join("bin/run.sh"), b"#!/bin/sh\necho run\n", 0o755);
    write(www.join("empty-file"), b"", 0o644);
    mkdir(www.join("shared"), 0o2775);
    write(www.join("shared/upload.dat"), &all_bytes, 0o664);
    mkdir(www.join("private"), 0o700);
    write(www.join("private/key"), b"k\n", 0o600);
    write(www.join("media/photo.jpg"), &all_bytes[..1000], 0o644);
    mkdir(www.join("media/empty album"), 0o755);
    mkdir(www.join("empty"), 0o755);
    mkdir(www.join("deep/er/empty"), 0o750);
    symlink("index.php", www.join("link-to-index")).unwrap();
    std::fs::create_dir_all(www.join("sub")).unwrap();
    symlink("../index.php", www.join("sub/up")).unwrap();
    symlink("no/such/target", www.join("dangling")).unwrap();
    symlink("/etc/hostname", www.join("absolute-link")).unwrap();
    symlink("media", www.join("link-to-dir")).unwrap();
}

fn damage_tree(www: &Utf8Path) {
    std::fs::remove_file(www.join("file with spaces.txt")).unwrap();
    std::fs::write(www.join("index.php"), b"<?php echo 'defaced';\n").unwrap();
    std::fs::set_permissions(
        www.join("secret.conf"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(www.join("intruder.php"), b"<?php evil();\n").unwrap();
    std::fs::remove_dir(www.join("empty")).unwrap();
    std::fs::remove_file(www.join("link-to-index")).unwrap();
    symlink("intruder.php", www.join("link-to-index")).unwrap();
    std::fs::remove_file(www.join("media/photo.jpg")).unwrap();
    std::fs::remove_dir_all(www.join("shared")).unwrap();
    std::fs::create_dir(www.join("new folder")).unwrap();
}

/// Rows with binary data (all byte values), non-ASCII text (with emoji), quotes, tabs,
/// newlines, NULLs, a view, and (PostgreSQL) a sequence whose position matters.
pub fn populate_databases(main: &Database, stats: &Database) {
    run_sql(
        main,
        "CREATE TABLE posts (id INT PRIMARY KEY AUTO_INCREMENT, title VARCHAR(200) NOT NULL,\n\
           body LONGBLOB, note TEXT) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;\n\
         INSERT INTO posts VALUES (1, 'Grüße — 日本語 🎉', 0x00FF0A0D5C2722090D, NULL),\n\
           (2, 'it''s \"quoted\"\\ttab', X'', 'line1\\nline2\\\\');\n\
         INSERT INTO posts (id, title, body, note)\n\
           WITH RECURSIVE s(n) AS (SELECT 3 UNION ALL SELECT n + 1 FROM s WHERE n < 300)\n\
           SELECT n, CONCAT('row ', n, ' ä'), UNHEX(SHA2(n, 256)), REPEAT('x', n) FROM s;\n\
         CREATE VIEW titles AS SELECT id, title FROM posts WHERE id < 10;",
    );
    run_sql(
        stats,
        "CREATE TABLE hits (id serial PRIMARY KEY, path text NOT NULL, payload bytea,\n\
           at timestamptz NOT NULL DEFAULT '2024-01-01T00:00:00Z');\n\
         INSERT INTO hits (path, payload) VALUES ('/grüße/日本語 🎉', '\\x00ff0a0d5c2722090d'::bytea),\n\
           (E'it''s\\ttab\\nnewline', ''::bytea), ('null payload', NULL);\n\
         INSERT INTO hits (path, payload)\n\
           SELECT 'row ' || g || ' é', decode(md5(g::text), 'hex') FROM generate_series(4, 300) g;\n\
         CREATE VIEW recent AS SELECT id, path FROM hits WHERE id > 290;",
    );
}

/// Query results that differ whenever data, schema or sequence positions differ. Names of
/// the databases themselves appear nowhere, so two instances' states compare equal.
pub fn db_state(main: &Database, stats: &Database) -> String {
    let mut s = String::new();
    for (what, sql) in [
        (
            "mysql objects",
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME;",
        ),
        (
            "mysql columns",
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLLATION_NAME \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
             ORDER BY TABLE_NAME, ORDINAL_POSITION;",
        ),
        (
            "mysql rows",
            "SELECT id, HEX(title), HEX(body), HEX(note) FROM posts ORDER BY id;",
        ),
        (
            "mysql view",
            "SELECT id, HEX(title) FROM titles ORDER BY id;",
        ),
    ] {
        let out = database::query(main, sql, DB_TIMEOUT).unwrap_or_else(|e| e.to_string());
        writeln!(s, "== {what}\n{out}").unwrap();
    }
    for (what, sql) in [
        (
            "pg objects",
            "SELECT table_name, table_type FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY 1;",
        ),
        (
            "pg columns",
            "SELECT table_name, column_name, data_type, is_nullable, column_default \
             FROM information_schema.columns WHERE table_schema = 'public' \
             ORDER BY table_name, ordinal_position;",
        ),
        (
            "pg rows",
            "SELECT id, encode(convert_to(path, 'UTF8'), 'hex'), encode(payload, 'hex'), at \
             FROM hits ORDER BY id;",
        ),
        ("pg view", "SELECT id, path FROM recent ORDER BY id;"),
        (
            "pg sequence",
            "SELECT last_value, is_called FROM hits_id_seq;",
        ),
    ] {
        let out = database::query(stats, sql, DB_TIMEOUT).unwrap_or_else(|e| e.to_string());
        writeln!(s, "== {what}\n{out}").unwrap();
    }
    s
}

/// Open (unfinished) journal entries of a state folder.
pub fn open_journal_entries(state: &Utf8Path) -> Vec<String> {
    match std::fs::read_dir(state.join("journal")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Every operation closed its journal entry and removed its work folder.
pub fn assert_nothing_left_open(state: &Utf8Path) {
    assert!(
        open_journal_entries(state).is_empty(),
        "{:?}",
        open_journal_entries(state)
    );
    assert!(
        work_leftovers(state).is_empty(),
        "{:?}",
        work_leftovers(state)
    );
}

/// What is left in the state folder's scratch area (work folders of operations).
pub fn work_leftovers(state: &Utf8Path) -> Vec<String> {
    let mut left = Vec::new();
    if let Ok(rd) = std::fs::read_dir(state.join("work")) {
        for e in rd {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() && name == "migrations" {
                for m in std::fs::read_dir(e.path()).unwrap() {
                    left.push(format!(
                        "migrations/{}",
                        m.unwrap().file_name().to_string_lossy()
                    ));
                }
            } else {
                left.push(name);
            }
        }
    }
    left
}
