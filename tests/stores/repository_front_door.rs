//! The repository store through the front door (`backup NAME`, `run`, `backups NAME`,
//! `restore NAME --latest|--snapshot ID`) with real databases on the test servers and real
//! files: each snapshot restores the tree and query results it was taken of, a same-size
//! change in a database between two backups is restored (dumps are never taken as
//! unchanged), a snapshot tagged with another controller's key is refused before anything
//! changes, a restore that fills the disk puts the instance back, and a symlink planted in the
//! web folder is not followed.

use test_support as support;
use test_support::restore_kit as kit;

use std::process::{Command, Output};

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::Value;
use support::{Sandbox, assert_success, databases, db_toml, json};

/// `site` of the nobackup fixture (no backup-script) with a MariaDB and a PostgreSQL database
/// filled with the hard cases, its web folder too, in a sandbox whose store is a repository.
struct Setup {
    sb: Sandbox,
    www: Utf8PathBuf,
    dbs: support::Dbs,
}

impl Setup {
    fn new(hint: &str) -> Option<Setup> {
        let dbs = databases(hint)?;
        let sb = Sandbox::new();
        let www = sb.register(
            "site",
            "nobackup-sample",
            &format!(
                "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\n{}{}",
                db_toml("main", &dbs.mysql),
                db_toml("stats", &dbs.pg)
            ),
        );
        kit::populate_tree(&www);
        kit::populate_databases(&dbs.mysql, &dbs.pg);
        std::fs::write(
            sb.state().join("panel.toml"),
            "[store]\nkind = \"repository\"\n",
        )
        .unwrap();
        Some(Setup { sb, www, dbs })
    }

    fn state(&self) -> (std::collections::BTreeMap<String, String>, String) {
        (
            kit::tree_record(&self.www),
            kit::db_state(&self.dbs.mysql, &self.dbs.pg),
        )
    }

    fn cli(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.push("--json");
        self.sb.cli(&all)
    }

    fn backup(&self) -> String {
        self.backup_snapshot()["id"].as_str().unwrap().to_owned()
    }

    fn backup_snapshot(&self) -> Value {
        let out = self.cli(&["backup", "site"]);
        assert_success(&out, "backup site");
        json(&out)["snapshot"].clone()
    }
}

fn fails(out: &Output, code: i32, kind: &str) -> Value {
    assert_eq!(out.status.code(), Some(code), "{out:?}");
    let v = json(out);
    assert_eq!(v["error"]["kind"], kind, "{v}");
    v
}

/// Staging folders left in the state folder (there must be none).
fn staging_leftovers(state: &Utf8Path) -> Vec<String> {
    support::entries(state)
        .into_iter()
        .filter(|e| e.starts_with(".repository-restore-"))
        .collect()
}

