//! Restore through the real `aps-controller` binary, real interpreters, and real MariaDB and
//! PostgreSQL databases: round trips of hard cases, every failure put back exactly as it was
//! (script exit, timeout, signal, an unloadable dump, kill -9 of the controller), and backup
//! files refused before anything changes.

use test_support as support;
use test_support::restore_kit as kit;

use std::process::Stdio;

use aps_controller::archive::{
    ArchiveOptions, ArchiveReader, ArchiveWriter, ExtractPlan, ManifestHeader, PartKind,
};
use camino::{Utf8Path, Utf8PathBuf};
use kit::{DbInstance, Site, db_instance, open_journal_entries, work_leftovers};
use support::{Sandbox, assert_success, env_dump, exists, json, pid_alive};

const SH_SETTINGS: &str =
    "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\nsite_title = \"Demo\"\n";

fn backups(sb: &Sandbox) -> Utf8PathBuf {
    let dir = sb.path("backups");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn backup(sb: &Sandbox, name: &str) -> Utf8PathBuf {
    let file = backups(sb).join(format!("{name}.aps"));
    let out = sb.cli(&["backup", name, "--to", file.as_str(), "--json"]);
    assert_success(&out, "backup");
    file
}

fn restore(sb: &Sandbox, name: &str, file: &Utf8Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["restore", name, "--from", file.as_str(), "--json"];
    args.extend_from_slice(extra);
    sb.cli(&args)
}

/// A populated instance whose backup was taken; `behaviour` is what its restore script does.
fn backed_up(sb: &Sandbox, behaviour: &str) -> Option<(DbInstance, Utf8PathBuf)> {
    let inst = db_instance(
        sb,
        "shop",
        Site {
            behaviour,
            ..Site::default()
        },
    )?;
    inst.populate();
    let file = backup(sb, "shop");
    Some((inst, file))
}

/// The whole round trip: backup → delete files, change modes and links, drop and alter rows
/// and tables → restore gives the same tree (content, modes, symlink targets, empty folders,
/// odd names) and the same query results, and the restore script ran with the instance's
/// environment after the controller put the resources back.
#[test]
fn round_trip_restores_files_modes_links_and_both_databases() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb, "normal") else {
        return;
    };
    let before = inst.state();
    assert!(
        before.databases.contains("== mysql rows\n1\t"),
        "{}",
        before.databases
    );
    inst.damage();
    assert_ne!(inst.state(), before, "the damage must show");

    let out = restore(&sb, "shop", &file, &[]);
    assert_success(&out, "restore");
    let report = json(&out);
    assert_eq!(report["ok"], true);
    assert_eq!(report["instance"], "shop");
    assert_eq!(report["file"], file.as_str());
    assert_eq!(report["from_version"], "2.1.0");
    assert_eq!(report["from_release"], "3");
    assert_eq!(report["safety_snapshot"], true);

    let after = inst.state();
    kit::assert_same(&after.clone().without_script_traces(), &before, "restored");
    // The script ran last, with this instance's environment, on the restored folder.
    let env = env_dump(&inst.www.join(".aps-restore-env"));
    assert_eq!(env["WEB___DIR"], inst.www.as_str());
    assert_eq!(env["DB_main_NAME"], inst.main.name);
    assert_eq!(env["DB_stats_NAME"], inst.stats.name);
    assert!(!exists(inst.www.join(".aps-restore-trace")));
    // The script's BACKUP_FILE was its own part of the archive (what it wrote at backup).
    let restored_from = env_dump(&inst.www.join(".aps-restored-from"));
    assert_eq!(restored_from["WEB___DIR"], inst.www.as_str());
    assert!(
        !restored_from.contains_key("BACKUP_FILE")
            || restored_from["BACKUP_FILE"] != env["BACKUP_FILE"]
    );
    kit::assert_nothing_left_open(&sb.state());
}

