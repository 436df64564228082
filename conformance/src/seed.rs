//! Data put into an instance before its backup, and the damage done to it before its
//! restore: a marker file in every writable web folder, and in every database a table of
//! awkward rows (binary bytes, non-ASCII text, quotes and backslashes, NULLs, empty strings),
//! a second table and a view. The damage changes a file, deletes another, changes rows,
//! drops a table and adds one, and says what a capture's diff must show for it.
//!
//! Files are written by descriptor below the folder (no symlink followed) and given to the
//! instance's account; SQL runs through the server's client as that account
//! (`database::as_account`), as the tenant's own work does.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{AtFlags, Mode, OFlags};
use serde::Serialize;

use aps_controller::account::Account;
use aps_controller::archive::{open_dir_beneath, open_dir_nofollow};
use aps_controller::database::{self, Database, DbKind};

use crate::capture::{Capture, Difference, FileKind};
use crate::error::ConformanceError;

/// The marker file's name in each writable web folder.
pub const MARKER_NAME: &str = "aps-conformance-marker.txt";
/// The table of awkward rows (after the database's table prefix, if it has one).
pub const SEED_TABLE: &str = "aps_conformance_seed";
/// A second table: the damage drops it.
pub const EXTRA_TABLE: &str = "aps_conformance_extra";
/// A view over [`SEED_TABLE`].
pub const SEED_VIEW: &str = "aps_conformance_view";
/// The table the damage adds.
pub const INTRUDER_TABLE: &str = "aps_conformance_intruder";

/// What the marker files hold: non-ASCII text and a line ending, so a restore that re-encodes
/// or normalises text shows.
const MARKER_TEXT: &str =
    "aps-conformance marker: Grüße, 日本語, \"quotes\" 'and' \\backslashes\\\r\n";

/// What the damaged file holds afterwards.
const DAMAGE_TEXT: &[u8] = b"damaged by the conformance run\n";

/// What [`seed`] put where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Seeded {
    /// The marker files written.
    pub markers: Vec<Utf8PathBuf>,
    /// Database id → the tables and view made in it.
    pub tables: BTreeMap<String, Vec<String>>,
}

/// Seeds an instance: a marker in each of `writable_dirs` (url path → folder; the
/// url-mappings the package declares writable) and the seed tables in each of `databases`.
/// `account` owns the markers and runs the SQL.
pub fn seed(
    writable_dirs: &BTreeMap<String, Utf8PathBuf>,
    databases: &BTreeMap<String, Database>,
    account: Option<&Account>,
    timeout: Duration,
) -> Result<Seeded, ConformanceError> {
    let mut seeded = Seeded::default();
    for folder in writable_dirs.values() {
        seeded.markers.push(write_marker(folder, account)?);
    }
    for (id, db) in databases {
        seeded
            .tables
            .insert(id.clone(), seed_database(db, account, timeout)?);
    }
    Ok(seeded)
}

/// Writes the marker file into `folder` (replacing one there), owned by `account`.
pub fn write_marker(
    folder: &Utf8Path,
    account: Option<&Account>,
) -> Result<Utf8PathBuf, ConformanceError> {
    let path = folder.join(MARKER_NAME);
    let dir = open_dir_nofollow(folder.as_std_path())
        .and_then(|fd| open_dir_beneath(fd.as_fd(), std::path::Path::new("")))
        .map_err(ConformanceError::io("open", folder))?;
    write_at(&dir, MARKER_NAME, MARKER_TEXT.as_bytes(), account)
        .map_err(ConformanceError::io("write", &path))?;
    Ok(path)
}

/// Writes `content` into `name` inside `dir` (created 0644 or truncated), never through a
/// symlink, and gives it to `account`.
fn write_at(
    dir: &impl AsFd,
    name: &str,
    content: &[u8],
    account: Option<&Account>,
) -> std::io::Result<()> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    if let Some(account) = account {
        rustix::fs::fchown(
            &fd,
            Some(rustix::fs::Uid::from_raw(account.uid)),
            Some(rustix::fs::Gid::from_raw(account.gid)),
        )?;
    }
    let mut file = std::fs::File::from(fd);
    file.write_all(content)?;
    file.sync_all()
}

/// The awkward rows.
/// One seed row: id, label, body (text, `None` for NULL) and data (bytes).
type SeedRow = (
    i32,
    Option<&'static str>,
    Option<&'static str>,
    Option<Vec<u8>>,
);

