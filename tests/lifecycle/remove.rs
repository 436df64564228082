//! `instance remove`: the final backup, `configure remove` as the tenant, then only what the
//! install made (files, created databases and users, the record); `--keep-data`,
//! `--no-final-backup`, a failing `configure remove` that deletes nothing, and a `kill -9`
//! during it that leaves the whole instance.

use aps_controller::database::DbKind;
use aps_controller::database::provision::{self, CreatedDatabase};
use aps_controller::registry::{FileStore, Instance, InstanceStore, StateDir};
use camino::Utf8Path;
use test_support as support;

use super::install::{install, instances};
use super::install_databases::{on_server, with_servers};
use super::install_fixtures::{existing, fresh, sql};
use support::tenant::tenant;
use support::{Sandbox, assert_success, json, repo, tree_state};

fn record(sb: &Sandbox, name: &str) -> Instance {
    FileStore::new(StateDir::at(sb.state())).get(name).unwrap()
}

/// Drops, passed or failed, the databases a test's instance had created (read from its record
/// while it still had one).
struct DropCreated {
    state: camino::Utf8PathBuf,
    created: Vec<CreatedDatabase>,
}

impl DropCreated {
    fn of(sb: &Sandbox, name: &str) -> Self {
        let created = record(sb, name)
            .installed
            .map(|i| i.created_databases.into_values().collect())
            .unwrap_or_default();
        DropCreated {
            state: sb.state(),
            created,
        }
    }
}

impl Drop for DropCreated {
    fn drop(&mut self) {
        let Ok(config) = aps_controller::ControllerConfig::load(StateDir::at(self.state.clone()))
        else {
            return;
        };
        for created in &self.created {
            if let Ok(server) = config.database_server(&created.server) {
                let _ = provision::drop(server, created);
            }
        }
    }
}

fn remove(sb: &Sandbox, name: &str, flags: &[&str]) -> std::process::Output {
    let mut args = vec!["instance", "remove", name, "--json"];
    args.extend_from_slice(flags);
    sb.cli(&args)
}

fn faulty(sb: &Sandbox, www: &Utf8Path, name: &str, fail_at: &str) -> std::process::Output {
    let setting = format!("fail-at={fail_at}");
    install(
        sb,
        &repo().join("fixtures/lifecycle/lifecycle-sh-faulty"),
        name,
        &www.join(name),
        &["--setting", &setting, "--database", "main=maria"],
    )
}

/// `^<instance>_final_\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}\.aps\.tar`: the archive store's name
/// of a final backup (UTC, as every backup name).
fn is_final_name(name: &str, instance: &str) -> bool {
    let Some(rest) = name.strip_prefix(&format!("{instance}_final_")) else {
        return false;
    };
    let shape = "dddd-dd-dd-dd-dd-dd";
    rest.len() > shape.len()
        && rest.bytes().zip(shape.bytes()).all(|(b, s)| match s {
            b'd' => b.is_ascii_digit(),
            _ => b == s,
        })
        && rest[shape.len()..].starts_with(".aps.tar")
}