/// A restore into an instance that was not damaged changes nothing but the script's traces.
#[test]
fn restore_over_an_unchanged_instance_is_idempotent() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb, "normal") else {
        return;
    };
    let before = inst.state();
    for _ in 0..2 {
        assert_success(&restore(&sb, "shop", &file, &[]), "restore");
        kit::assert_same(&inst.state().without_script_traces(), &before, "restored");
    }
}

/// Runs a restore that must fail and checks that the instance is exactly as it was before
/// (everything, the restore's own traces included), and that nothing is left behind.
fn assert_failed_and_put_back(
    sb: &Sandbox,
    inst: &DbInstance,
    file: &Utf8Path,
    extra: &[&str],
    (code, kind, step): (i32, &str, &str),
) -> serde_json::Value {
    inst.damage();
    let before = inst.state();
    let out = restore(sb, "shop", file, extra);
    assert_eq!(out.status.code(), Some(code), "{out:?}");
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], kind, "{v}");
    assert_eq!(v["error"]["step"], step, "{v}");
    assert_eq!(
        inst.state(),
        before,
        "the instance was not put back exactly"
    );
    kit::assert_nothing_left_open(&sb.state());
    v
}

#[test]
fn script_failure_puts_the_instance_back() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb, "restore-fails") else {
        return;
    };
    let v = assert_failed_and_put_back(
        &sb,
        &inst,
        &file,
        &[],
        (13, "script-failed", "3.2-run-script"),
    );
    let stderr = v["error"]["stderr_tail"].as_str().unwrap_or_default();
    assert!(stderr.contains("license server"), "{v}");
}

#[test]
fn script_timeout_puts_the_instance_back() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb, "restore-hangs") else {
        return;
    };
    assert_failed_and_put_back(
        &sb,
        &inst,
        &file,
        &["--timeout", "2"],
        (14, "timed-out", "3.2-run-script"),
    );
}

#[test]
fn script_killed_by_a_signal_puts_the_instance_back() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb, "restore-signal") else {
        return;
    };
    let v = assert_failed_and_put_back(
        &sb,
        &inst,
        &file,
        &[],
        (13, "script-failed", "3.2-run-script"),
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("signal"), "{message}");
}

/// Re-packs `file` into `out` with the same header (or `header`), every part taken from the
/// original, `edit` applied to the extracted MySQL dump: the result is a valid archive whose
/// hashes match its content, so only loading it can find what is wrong with it. Tagged with
/// the key of `sb`'s controller, as if that controller had made it.
fn repack(
    sb: &Sandbox,
    file: &Utf8Path,
    out: &Utf8Path,
    header: Option<ManifestHeader>,
    edit: impl FnOnce(&Utf8Path),
) {
    let reader = ArchiveReader::open(file, None).unwrap();
    let manifest = reader.manifest().clone();
    let scratch = out.with_extension("parts");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut plan = ExtractPlan::new();
    for (i, part) in manifest.parts.iter().enumerate() {
        let dest = scratch.join(i.to_string());
        plan = match &part.kind {
            PartKind::WebDir { mapping_url } => plan.web_dir(mapping_url, dest),
            _ => plan.file(&part.name, dest),
        };
    }
    reader.extract(&plan).unwrap();
    let mut edit = Some(edit);
    let target = std::fs::File::create(out).unwrap();
    let mut writer = ArchiveWriter::create(
        &target,
        &ArchiveOptions::default(),
        header.unwrap_or(manifest.header.clone()),
    )
    .unwrap();
    for (i, part) in manifest.parts.iter().enumerate() {
        let path = scratch.join(i.to_string());
        match &part.kind {
            PartKind::WebDir { mapping_url } => {
                writer.add_web_dir(mapping_url, &path).unwrap();
            }
            kind => {
                if matches!(kind, PartKind::DatabaseDump { kind, .. } if kind == "mysql") {
                    (edit.take().unwrap())(&path);
                }
                writer
                    .add_file_part(&part.name, kind.clone(), &path)
                    .unwrap();
            }
        }
    }
    writer.tag_with(
        aps_controller::backup_key::load_or_create(&sb.state().join("backup-key")).unwrap(),
    );
    writer.finish().unwrap();
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// A MySQL dump that fails half-way (a statement at its end refers to a missing table): the
/// controller has by then replaced the web folder, loaded the PostgreSQL dump and part of the
/// MySQL one; everything is put back.
#[test]
fn dump_that_does_not_load_puts_the_instance_back() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb, "normal") else {
        return;
    };
    let broken = backups(&sb).join("broken.aps");
    repack(&sb, &file, &broken, None, |dump| {
        let mut sql = std::fs::read(dump).unwrap();
        sql.extend_from_slice(b"\nINSERT INTO no_such_table VALUES (1);\n");
        std::fs::write(dump, sql).unwrap();
    });
    let v = assert_failed_and_put_back(
        &sb,
        &inst,
        &broken,
        &[],
        (16, "resource-failed", "restore-resources"),
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("no_such_table"), "{message}");
    assert!(
        message.contains("\"main\""),
        "names the database: {message}"
    );
}