#[test]
fn backup_change_backup_restore_each_snapshot_through_the_front_door() {
    let Some(s) = Setup::new("repofront") else {
        return;
    };
    // Mistakes are refused before any work, each with its kind.
    fails(&s.cli(&["backup", "site"]), 2, "usage");
    assert_success(&s.cli(&["store", "init"]), "store init");
    fails(&s.cli(&["backup", "nosuch"]), 4, "instance-not-found");
    fails(&s.cli(&["restore", "site", "--latest"]), 2, "usage");
    fails(
        &s.cli(&["restore", "nosuch", "--latest"]),
        4,
        "instance-not-found",
    );
    fails(&s.cli(&["backup", "site", "--dry-run"]), 2, "usage");

    let first_state = s.state();
    let first = s.backup();

    // Change files (a same-size rewrite, a new file, a removed one) and both databases, the
    // MariaDB change keeping every row's size: only a dump read again can see it.
    std::fs::write(s.www.join("index.php"), b"<?php echo 'SHOP';\n").unwrap();
    std::fs::write(s.www.join("added.txt"), b"new\n").unwrap();
    std::fs::remove_file(s.www.join("file with spaces.txt")).unwrap();
    kit::run_sql(
        &s.dbs.mysql,
        "UPDATE posts SET note = REPEAT('y', 5) WHERE id = 5;",
    );
    kit::run_sql(&s.dbs.pg, "UPDATE hits SET path = 'row 9 É' WHERE id = 9;");
    let second_state = s.state();
    assert_ne!(first_state, second_state);
    let snap = s.backup_snapshot();
    let second = snap["id"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    // Unchanged web files were taken from the first snapshot without being read; the two
    // changed files, both dumps and the manifest and its tag were read.
    assert_eq!(
        snap["files_unchanged"].as_u64().unwrap(),
        snap["files"].as_u64().unwrap() - 6,
        "{snap}"
    );

    // backups: newest first, with id, time, periodicity and package.
    let out = s.cli(&["backups", "site"]);
    assert_success(&out, "backups site");
    let v = json(&out);
    let list = v["snapshots"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    assert_eq!(list[0]["id"], second.as_str());
    assert_eq!(list[1]["id"], first.as_str());
    assert_eq!(list[0]["periodicity"], "manual");
    assert!(
        list[0]["time"].is_string() && list[0]["package"]["version"].is_string(),
        "{v}"
    );

    // The first snapshot, by a unique prefix: the first tree and query results, exactly.
    let out = s.cli(&["restore", "site", "--snapshot", &first[..10]]);
    assert_success(&out, "restore --snapshot");
    assert_eq!(json(&out)["snapshot"]["id"], first.as_str());
    kit::assert_same(
        &kit::State {
            tree: first_state.0.clone(),
            databases: first_state.1.clone(),
        },
        &kit::State {
            tree: s.state().0,
            databases: s.state().1,
        },
        "the first snapshot restored",
    );
    // --latest: the second.
    assert_success(&s.cli(&["restore", "site", "--latest"]), "restore --latest");
    assert_eq!(s.state(), second_state, "the second snapshot restored");
    assert!(staging_leftovers(&s.sb.state()).is_empty());

    // A snapshot id that is not there.
    fails(
        &s.cli(&["restore", "site", "--snapshot", "ffffffff"]),
        2,
        "usage",
    );
    // run backs every instance up into the repository with its periodicity.
    let out = s.cli(&["run", "--periodicity", "daily"]);
    assert_success(&out, "run");
    let out = s.cli(&["backups", "site"]);
    assert_eq!(json(&out)["snapshots"][0]["periodicity"], "daily");
    assert_eq!(json(&out)["snapshots"].as_array().unwrap().len(), 3);
    // Nothing changed since run: this backup takes the web folder's manifest entry from the
    // cache of the last one, without reading it; the restore checks it part for part.
    let unchanged = s.state();
    let snap = s.backup_snapshot();
    assert_eq!(
        snap["files_unchanged"].as_u64().unwrap(),
        snap["files"].as_u64().unwrap() - 4,
        "only the dumps and the manifest were read: {snap}"
    );
    assert!(s.sb.state().join("repository-cache/site.json").is_file());
    assert_success(
        &s.cli(&["restore", "site", "--latest"]),
        "restore of the cached backup",
    );
    assert_eq!(s.state(), unchanged);
    // The Debian restic agrees the repository is consistent.
    let check = Command::new("restic")
        .args([
            "-r",
            s.sb.state().join("repository").as_str(),
            "--password-file",
        ])
        .arg(s.sb.state().join("repository.password").as_str())
        .args(["check", "--no-cache"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
}

/// A snapshot made by another controller (same repository, another backup key) is refused as
/// untrusted-backup (exit 18) before anything of the instance changes.
#[test]
fn a_snapshot_tagged_with_another_key_is_refused_before_anything_changes() {
    let Some(s) = Setup::new("repotrust") else {
        return;
    };
    assert_success(&s.cli(&["store", "init"]), "store init");
    s.backup();
    // Another controller with its own state (so its own backup key) writing into the same
    // repository, for an instance of the same name.
    let other = Sandbox::new();
    let other_dbs = databases("repotrust2").unwrap();
    let other_www = other.register(
        "site",
        "nobackup-sample",
        &format!(
            "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\n{}{}",
            db_toml("main", &other_dbs.mysql),
            db_toml("stats", &other_dbs.pg)
        ),
    );
    std::fs::write(other_www.join("index.html"), "<h1>planted</h1>\n").unwrap();
    let state = s.sb.state();
    std::fs::write(
        other.state().join("panel.toml"),
        format!(
            "[store]\nkind = \"repository\"\npath = \"{state}/repository\"\n\
             key-file = \"{state}/repository.key\"\npassword-file = \"{state}/repository.password\"\n"
        ),
    )
    .unwrap();
    let out = other.cli(&["backup", "site", "--json"]);
    assert_success(&out, "the other controller's backup");
    let foreign = json(&out)["snapshot"]["id"].as_str().unwrap().to_owned();

    let before = s.state();
    let v = fails(
        &s.cli(&["restore", "site", "--snapshot", &foreign]),
        18,
        "untrusted-backup",
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("key"),
        "{v}"
    );
    assert_eq!(s.state(), before, "nothing changed");
    assert!(staging_leftovers(&s.sb.state()).is_empty());
    // --latest is that foreign snapshot now: refused the same way.
    fails(
        &s.cli(&["restore", "site", "--latest"]),
        18,
        "untrusted-backup",
    );
    assert_eq!(s.state(), before);
}

/// A restore that fills the web folder's disk fails as no-space and the controller's safety
/// snapshot puts the instance back; the staging folder is gone.
#[test]
fn a_restore_that_fills_the_disk_puts_the_instance_back() {
    let Some(s) = Setup::new("repofull") else {
        return;
    };
    assert_success(&s.cli(&["store", "init"]), "store init");
    let big = Command::new("head")
        .args(["-c", "3145728", "/dev/urandom"])
        .output()
        .unwrap()
        .stdout;
    std::fs::write(s.www.join("big.bin"), big).unwrap();
    s.backup();
    // The web folder becomes a 2 MiB disk holding a small site; the databases change too.
    let Some(_disk) = support::Tmpfs::mount(&s.www, "2m") else {
        return;
    };
    std::fs::write(s.www.join("index.html"), "<h1>small</h1>\n").unwrap();
    kit::run_sql(&s.dbs.mysql, "DELETE FROM posts WHERE id > 200;");
    let before = s.state();
    let v = fails(&s.cli(&["restore", "site", "--latest"]), 19, "no-space");
    assert_eq!(v["error"]["place"], s.www.as_str(), "{v}");
    assert_eq!(s.state(), before, "put back exactly");
    assert!(staging_leftovers(&s.sb.state()).is_empty());
}

/// A folder of the web root replaced by a symlink to another customer's folder after the
/// backup: the restore replaces the link by the backed-up folder and writes nothing through it.
#[test]
fn a_symlink_planted_in_the_web_folder_is_not_followed_by_a_restore() {
    let Some(s) = Setup::new("repolink") else {
        return;
    };
    assert_success(&s.cli(&["store", "init"]), "store init");
    std::fs::create_dir_all(s.www.join("uploads")).unwrap();
    std::fs::write(s.www.join("uploads/photo.jpg"), b"jpeg").unwrap();
    let backed_up = s.state();
    s.backup();
    let other = s.sb.path("other-customer");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("secret.txt"), b"theirs\n").unwrap();
    let other_before = kit::tree_record(&other);
    std::fs::remove_dir_all(s.www.join("uploads")).unwrap();
    std::os::unix::fs::symlink(&other, s.www.join("uploads")).unwrap();

    assert_success(&s.cli(&["restore", "site", "--latest"]), "restore");
    assert_eq!(
        kit::tree_record(&other),
        other_before,
        "nothing written through the link"
    );
    let meta = std::fs::symlink_metadata(s.www.join("uploads")).unwrap();
    assert!(meta.is_dir(), "the backed-up folder is back");
    assert_eq!(s.state(), backed_up);
}

/// An instance of the real non-root account `aps-tenant1` (scripts/ci/test-user.sh): its dumps
/// stream from tools run as that account, and what a repository restore writes belongs to it.
#[test]
fn a_tenant_instance_is_backed_up_and_restored_as_its_account() {
    use std::os::unix::fs::MetadataExt;
    if !support::needs_root("the tenant-account test") {
        return;
    }
    let status = Command::new(support::repo().join("scripts/ci/test-user.sh"))
        .status()
        .unwrap();
    assert!(status.success());
    let tenant = aps_controller::account::Account::lookup("aps-tenant1", None).unwrap();
    let Some(dbs) = databases("repotenant") else {
        return;
    };
    let sb = Sandbox::for_tenants();
    let www = sb.path("www-site");
    std::fs::create_dir_all(www.join("uploads")).unwrap();
    std::fs::write(www.join("index.html"), "<h1>tenant</h1>\n").unwrap();
    std::fs::write(www.join("uploads/a.txt"), "a\n").unwrap();
    let chown = Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", tenant.uid, tenant.gid))
        .arg(www.as_str())
        .output()
        .unwrap();
    assert_success(&chown, "chown -R");
    let toml = sb.path("site.toml");
    std::fs::write(
        &toml,
        format!(
            "name = \"site\"\npackage = \"{}\"\nbase-url = \"http://site.example.test/\"\n\
             [web-dirs]\n\"/\" = \"{www}\"\n[settings]\nadmin_password = \"pw\"\n{}{}",
            support::fixture("nobackup-sample"),
            db_toml("main", &dbs.mysql),
            db_toml("stats", &dbs.pg)
        ),
    )
    .unwrap();
    assert_success(
        &sb.cli(&["instance", "register", "--file", toml.as_str()]),
        "register",
    );
    kit::populate_databases(&dbs.mysql, &dbs.pg);
    sb.use_repository();
    assert_success(&sb.cli(&["backup", "site", "--json"]), "backup");
    let before = (kit::tree_record(&www), kit::db_state(&dbs.mysql, &dbs.pg));

    std::fs::remove_dir_all(www.join("uploads")).unwrap();
    kit::run_sql(&dbs.mysql, "DELETE FROM posts;");
    assert_success(
        &sb.cli(&["restore", "site", "--latest", "--json"]),
        "restore",
    );
    assert_eq!(
        (kit::tree_record(&www), kit::db_state(&dbs.mysql, &dbs.pg)),
        before
    );
    for path in [www.join("uploads"), www.join("uploads/a.txt")] {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (tenant.uid, tenant.gid), "{path}");
    }
}
