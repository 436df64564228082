//! Crafted database dumps in backups another controller made (accepted with `backup import`),
//! through the real binary and the real MariaDB and PostgreSQL servers (issue 19, attack 1):
//! the dump tries to make the client run a command, read a file or run another file, as the
//! account that loads it (root here: the sandbox allows root scripts, the worst case).

use test_support as support;
use test_support::craft;
use test_support::restore_kit as kit;

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use aps_controller::archive::PartKind;
use camino::{Utf8Path, Utf8PathBuf};
use kit::{DbInstance, Site, db_instance, open_journal_entries, work_leftovers};
use support::{Sandbox, assert_success, exists, json};

/// A populated shop instance and a backup of it the controller made.
fn backed_up(sb: &Sandbox) -> Option<(DbInstance, Utf8PathBuf)> {
    let inst = db_instance(sb, "shop", Site::default())?;
    inst.populate();
    let dir = sb.path("backups");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("shop.aps");
    let out = sb.cli(&["backup", "shop", "--to", file.as_str(), "--json"]);
    assert_success(&out, "backup");
    Some((inst, file))
}

/// The backup re-packed as another controller's (its key), with `text` appended to its dump
/// of `kind`, and accepted with `backup import`.
fn imported_with(sb: &Sandbox, file: &Utf8Path, out: &str, kind: &str, text: &str) -> Utf8PathBuf {
    let scratch = sb.path(&format!("scratch-{out}"));
    let (manifest, parts) = craft::unpack(file, &scratch);
    let dump = &parts
        .iter()
        .find(|p| matches!(&p.kind, PartKind::DatabaseDump { kind: k, .. } if k == kind))
        .unwrap()
        .path;
    let mut sql = std::fs::read_to_string(dump).unwrap();
    sql.push_str(text);
    std::fs::write(dump, sql).unwrap();
    let path = sb.path("backups").join(out);
    craft::pack(&path, &manifest.header, &parts, Some(&craft::foreign_key()));
    assert_success(
        &sb.cli(&["backup", "import", path.as_str(), "--json"]),
        "backup import",
    );
    path
}

fn restore(sb: &Sandbox, file: &Utf8Path) -> Output {
    sb.cli(&["restore", "shop", "--from", file.as_str(), "--json"])
}

/// The refusal: `resource-failed` (exit 16), the instance exactly as it was, nothing left
/// open. Returns the message.
fn assert_refused(sb: &Sandbox, inst: &DbInstance, before: &kit::State, out: &Output) -> String {
    assert_eq!(out.status.code(), Some(16), "{out:?}");
    let v = json(out);
    assert_eq!(v["error"]["kind"], "resource-failed", "{v}");
    kit::assert_same(&inst.state(), before, "after the refusal");
    assert!(open_journal_entries(&sb.state()).is_empty());
    assert!(work_leftovers(&sb.state()).is_empty());
    v["error"]["message"].as_str().unwrap().to_owned()
}

/// The dump: `COPY (SELECT FROM stdin) TO STDOUT` is no COPY FROM stdin for psql, so
/// it never reads data; the `\.` that ended the old scan's "data" is inside a comment for psql,
/// and the `\!` line after it ran (the restore said ok). Now the COPY is refused before the
/// database is touched, naming its line, and nothing runs.
#[test]
fn imported_postgres_dump_with_a_copy_to_stdout_runs_nothing() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb) else {
        return;
    };
    let marker = sb.path("pwned-by-psql");
    let attack = format!(
        "CREATE TABLE public.stdin (n int);\nCOPY (SELECT FROM stdin) TO STDOUT;\n/*\n\\.\n*/\n\
         \\! touch {marker}\n"
    );
    let crafted = imported_with(&sb, &file, "copy-trick.aps", "postgresql", &attack);
    inst.damage();
    let before = inst.state();
    let out = restore(&sb, &crafted);
    assert!(
        !exists(&marker),
        "psql ran the dump's shell command: {out:?}"
    );
    let message = assert_refused(&sb, &inst, &before, &out);
    assert!(
        message.contains("COPY statement that pg_dump does not write") && message.contains("line "),
        "{message}"
    );
}

/// The MariaDB counterpart: `\!`, `system`, `source` and `LOAD DATA LOCAL INFILE` in an
/// imported dump run nothing, read nothing, and the restore is refused with everything put
/// back (`--binary-mode`, `--local-infile=0`).
#[test]
fn imported_mysql_dump_runs_no_client_command() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb) else {
        return;
    };
    let marker = sb.path("pwned-by-mysql");
    let secret = sb.path("shadow");
    std::fs::write(&secret, "root:TOPSECRET-HASH:19000:0:99999:7:::\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sourced = sb.path("sourced.sql");
    std::fs::write(&sourced, "CREATE TABLE sourced (a INT);\n").unwrap();
    let attacks = [
        format!("\\! touch {marker}\n"),
        format!("system touch {marker}\n"),
        format!("source {sourced}\n"),
        format!("\\. {sourced}\n"),
        format!(
            "CREATE TABLE loot (line TEXT);\nLOAD DATA LOCAL INFILE '{secret}' INTO TABLE loot;\n"
        ),
    ];
    let crafted: Vec<Utf8PathBuf> = attacks
        .iter()
        .enumerate()
        .map(|(i, a)| imported_with(&sb, &file, &format!("mysql-{i}.aps"), "mysql", a))
        .collect();
    inst.damage();
    let before = inst.state();
    for (file, attack) in crafted.iter().zip(&attacks) {
        let out = restore(&sb, file);
        assert!(!exists(&marker), "{attack:?} ran a shell command: {out:?}");
        let message = assert_refused(&sb, &inst, &before, &out);
        eprintln!("{attack:?}: {message}");
        assert!(!message.contains("TOPSECRET"), "{message}");
    }
    let tables = kit::run_sql(
        &inst.main,
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
         AND TABLE_NAME IN ('loot', 'sourced');",
    );
    assert_eq!(tables.trim(), "0", "{tables}");
}
