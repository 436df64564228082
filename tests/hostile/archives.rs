//! Hostile backup files, through the real binary and the real MariaDB and PostgreSQL servers:
//! archives crafted with a consistent manifest (every hash right) that carry no tag, another
//! controller's tag or a wrong one; parts out of the manifest's order; a web part that plants
//! a symlink for a nested mapping's part to be written through; dumps that try to run a
//! command or read a file of the controller's machine; `backup import` of a foreign archive.

use test_support as support;
use test_support::craft;
use test_support::restore_kit as kit;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Output;

use aps_controller::archive::{PartKind, TagKey};
use camino::{Utf8Path, Utf8PathBuf};
use kit::{DbInstance, Site, db_instance, open_journal_entries, work_leftovers};
use support::{Sandbox, assert_success, exists, json};

fn backups(sb: &Sandbox) -> Utf8PathBuf {
    let dir = sb.path("backups");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn restore(sb: &Sandbox, name: &str, file: &Utf8Path) -> Output {
    sb.cli(&["restore", name, "--from", file.as_str(), "--json"])
}

/// A populated shop instance and a backup of it the controller made.
fn backed_up(sb: &Sandbox) -> Option<(DbInstance, Utf8PathBuf)> {
    let inst = db_instance(sb, "shop", Site::default())?;
    inst.populate();
    let file = backups(sb).join("shop.aps");
    let out = sb.cli(&["backup", "shop", "--to", file.as_str(), "--json"]);
    assert_success(&out, "backup");
    Some((inst, file))
}

/// The backup's parts re-packed into `out` (uncompressed), `edit` applied to them first,
/// tagged with `key`.
fn repacked(
    sb: &Sandbox,
    file: &Utf8Path,
    out: &str,
    key: Option<&TagKey>,
    edit: impl FnOnce(&mut Vec<craft::Part>),
) -> Utf8PathBuf {
    let scratch = sb.path(&format!("scratch-{out}"));
    let (manifest, mut parts) = craft::unpack(file, &scratch);
    edit(&mut parts);
    let path = backups(sb).join(out);
    craft::pack(&path, &manifest.header, &parts, key);
    path
}

fn dump_of<'a>(parts: &'a [craft::Part], kind: &str) -> &'a Utf8Path {
    &parts
        .iter()
        .find(|p| matches!(&p.kind, PartKind::DatabaseDump { kind: k, .. } if k == kind))
        .unwrap()
        .path
}

/// A refusal before anything changed: the exit code and kind, the instance exactly as it
/// was, no journal entry left open and no work folder left.
fn assert_refused_unchanged(
    sb: &Sandbox,
    inst: &DbInstance,
    before: &kit::State,
    out: &Output,
    (code, kind, step): (i32, &str, &str),
) -> String {
    assert_eq!(out.status.code(), Some(code), "{out:?}");
    let v = json(out);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["error"]["kind"], kind, "{v}");
    assert_eq!(v["error"]["step"], step, "{v}");
    kit::assert_same(&inst.state(), before, "after the refusal");
    assert!(open_journal_entries(&sb.state()).is_empty());
    assert!(work_leftovers(&sb.state()).is_empty());
    v["error"]["message"].as_str().unwrap().to_owned()
}

/// An archive whose manifest is consistent but that carries no tag, another controller's
/// tag, or a tag that does not match, is refused as untrusted (exit 18) before anything
/// changes; so is `verify` of it. The same parts tagged with the state's key restore.
#[test]
fn untagged_foreign_and_wrong_tags_are_untrusted() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb) else {
        return;
    };
    let key = craft::state_key(&sb.state());
    let untagged = repacked(&sb, &file, "untagged.aps", None, |_| {});
    let foreign = repacked(
        &sb,
        &file,
        "foreign.aps",
        Some(&craft::foreign_key()),
        |_| {},
    );
    // The tag entry of a correctly tagged copy, one hex digit changed.
    let good = repacked(&sb, &file, "good.aps", Some(&key), |_| {});
    let mut entries = craft::entries(&good);
    let (_, tag) = entries.last_mut().unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(tag).unwrap();
    let hex = v["tag"].as_str().unwrap().to_owned();
    let flipped = if hex.starts_with('0') { "1" } else { "0" };
    v["tag"] = format!("{flipped}{}", &hex[1..]).into();
    *tag = serde_json::to_vec(&v).unwrap();
    let wrong = backups(&sb).join("wrong.aps");
    craft::write_entries(&wrong, &entries);

    inst.damage();
    let before = inst.state();
    for (f, says) in [
        (&untagged, "no authentication tag"),
        (&foreign, "made with key"),
        (&wrong, "does not match"),
    ] {
        let out = restore(&sb, "shop", f);
        let message = assert_refused_unchanged(
            &sb,
            &inst,
            &before,
            &out,
            (18, "untrusted-backup", "verify-backup"),
        );
        assert!(message.contains(says), "{f}: {message}");
        assert!(
            message.contains("backup import"),
            "says what to do: {message}"
        );
        // The panel's verify refuses it too.
        let out = sb.cli(&["verify", f.as_str(), "--json"]);
        assert!(!out.status.success(), "verify {f}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("not a backup this controller made"));
    }
    // The control: the same parts with the state's own tag restore.
    assert_success(&restore(&sb, "shop", &good), "restore of the tagged copy");
    assert_success(
        &sb.cli(&["verify", good.as_str()]),
        "verify of the tagged copy",
    );
}