#[test]
fn lifecycle_php_removed_leaves_the_tenants_file_an_existing_database_and_a_restorable_backup() {
    let Some((sb, www, servers)) = with_servers("remove of lifecycle-php") else {
        return;
    };
    let stats = fresh(DbKind::Postgresql, "rm-php");
    let stats_arg = existing(&sb, "stats", &stats);
    let args = [
        "--setting",
        "admin_password=correct horse",
        "--setting",
        "admin_email=admin@example.test",
        "--setting",
        "site_code=rm-php",
        "--database",
        "main=maria",
        "--database",
        &stats_arg,
    ];
    let package = repo().join("fixtures/lifecycle/lifecycle-php");
    let root = www.join("rm-php");
    let out = install(&sb, &package, "rm-php", &root, &args);
    assert_success(&out, "install lifecycle-php");
    let _cleanup = DropCreated::of(&sb, "rm-php");
    let installed = record(&sb, "rm-php")
        .installed
        .expect("the install says what it made");
    assert!(installed.web_root_created);
    assert!(installed.created_databases.contains_key("main"));
    assert!(
        !installed.created_databases.contains_key("stats"),
        "existing: is not made"
    );
    assert_eq!(on_server(&servers, DbKind::Mysql, "rm_php").len(), 2);
    // The tenant's own file beside the install's.
    let planted = root.join("tenant-notes.txt");
    std::fs::write(&planted, "mine\n").unwrap();
    let t = tenant();
    std::os::unix::fs::chown(&planted, Some(t.uid), Some(t.gid)).unwrap();

    let out = remove(&sb, "rm-php", &[]);
    assert_success(&out, "instance remove");
    let v = json(&out);
    assert_eq!(v["configure_ran"], true, "{v}");
    assert_eq!(v["kept"], serde_json::json!(["tenant-notes.txt"]), "{v}");
    assert_eq!(v["web_root_removed"], false, "{v}");
    // Only the tenant's file is left in the web root; the created database and user are gone,
    // the existing one is kept and still usable; the record is gone.
    let left: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, vec!["tenant-notes.txt".to_owned()]);
    assert_eq!(std::fs::read_to_string(&planted).unwrap(), "mine\n");
    assert!(on_server(&servers, DbKind::Mysql, "rm_php").is_empty());
    assert_eq!(sql(stats.database(), "SELECT 1"), "1");
    assert!(instances(&sb).is_empty());
    let log = json(&sb.cli(&["log", "rm-php", "--json"]));
    assert!(
        log.to_string().contains("\"remove\""),
        "the journal keeps it: {log}"
    );

    // The final backup is in the store, and restores into the instance installed again.
    let file = v["final_backup"]["file"]
        .as_str()
        .expect("final backup")
        .to_owned();
    assert!(Utf8Path::new(&file).is_file(), "{v}");
    // Named `<instance>_final_<UTC YYYY-MM-DD-HH-mm-SS>`, and listed by `backups` after the
    // instance is gone.
    let stored_as = v["final_backup"]["stored_as"].as_str().expect("stored_as");
    assert!(is_final_name(stored_as, "rm-php"), "{stored_as}");
    assert_eq!(Utf8Path::new(&file).file_name(), Some(stored_as), "{v}");
    let listed = json(&sb.cli(&["backups", "rm-php", "--json"]));
    let listed: Vec<(&str, &str)> = listed["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .filter_map(|b| Some((b["file"].as_str()?, b["periodicity"].as_str()?)))
        .collect();
    assert_eq!(listed, [(stored_as, "final")]);
    std::fs::remove_file(&planted).unwrap();
    let out = install(&sb, &package, "rm-php", &root, &args);
    assert_success(&out, "install again");
    let _cleanup2 = DropCreated::of(&sb, "rm-php");
    let out = sb.cli(&["restore", "rm-php", "--from", &file, "--json"]);
    assert_success(&out, "restore --from the final backup");
    let out = remove(&sb, "rm-php", &["--no-final-backup"]);
    assert_success(&out, "remove again");
    assert!(on_server(&servers, DbKind::Mysql, "rm_php").is_empty());
}

#[test]
fn keep_data_removes_the_record_only_and_no_final_backup_takes_none() {
    let Some((sb, www, servers)) = with_servers("remove --keep-data") else {
        return;
    };
    let out = faulty(&sb, &www, "rm-keep", "none");
    assert_success(&out, "install");
    let _cleanup = DropCreated::of(&sb, "rm-keep");
    let before = tree_state(&www, &[]);
    let out = remove(&sb, "rm-keep", &["--keep-data"]);
    assert_success(&out, "remove --keep-data");
    let v = json(&out);
    assert_eq!(v["removed"], "rm-keep", "{v}");
    assert_eq!(v["configure_ran"], false, "no script with --keep-data: {v}");
    assert!(v["final_backup"].is_null(), "{v}");
    assert_eq!(tree_state(&www, &[]), before, "files kept");
    assert_eq!(
        on_server(&servers, DbKind::Mysql, "rm_keep").len(),
        2,
        "database kept"
    );
    assert!(instances(&sb).is_empty());

    // --no-final-backup: everything the install made goes, and nothing enters the store.
    let out = faulty(&sb, &www, "rm-nofinal", "none");
    assert_success(&out, "install");
    let _cleanup2 = DropCreated::of(&sb, "rm-nofinal");
    let out = remove(&sb, "rm-nofinal", &["--no-final-backup"]);
    assert_success(&out, "remove --no-final-backup");
    let v = json(&out);
    assert!(v["final_backup"].is_null(), "{v}");
    assert_eq!(v["web_root_removed"], true, "{v}");
    assert!(!www.join("rm-nofinal").exists());
    assert!(on_server(&servers, DbKind::Mysql, "rm_nofinal").is_empty());
    let backups = json(&sb.cli(&["backups", "rm-nofinal", "--json"]));
    assert!(!backups.to_string().contains("rm-nofinal_"), "{backups}");
}