fn seed_rows() -> Vec<SeedRow> {
    vec![
        (
            1,
            Some("plain"),
            Some("ASCII only"),
            Some((0..=255u8).collect()),
        ),
        (
            2,
            Some("Grüße — 日本語 🎉"),
            Some("ñ ü ß € 漢字 \u{200b}zero-width\u{feff}"),
            Some(vec![0x00, 0x0a, 0x0d, 0x09, 0x5c, 0x27, 0x22]),
        ),
        (
            3,
            Some("O'Brien \"quoted\""),
            Some("back\\slash \\n \\\\ 'single' \"double\" `tick`"),
            Some(vec![0x27, 0x27, 0x5c]),
        ),
        (4, None, None, None),
        (5, Some(""), Some(""), Some(Vec::new())),
        (
            6,
            Some("tab\there"),
            Some("line1\nline2\r\nNULL \\N"),
            Some(vec![0xff; 3]),
        ),
        (
            7,
            Some("percent % underscore _"),
            Some("semicolon; -- comment /* c */"),
            Some(vec![0x5c, 0x00, 0x5c]),
        ),
    ]
}

/// Creates the seed tables and view in `db` as `account`; returns their names.
pub fn seed_database(
    db: &Database,
    account: Option<&Account>,
    timeout: Duration,
) -> Result<Vec<String>, ConformanceError> {
    let n = Names::of(db);
    let q = |name: &str| quote_ident(db.kind, name);
    let mut sql = String::new();
    match db.kind {
        DbKind::Mysql => {
            sql.push_str(&format!(
                "CREATE TABLE {} (id INT PRIMARY KEY, label VARCHAR(200) NULL, body TEXT NULL, \
                 data BLOB NULL) DEFAULT CHARSET=utf8mb4;\n\
                 CREATE TABLE {} (id INT PRIMARY KEY, note VARCHAR(50) NOT NULL DEFAULT '');\n",
                q(&n.seed),
                q(&n.extra)
            ));
        }
        DbKind::Postgresql => {
            sql.push_str(&format!(
                "CREATE TABLE {} (id integer PRIMARY KEY, label varchar(200), body text, data bytea);\n\
                 CREATE TABLE {} (id integer PRIMARY KEY, note varchar(50) NOT NULL DEFAULT '');\n",
                q(&n.seed),
                q(&n.extra)
            ));
        }
    }
    for (id, label, body, data) in seed_rows() {
        sql.push_str(&format!(
            "INSERT INTO {} (id, label, body, data) VALUES ({id}, {}, {}, {});\n",
            q(&n.seed),
            text_literal(db.kind, label),
            text_literal(db.kind, body),
            bytes_literal(db.kind, data.as_deref()),
        ));
    }
    sql.push_str(&format!(
        "INSERT INTO {} (id, note) VALUES (1, 'first'), (2, ''), (3, {});\n\
         CREATE VIEW {} AS SELECT id, label FROM {} WHERE data IS NOT NULL;\n",
        q(&n.extra),
        text_literal(db.kind, Some("über")),
        q(&n.view),
        q(&n.seed)
    ));
    run_sql(db, account, &sql, timeout, "seed")?;
    Ok(vec![n.seed, n.extra, n.view])
}

/// What [`damage`] did, and what a diff of the captures before and after must show for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Damage {
    pub expected: Vec<Difference>,
}