/// Another controller's backup is accepted only through `backup import`, which shows what
/// it holds; after that it restores. `--dry-run` shows and accepts nothing.
#[test]
fn import_of_a_foreign_archive_then_restore() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb) else {
        return;
    };
    let expected = inst.state();
    // The controller's own backup needs no import.
    let out = sb.cli(&["backup", "import", file.as_str(), "--json"]);
    assert_success(&out, "import of our own backup");
    let v = json(&out);
    assert_eq!(v["tag"], "valid");
    assert!(v.get("record").is_none(), "{v}");
    let foreign = repacked(
        &sb,
        &file,
        "foreign.aps",
        Some(&craft::foreign_key()),
        |_| {},
    );
    inst.damage();
    let before = inst.state();

    let out = sb.cli(&["backup", "import", foreign.as_str(), "--dry-run", "--json"]);
    assert_success(&out, "import --dry-run");
    let v = json(&out);
    assert_eq!(v["kind"], "archive");
    assert_eq!(v["tag"], "other-key");
    assert!(v.get("record").is_none(), "{v}");
    let out = restore(&sb, "shop", &foreign);
    assert_refused_unchanged(
        &sb,
        &inst,
        &before,
        &out,
        (18, "untrusted-backup", "verify-backup"),
    );

    // A damaged file is not accepted: invalid, whatever its tag.
    let bytes = std::fs::read(&foreign).unwrap();
    let cut = backups(&sb).join("cut.aps");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = sb.cli(&["backup", "import", cut.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(17), "{out:?}");
    assert_eq!(json(&out)["error"]["kind"], "invalid-backup");
    assert!(!exists(sb.state().join("imported-backups")));

    // Human output: what it holds, part by part.
    let out = sb.cli(&["backup", "import", foreign.as_str()]);
    assert_success(&out, "import");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("backup of instance shop"), "{text}");
    assert!(
        text.contains("db-main.sql") && text.contains("web/0"),
        "{text}"
    );
    assert!(text.contains("imported"), "{text}");
    let out = sb.cli(&["backup", "import", foreign.as_str(), "--json"]);
    let v = json(&out);
    assert_eq!(v["manifest"]["header"]["instance"], "shop");
    assert!(v["record"].as_str().unwrap().contains("imported-backups"));

    assert_success(&restore(&sb, "shop", &foreign), "restore after import");
    kit::assert_same(
        &inst.state().without_script_traces(),
        &expected.without_script_traces(),
        "restored",
    );

    // The import names that manifest only: a copy with one web file changed (hashes redone,
    // same foreign key) is still refused.
    let altered = repacked(
        &sb,
        &file,
        "altered.aps",
        Some(&craft::foreign_key()),
        |parts| {
            let web = parts
                .iter()
                .find(|p| matches!(p.kind, PartKind::WebDir { .. }))
                .unwrap();
            std::fs::write(web.path.join("planted.php"), "<?php system($_GET['c']);").unwrap();
        },
    );
    let out = restore(&sb, "shop", &altered);
    assert_eq!(out.status.code(), Some(18), "{out:?}");
    assert!(!exists(inst.www.join("planted.php")));
}