#[test]
fn a_failing_configure_remove_deletes_nothing() {
    let Some((sb, www, servers)) = with_servers("remove with fail-at=remove") else {
        return;
    };
    let out = faulty(&sb, &www, "rm-fail", "remove");
    assert_success(&out, "install");
    let _cleanup = DropCreated::of(&sb, "rm-fail");
    let record_before = std::fs::read(sb.state().join("instances/rm-fail.json")).unwrap();
    let before = (
        tree_state(&www, &["rm-fail/op-remove.txt"]),
        on_server(&servers, DbKind::Mysql, "rm_fail"),
    );
    let out = remove(&sb, "rm-fail", &["--no-final-backup"]);
    let v = json(&out);
    assert_eq!(out.status.code(), Some(13), "{v}");
    assert_eq!(v["error"]["step"], "remove-configure", "{v}");
    assert_eq!(
        (
            tree_state(&www, &["rm-fail/op-remove.txt"]),
            on_server(&servers, DbKind::Mysql, "rm_fail")
        ),
        before
    );
    assert_eq!(
        std::fs::read(sb.state().join("instances/rm-fail.json")).unwrap(),
        record_before
    );
    // The instance still works.
    assert_success(&sb.cli(&["instance", "check", "rm-fail"]), "instance check");
    assert_success(&sb.cli(&["backup", "rm-fail", "--json"]), "backup");
    assert_success(&remove(&sb, "rm-fail", &["--keep-data"]), "unregister");
}