/// kill -9 of the controller while the restore script runs: the script dies with it (parent
/// death signal), and the next command of any kind (here `instance list`) finds the
/// unfinished journal entry and puts the instance back from the safety snapshot.
#[test]
fn killed_controller_is_rolled_back_by_the_next_command() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb, "restore-waits") else {
        return;
    };
    inst.damage();
    let before = inst.state();
    let mut child = sb
        .command(&["restore", "shop", "--from", file.as_str(), "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = inst.www.join(".aps-restore-running");
    // The script writes this file once the controller has restored files and databases.
    while !exists(&running) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the restore ended before its script started waiting"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_ne!(
        inst.state(),
        before,
        "the restore had started changing things"
    );
    let pid = child.id() as i32;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!pid_alive(pid));
    assert_eq!(
        open_journal_entries(&sb.state()).len(),
        1,
        "left open by the kill"
    );

    let out = sb.cli(&["instance", "list"]);
    assert_success(&out, "instance list");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("shop"),
        "the recovery is reported: {stderr}"
    );
    kit::assert_same(&inst.state(), &before, "not put back exactly");
    kit::assert_nothing_left_open(&sb.state());
    // The instance works normally afterwards.
    inst.set_behaviour(&sb, Site::default());
    assert_success(&restore(&sb, "shop", &file, &[]), "restore after recovery");
}

/// A changed byte or a cut file is refused before anything is touched: no snapshot, no
/// journal entry, nothing changed.
#[test]
fn tampered_or_truncated_backup_is_refused_before_any_change() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb, "normal") else {
        return;
    };
    inst.damage();
    let before = inst.state();
    let bytes = std::fs::read(&file).unwrap();

    let tampered = backups(&sb).join("tampered.aps");
    let mut t = bytes.clone();
    let mid = t.len() / 2;
    t[mid] ^= 0x40;
    std::fs::write(&tampered, t).unwrap();
    let truncated = backups(&sb).join("truncated.aps");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let garbage = backups(&sb).join("garbage.aps");
    std::fs::write(&garbage, b"not a backup at all\n").unwrap();
    let empty = backups(&sb).join("empty.aps");
    std::fs::write(&empty, b"").unwrap();

    for (f, what) in [
        (&tampered, "tampered"),
        (&truncated, "truncated"),
        (&garbage, "garbage"),
        (&empty, "empty"),
    ] {
        let out = restore(&sb, "shop", f, &[]);
        assert_eq!(out.status.code(), Some(17), "{what}: {out:?}");
        let v = json(&out);
        assert_eq!(v["error"]["kind"], "invalid-backup", "{what}: {v}");
        assert_eq!(v["error"]["step"], "verify-backup", "{what}: {v}");
        kit::assert_same(&inst.state(), &before, what);
        assert!(
            !exists(sb.state().join("journal")) || open_journal_entries(&sb.state()).is_empty()
        );
        assert!(work_leftovers(&sb.state()).is_empty(), "{what}");
    }
    // A missing file is a mistake in the arguments (usage, exit 2), not a damaged backup; a
    // folder is refused as a backup that cannot be read. Both name the file.
    let missing = backups(&sb).join("missing.aps");
    let out = restore(&sb, "shop", &missing, &[]);
    assert_eq!(out.status.code(), Some(2), "{missing}: {out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "usage", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(missing.as_str())
    );
    let folder = backups(&sb);
    let out = restore(&sb, "shop", &folder, &[]);
    assert_eq!(out.status.code(), Some(17), "{folder}: {out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["step"], "3.1-check-destination", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(folder.as_str())
    );
    kit::assert_same(&inst.state(), &before, "after refusals");
}