/// Parts out of the manifest's order are refused (the tag is valid: the manifest is intact).
#[test]
fn parts_out_of_manifest_order_are_refused() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb) else {
        return;
    };
    let key = craft::state_key(&sb.state());
    let good = repacked(&sb, &file, "good.aps", Some(&key), |_| {});
    let entries = craft::entries(&good);
    // header.json, the two dumps, the web folder, manifest.json, manifest.tag: swap the dumps.
    let names: Vec<String> = entries.iter().map(|(h, _)| craft::name(h)).collect();
    let a = names
        .iter()
        .position(|n| n.starts_with("files/db-main"))
        .unwrap();
    let b = names
        .iter()
        .position(|n| n.starts_with("files/db-stats"))
        .unwrap();
    let mut swapped = entries.clone();
    swapped.swap(a, b);
    let reordered = backups(&sb).join("reordered.aps");
    craft::write_entries(&reordered, &swapped);
    // Still a good archive in every other respect: verify without the order rule would pass.
    inst.damage();
    let before = inst.state();
    let out = restore(&sb, "shop", &reordered);
    let message = assert_refused_unchanged(
        &sb,
        &inst,
        &before,
        &out,
        (17, "invalid-backup", "verify-backup"),
    );
    assert!(message.contains("order"), "{message}");
}

/// A web part for `/` holding a symlink `media -> <victim folder>`, followed by a part for the
/// nested mapping `/media`, both tagged with the state's key (say, a backup imported once):
/// refused before anything changes, the victim folder untouched.
#[test]
fn symlink_then_nested_mapping_part_is_refused() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb) else {
        return;
    };
    let victim = sb.path("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("keep.txt"), "another customer's file").unwrap();
    let victim_before = kit::tree_record(&victim);
    let key = craft::state_key(&sb.state());
    let media = sb.path("evil-media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("dropped.txt"), "written through the link").unwrap();
    let crafted = repacked(&sb, &file, "nested.aps", Some(&key), |parts| {
        let web = parts
            .iter()
            .find(|p| matches!(p.kind, PartKind::WebDir { .. }))
            .unwrap();
        let link = web.path.join("media");
        if exists(&link) {
            std::fs::remove_dir_all(&link).unwrap();
        }
        symlink(&victim, &link).unwrap();
        parts.push(craft::Part {
            name: "web/1".into(),
            kind: PartKind::WebDir {
                mapping_url: "/media".into(),
            },
            path: media.clone(),
        });
    });
    inst.damage();
    let before = inst.state();
    let out = restore(&sb, "shop", &crafted);
    let message = assert_refused_unchanged(
        &sb,
        &inst,
        &before,
        &out,
        (17, "invalid-backup", "verify-backup"),
    );
    assert!(message.contains("web/0/media"), "{message}");
    assert_eq!(kit::tree_record(&victim), victim_before);
    assert!(!exists(victim.join("dropped.txt")));
}

/// `\! touch MARKER` in the PostgreSQL dump of a tagged archive: the dump is refused before
/// the database is touched, naming the line; the command never runs; everything is put back.
#[test]
fn psql_meta_command_in_a_dump_is_refused() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb) else {
        return;
    };
    let marker = sb.path("pwned-by-psql");
    let key = craft::state_key(&sb.state());
    let crafted = repacked(&sb, &file, "psql.aps", Some(&key), |parts| {
        let dump = dump_of(parts, "postgresql");
        let mut sql = std::fs::read_to_string(dump).unwrap();
        let at = sql.find("\nCREATE TABLE").unwrap() + 1;
        sql.insert_str(at, &format!("\\! touch {marker}\n"));
        std::fs::write(dump, sql).unwrap();
    });
    inst.damage();
    let before = inst.state();
    let out = restore(&sb, "shop", &crafted);
    assert_eq!(out.status.code(), Some(16), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "resource-failed");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("meta-command") && message.contains("line "),
        "{message}"
    );
    assert!(!exists(&marker), "psql ran the dump's shell command");
    kit::assert_same(&inst.state(), &before, "put back");
}