#[test]
fn kill_9_during_configure_remove_leaves_the_whole_instance() {
    let Some((sb, www, servers)) = with_servers("kill -9 during configure remove") else {
        return;
    };
    let package = sb.path("hang-remove");
    super::install::copy_package(
        &repo().join("fixtures/lifecycle/lifecycle-sh-faulty"),
        &package,
    );
    std::fs::rename(
        package.join("scripts/configure"),
        package.join("scripts/configure.orig"),
    )
    .unwrap();
    std::fs::write(
        package.join("scripts/configure"),
        "#!/bin/sh\nif [ \"$1\" = remove ]; then echo x > \"$WEB___DIR/removing\"; exec sleep 120; fi\nexec sh \"$(dirname \"$0\")/configure.orig\" \"$@\"\n",
    )
    .unwrap();
    let root = www.join("rm-kill");
    let out = install(
        &sb,
        &package,
        "rm-kill",
        &root,
        &["--database", "main=maria"],
    );
    assert_success(&out, "install");
    let _cleanup = DropCreated::of(&sb, "rm-kill");
    let before = (
        tree_state(&www, &["rm-kill/removing"]),
        on_server(&servers, DbKind::Mysql, "rm_kill"),
    );
    let mut child = sb
        .command(&[
            "instance",
            "remove",
            "rm-kill",
            "--no-final-backup",
            "--json",
        ])
        .spawn()
        .unwrap();
    let marker = root.join("removing");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(&marker).is_ok_and(|t| t.ends_with('\n')) {
        assert!(
            std::time::Instant::now() < deadline,
            "configure remove never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = sb.cli(&["instance", "list", "--json"]);
    assert_success(&out, "the next command");
    let v = json(&out);
    assert_eq!(v["recovered"][0]["operation"], "remove", "{v}");
    assert_eq!(instances(&sb), vec!["rm-kill".to_owned()]);
    assert_eq!(
        (
            tree_state(&www, &["rm-kill/removing"]),
            on_server(&servers, DbKind::Mysql, "rm_kill")
        ),
        before
    );
    assert_success(&remove(&sb, "rm-kill", &["--keep-data"]), "unregister");
}

#[test]
fn kill_9_after_the_point_of_no_return_is_finished_by_the_next_command() {
    let Some((sb, www, servers)) = with_servers("kill -9 during the deletions of a removal") else {
        return;
    };
    let out = faulty(&sb, &www, "rm-late", "none");
    assert_success(&out, "install");
    let _cleanup = DropCreated::of(&sb, "rm-late");
    // The instance's data inside a folder the install made: enough of it that the deletions
    // take a moment to kill into.
    let bulk = www.join("rm-late/data/bulk");
    std::fs::create_dir(&bulk).unwrap();
    for i in 0..4000 {
        std::fs::write(bulk.join(format!("f{i}")), b"x").unwrap();
    }
    let mut child = sb
        .command(&[
            "instance",
            "remove",
            "rm-late",
            "--no-final-backup",
            "--json",
        ])
        .spawn()
        .unwrap();
    // The point of no return: the open journal entry lists the record's removal.
    let journal = sb.state().join("journal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    'wait: loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no point of no return seen"
        );
        if let Ok(entries) = std::fs::read_dir(&journal) {
            for e in entries.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                if e.path().extension().is_some_and(|x| x == "json") && text.contains("unregister")
                {
                    break 'wait;
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        bulk.exists() || instances(&sb) == vec!["rm-late".to_owned()],
        "killed before the deletions were done"
    );
    let out = sb.cli(&["instance", "list", "--json"]);
    assert_success(&out, "the next command");
    let v = json(&out);
    assert_eq!(v["recovered"][0]["operation"], "remove", "{v}");
    assert_eq!(v["recovered"][0]["fully_undone"], true, "{v}");
    assert!(instances(&sb).is_empty(), "the record is gone");
    assert!(
        !www.join("rm-late").exists(),
        "the web root the install made is gone"
    );
    assert!(on_server(&servers, DbKind::Mysql, "rm_late").is_empty());
}

/// With the repository store the final backup is one snapshot tagged `final`: `backups` lists
/// it after the removal, and `prune` keeps it when the name's new instance has newer ones.
#[test]
fn final_snapshot_is_tagged_final_and_kept_by_prune() {
    let Some((sb, www, servers)) = with_servers("remove into the repository store") else {
        return;
    };
    std::fs::write(
        sb.state().join("panel.toml"),
        "[store]\nkind = \"repository\"\n[retention]\nkeep = 1\n",
    )
    .unwrap();
    assert_success(&sb.cli(&["store", "init"]), "store init");
    let out = faulty(&sb, &www, "rm-repo", "none");
    assert_success(&out, "install");
    let _cleanup = DropCreated::of(&sb, "rm-repo");
    let out = remove(&sb, "rm-repo", &[]);
    assert_success(&out, "instance remove");
    let v = json(&out);
    assert_eq!(v["final_backup"]["kind"], "snapshot", "{v}");
    let final_id = v["final_backup"]["snapshot"]
        .as_str()
        .expect("snapshot id")
        .to_owned();
    assert!(on_server(&servers, DbKind::Mysql, "rm_repo").is_empty());
    let snapshots = |sb: &Sandbox| -> Vec<(String, String)> {
        let v = json(&sb.cli(&["backups", "rm-repo", "--json"]));
        v["snapshots"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|s| {
                let field = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                (field("id"), field("periodicity"))
            })
            .collect()
    };
    assert_eq!(snapshots(&sb), [(final_id.clone(), "final".to_owned())]);

    // The name installed again, two daily snapshots: keep = 1 forgets the older daily one and
    // never the final one.
    let out = faulty(&sb, &www, "rm-repo", "none");
    assert_success(&out, "install again");
    let _cleanup2 = DropCreated::of(&sb, "rm-repo");
    let mut daily = Vec::new();
    for _ in 0..2 {
        let out = sb.cli(&[
            "store",
            "backup",
            "rm-repo",
            "--periodicity",
            "daily",
            "--json",
        ]);
        assert_success(&out, "store backup");
        daily.push(json(&out)["snapshot"]["id"].as_str().unwrap().to_owned());
    }
    let out = sb.cli(&["prune", "--json"]);
    assert_success(&out, "prune");
    let pruned = json(&out);
    let forgotten: Vec<&str> = pruned["repository"]["forgotten"]
        .as_array()
        .unwrap_or_else(|| panic!("{pruned}"))
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(forgotten, [daily[0].as_str()], "{pruned}");
    let mut left = snapshots(&sb);
    left.sort();
    let mut want = vec![
        (final_id, "final".to_owned()),
        (daily[1].clone(), "daily".to_owned()),
    ];
    want.sort();
    assert_eq!(left, want);
    let out = remove(&sb, "rm-repo", &["--no-final-backup"]);
    assert_success(&out, "remove again");
}