/// The backup of another package (a controller archive of nobackup-sample, a `sufficient`
/// file of sh-sample) is refused before anything changes.
#[test]
fn backup_of_another_package_is_refused() {
    let sb = Sandbox::new();
    let Some((inst, _)) = backed_up(&sb, "normal") else {
        return;
    };
    // nobackup-sample needs the same two kinds of databases: its own (registration refuses
    // another instance's database).
    let other_toml = sb.path("other.toml");
    let other_dbs = support::databases("other").expect("the test database servers");
    let dbs = format!(
        "{}{}",
        support::db_toml("main", &other_dbs.mysql),
        support::db_toml("stats", &other_dbs.pg)
    );
    let other_www = sb.path("other-www");
    std::fs::create_dir_all(other_www.join("uploads")).unwrap();
    std::fs::write(other_www.join("index.html"), "other").unwrap();
    std::fs::write(
        &other_toml,
        format!(
            "name = \"other\"\npackage = \"{}\"\nbase-url = \"http://other.test/\"\n\
             [web-dirs]\n\"/\" = \"{other_www}\"\n\"/uploads\" = \"{other_www}/uploads\"\n\
             [settings]\nadmin_password = \"pw\"\n{dbs}",
            support::fixture("nobackup-sample")
        ),
    )
    .unwrap();
    assert_success(
        &sb.cli(&["instance", "register", "--file", other_toml.as_str()]),
        "register other",
    );
    let other_file = backup(&sb, "other");
    sb.register("blog", "sh-sample", SH_SETTINGS);
    let blog_file = backup(&sb, "blog");

    inst.damage();
    let before = inst.state();
    for (f, id) in [(&other_file, "nobackup-sample"), (&blog_file, "sh-sample")] {
        let out = restore(&sb, "shop", f, &[]);
        assert_eq!(out.status.code(), Some(17), "{out:?}");
        let v = json(&out);
        assert_eq!(v["error"]["kind"], "invalid-backup");
        assert_eq!(v["error"]["step"], "verify-backup");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(id), "names the other package: {message}");
        kit::assert_same(&inst.state(), &before, "after a refusal");
    }
}

/// Version rule (docs/restore.md): the same version and release; an older one only when the
/// package's own update rules (`upgrade`/`patch` match, 1.0's `upgradable-from`) accept it;
/// never a newer one.
#[test]
fn versions_follow_the_packages_update_rules() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb, "normal") else {
        return;
    };
    let header = ArchiveReader::open(&file, None)
        .unwrap()
        .manifest()
        .header
        .clone();
    let with = |version: &str, release: &str| {
        let out = backups(&sb).join(format!("v{version}-{release}.aps"));
        let mut h = header.clone();
        h.version = version.into();
        h.release = release.into();
        repack(&sb, &file, &out, Some(h), |_| {});
        out
    };
    // sh-databases 2.1.0-3 declares <upgrade match="/application/version < '2.1.0'"/>.
    let older = with("2.0.9", "1");
    let out = restore(&sb, "shop", &older, &[]);
    assert_success(&out, "restore of an upgradable older version");
    let report = json(&out);
    assert_eq!(report["from_version"], "2.0.9");
    assert_eq!(report["from_release"], "1");

    let before = inst.state();
    for (version, release) in [("2.2.0", "1"), ("2.1.0", "4"), ("10.0", "1")] {
        let newer = with(version, release);
        let out = restore(&sb, "shop", &newer, &[]);
        assert_eq!(out.status.code(), Some(17), "{version}-{release}: {out:?}");
        let message = json(&out)["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains(&format!("{version}-{release}")),
            "{message}"
        );
        kit::assert_same(&inst.state(), &before, "after a refusal");
    }
}