/// `LOAD DATA LOCAL INFILE` of a root-only file in the MySQL dump of a tagged archive: the
/// client refuses to read it (the same dump loaded by a client without `--local-infile=0`
/// does put the file in the table: the attack is real), nothing of it lands in a table, and
/// everything is put back. `\!` and `system` lines run nothing.
#[test]
fn mysql_dump_cannot_read_local_files_or_run_commands() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb) else {
        return;
    };
    let secret = sb.path("shadow");
    std::fs::write(&secret, "root:TOPSECRET-HASH:19000:0:99999:7:::\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let marker = sb.path("pwned-by-mysql");
    let attack = format!(
        "CREATE TABLE loot (line TEXT);\nLOAD DATA LOCAL INFILE '{secret}' INTO TABLE loot;\n"
    );
    let bang = format!("\\! touch {marker}\n");
    let system = format!("system touch {marker}\n");
    let key = craft::state_key(&sb.state());
    let crafted = repacked(&sb, &file, "mysql.aps", Some(&key), |parts| {
        let dump = dump_of(parts, "mysql");
        let mut sql = std::fs::read_to_string(dump).unwrap();
        sql.push_str(&attack);
        std::fs::write(dump, sql).unwrap();
    });
    let with_line = |out: &str, line: &str| {
        repacked(&sb, &file, out, Some(&key), |parts| {
            let dump = dump_of(parts, "mysql");
            let mut sql = std::fs::read_to_string(dump).unwrap();
            sql.push_str(line);
            std::fs::write(dump, sql).unwrap();
        })
    };
    let banged = with_line("mysql-bang.aps", &bang);
    let systemed = with_line("mysql-system.aps", &system);
    inst.damage();
    let before = inst.state();
    for (f, says) in [
        (&crafted, "local infile"),
        (&banged, "unknown command"),
        (&systemed, "syntax"),
    ] {
        let out = restore(&sb, "shop", f);
        assert_eq!(out.status.code(), Some(16), "{out:?}");
        let message = json(&out)["error"]["message"].as_str().unwrap().to_owned();
        eprintln!("{f}: {message}");
        assert!(message.to_lowercase().contains(says), "{message}");
        assert!(
            !exists(&marker),
            "the mysql client ran the dump's shell command"
        );
        kit::assert_same(&inst.state(), &before, "put back");
    }
    let loot = kit::run_sql(
        &inst.main,
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'loot';",
    );
    assert_eq!(loot.trim(), "0", "{loot}");

    // The control: the attack itself works with a client that allows LOCAL INFILE.
    let db = inst.main.database();
    let out = std::process::Command::new("mariadb")
        .args([
            "--local-infile=1",
            &format!("--host={}", db.host),
            &format!("--port={}", db.port),
            &format!("--user={}", db.login),
            &format!("--password={}", db.password.expose()),
            &db.name,
            "-e",
            &format!("{attack}SELECT line FROM loot;"),
        ])
        .output();
    let out = out.expect("run the mariadb client");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("TOPSECRET"),
        "the control load did not read the file: {out:?}"
    );
}

/// A `sufficient` script's file whose record lost its tag (or got another) is untrusted;
/// `backup import --instance` accepts it again.
#[test]
fn sufficient_record_without_a_valid_tag_is_untrusted() {
    let sb = Sandbox::new();
    let www = sb.register(
        "blog",
        "sh-sample",
        "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\nsite_title = \"Demo\"\n",
    );
    let file = backups(&sb).join("blog.bak");
    assert_success(
        &sb.cli(&["backup", "blog", "--to", file.as_str(), "--json"]),
        "backup",
    );
    let records = sb.state().join("backup-records");
    let record = std::fs::read_dir(&records)
        .unwrap()
        .map(|e| Utf8PathBuf::from_path_buf(e.unwrap().path()).unwrap())
        .find(|p| p.extension() == Some("json"))
        .unwrap();
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    assert!(v["tag"].is_string(), "the record is tagged: {v}");
    // Someone who can drop a record file but lacks the key: a record without a tag, then one
    // for another instance with the old tag.
    v.as_object_mut().unwrap().remove("tag");
    std::fs::write(&record, serde_json::to_vec(&v).unwrap()).unwrap();
    let before = kit::tree_record(&www);
    let out = restore_plain(&sb, "blog", &file);
    assert_eq!(out.status.code(), Some(18), "{out:?}");
    assert_eq!(json(&out)["error"]["kind"], "untrusted-backup");
    assert_eq!(kit::tree_record(&www), before);

    let out = sb.cli(&[
        "backup",
        "import",
        file.as_str(),
        "--instance",
        "blog",
        "--json",
    ]);
    assert_success(&out, "import --instance");
    assert_eq!(json(&out)["kind"], "script-backup");
    assert_success(&restore_plain(&sb, "blog", &file), "restore after import");
}

fn restore_plain(sb: &Sandbox, name: &str, file: &Utf8Path) -> Output {
    restore(sb, name, file)
}