/// Damages an instance whose state `before` holds (taken after [`seed`]): in its web
/// folders, the marker (else the first file) gets other content and the next file (sorted by
/// folder and path) is deleted; in each of `databases`, a row of the seed table changes, the
/// extra table is dropped and an intruder table added.
pub fn damage(
    before: &Capture,
    databases: &BTreeMap<String, Database>,
    account: Option<&Account>,
    timeout: Duration,
) -> Result<Damage, ConformanceError> {
    let mut done = Damage::default();
    let files: Vec<(&String, &Utf8PathBuf, &String)> = before
        .folders
        .iter()
        .flat_map(|(url, folder)| {
            folder
                .entries
                .iter()
                // A file mapping (`""`) is left alone: it is the package's, not data.
                .filter(|(rel, e)| e.kind == FileKind::File && !rel.is_empty())
                .map(move |(rel, _)| (url, &folder.path, rel))
        })
        .collect();
    let changed = files
        .iter()
        .position(|(_, _, rel)| rel.as_str() == MARKER_NAME)
        .or(if files.is_empty() { None } else { Some(0) });
    if let Some(i) = changed {
        let (url, folder, rel) = files[i];
        let (dir, name) = open_parent(folder, rel)?;
        write_at(&dir, &name, DAMAGE_TEXT, account)
            .map_err(ConformanceError::io("write", folder.join(rel)))?;
        done.expected.push(Difference::FileContent {
            folder: url.clone(),
            path: rel.clone(),
            before_size: before.folders[url].entries[rel].size,
            after_size: Some(DAMAGE_TEXT.len() as u64),
        });
        if let Some(&(url, folder, rel)) = files
            .iter()
            .enumerate()
            .find(|(j, _)| *j != i)
            .map(|(_, f)| f)
        {
            let (dir, name) = open_parent(folder, rel)?;
            rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::empty())
                .map_err(|e| ConformanceError::io("delete", folder.join(rel))(e.into()))?;
            done.expected.push(Difference::FileMissing {
                folder: url.clone(),
                path: rel.clone(),
            });
        }
    }
    for (id, db) in databases {
        let n = Names::of(db);
        let q = |name: &str| quote_ident(db.kind, name);
        let sql = format!(
            "UPDATE {} SET label = 'damaged' WHERE id = 3;\nDROP TABLE {};\n\
             CREATE TABLE {} (id INT PRIMARY KEY);\nINSERT INTO {} (id) VALUES (1);\n",
            q(&n.seed),
            q(&n.extra),
            q(&n.intruder),
            q(&n.intruder)
        );
        run_sql(db, account, &sql, timeout, "damage")?;
        let key = |t: &str| (id.clone(), t.to_owned());
        let (database, table) = key(&n.seed);
        done.expected
            .push(Difference::TableRows { database, table });
        let (database, table) = key(&n.extra);
        done.expected
            .push(Difference::TableMissing { database, table });
        let (database, table) = key(&n.intruder);
        done.expected
            .push(Difference::TableAdded { database, table });
    }
    Ok(done)
}

/// The folder holding `rel` below `folder`, opened without following any symlink, and the
/// file's own name.
fn open_parent(
    folder: &Utf8Path,
    rel: &str,
) -> Result<(std::os::fd::OwnedFd, String), ConformanceError> {
    let rel = Utf8Path::new(rel);
    let name = rel.file_name().unwrap_or_default().to_owned();
    let parent = rel.parent().unwrap_or(Utf8Path::new(""));
    let dir = open_dir_nofollow(folder.as_std_path())
        .and_then(|fd| open_dir_beneath(fd.as_fd(), parent.as_std_path()))
        .map_err(ConformanceError::io("open", folder.join(parent)))?;
    Ok((dir, name))
}

/// The seed's table names in one database, with its table prefix.
struct Names {
    seed: String,
    extra: String,
    view: String,
    intruder: String,
}

impl Names {
    fn of(db: &Database) -> Names {
        let prefix = db.prefix.as_deref().unwrap_or("");
        Names {
            seed: format!("{prefix}{SEED_TABLE}"),
            extra: format!("{prefix}{EXTRA_TABLE}"),
            view: format!("{prefix}{SEED_VIEW}"),
            intruder: format!("{prefix}{INTRUDER_TABLE}"),
        }
    }
}

fn run_sql(
    db: &Database,
    account: Option<&Account>,
    sql: &str,
    timeout: Duration,
    action: &'static str,
) -> Result<(), ConformanceError> {
    database::as_account(account, || database::query(db, sql, timeout))
        .map(|_| ())
        .map_err(ConformanceError::database(action, &db.name))
}

fn quote_ident(kind: DbKind, name: &str) -> String {
    match kind {
        DbKind::Mysql => format!("`{}`", name.replace('`', "``")),
        DbKind::Postgresql => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// Text as a literal built from its hex bytes: nothing in it can close a quote.
fn text_literal(kind: DbKind, text: Option<&str>) -> String {
    match (kind, text) {
        (_, None) => "NULL".into(),
        (DbKind::Mysql, Some("")) => "''".into(),
        (DbKind::Mysql, Some(t)) => format!("CONVERT(X'{}' USING utf8mb4)", hex::encode(t)),
        (DbKind::Postgresql, Some(t)) => {
            format!("convert_from(decode('{}', 'hex'), 'UTF8')", hex::encode(t))
        }
    }
}

fn bytes_literal(kind: DbKind, bytes: Option<&[u8]>) -> String {
    match (kind, bytes) {
        (_, None) => "NULL".into(),
        (DbKind::Mysql, Some([])) => "''".into(),
        (DbKind::Mysql, Some(b)) => format!("X'{}'", hex::encode(b)),
        (DbKind::Postgresql, Some(b)) => format!("decode('{}', 'hex')", hex::encode(b)),
    }
}