/// `--no-safety-snapshot`: a success is a success; a failure leaves the instance as the failed
/// restore left it (the backup's content plus the script's trace), and says so.
#[test]
fn no_safety_snapshot_skips_the_snapshot() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb, "normal") else {
        return;
    };
    let backed = inst.state();
    inst.damage();
    let out = restore(&sb, "shop", &file, &["--no-safety-snapshot"]);
    assert_success(&out, "restore --no-safety-snapshot");
    assert_eq!(json(&out)["safety_snapshot"], false);
    kit::assert_same(&inst.state().without_script_traces(), &backed, "restored");

    inst.set_behaviour(
        &sb,
        Site {
            behaviour: "restore-fails",
            ..Site::default()
        },
    );
    inst.damage();
    let out = restore(&sb, "shop", &file, &["--no-safety-snapshot"]);
    assert_eq!(out.status.code(), Some(13));
    let mut left = inst.state().without_script_traces();
    assert!(left.tree.remove(".aps-restore-trace").is_some());
    kit::assert_same(&left, &backed, "left as the failed restore left it");
    kit::assert_nothing_left_open(&sb.state());
}

/// `sufficient` (sh-sample): the file is exactly what the script wrote, recognised by the
/// SHA-256 recorded at backup; the script restores from it. Changed by a byte, or without its
/// record, it is refused.
#[test]
fn sufficient_backup_is_restored_by_the_script_and_checked_by_its_record() {
    let sb = Sandbox::new();
    let www = sb.register("blog", "sh-sample", SH_SETTINGS);
    let file = backup(&sb, "blog");
    let out = restore(&sb, "blog", &file, &[]);
    assert_success(&out, "restore");
    assert_eq!(
        std::fs::read(www.join(".aps-restored-from")).unwrap(),
        std::fs::read(&file).unwrap()
    );
    let env = env_dump(&www.join(".aps-restore-env"));
    assert_eq!(env["WEB___DIR"], www.as_str());
    // The script got a private copy, never the backup's own path (which whoever can write
    // beside it could swap after the check); the copy went with the work folder.
    assert_ne!(env["BACKUP_FILE"], file.as_str());
    assert!(
        env["BACKUP_FILE"].starts_with(sb.state().as_str()),
        "{env:?}"
    );
    assert!(!exists(&env["BACKUP_FILE"]));

    let before = kit::tree_record(&www);
    let tampered = backups(&sb).join("tampered.bak");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.push(b'\n');
    std::fs::write(&tampered, bytes).unwrap();
    let out = restore(&sb, "blog", &tampered, &[]);
    assert_eq!(out.status.code(), Some(17), "{out:?}");
    assert_eq!(json(&out)["error"]["kind"], "invalid-backup");

    let records = sb.state().join("backup-records");
    for e in std::fs::read_dir(&records).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let out = restore(&sb, "blog", &file, &[]);
    assert_eq!(out.status.code(), Some(17), "{out:?}");
    assert_eq!(kit::tree_record(&www), before);
}

#[test]
fn unknown_instance_is_refused() {
    let sb = Sandbox::new();
    let file = sb.path("x.aps");
    std::fs::write(&file, "x").unwrap();
    let out = restore(&sb, "nope", &file, &[]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(json(&out)["error"]["kind"], "instance-not-found");
}
