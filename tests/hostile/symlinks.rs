//! Hostile scripts and web folders, through the real `aps-controller` binary: a `sufficient`
//! script that leaves `BACKUP_FILE` as a symlink to a file only root may read; a web root
//! replaced by a symlink to another customer's folder before a backup or a restore.

use test_support as support;
use test_support::restore_kit as kit;

use std::os::unix::fs::{PermissionsExt, symlink};

use support::{Sandbox, assert_success, entries, json};

const SETTINGS: &str = "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\n\
                        site_title = \"Demo\"\nbehaviour = \"symlink-backup-file\"\n";

/// The script replaces `BACKUP_FILE` by a symlink to a root-only file: the backup fails,
/// nothing is put at the destination, no record is made (so nothing could later restore
/// "from" it), and the file it pointed at is unchanged.
#[test]
fn sufficient_script_leaving_a_symlink_as_backup_file_fails_the_backup() {
    let sb = Sandbox::new();
    let secret = sb.path("root-only");
    std::fs::write(&secret, b"root:$6$not-for-the-tenant").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    sb.register("blog", "sh-sample", SETTINGS);
    let dir = sb.path("backups");
    std::fs::create_dir_all(&dir).unwrap();
    let dest = dir.join("blog.bak");

    let out = sb.cli(&["backup", "blog", "--to", dest.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(12), "{out:?}");
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "destination-refused");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("symlink"), "{message}");
    assert!(
        std::fs::symlink_metadata(&dest).is_err(),
        "something was put in place"
    );
    assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));
    let records = sb.state().join("backup-records");
    assert!(
        !records.exists() || entries(&records).is_empty(),
        "a record was made: {:?}",
        entries(&records)
    );
    assert_eq!(
        std::fs::read(&secret).unwrap(),
        b"root:$6$not-for-the-tenant"
    );
}

/// The tenant replaces the web root by a symlink to another customer's folder: backup and
/// restore are refused naming it, and the other folder is neither archived, emptied nor
/// written.
#[test]
fn web_root_replaced_by_a_symlink_is_refused_at_backup_and_restore() {
    let sb = Sandbox::new();
    let Some(inst) = kit::db_instance(&sb, "shop", kit::Site::default()) else {
        eprintln!("APS_TEST_NO_DB=1: no database servers; skipped");
        return;
    };
    inst.populate();
    let dir = sb.path("backups");
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.aps");
    let out = sb.cli(&["backup", "shop", "--to", good.as_str(), "--json"]);
    assert_success(&out, "backup");

    let other = sb.path("other-customer");
    std::fs::create_dir_all(other.join("uploads")).unwrap();
    std::fs::write(other.join("uploads/photo.jpg"), b"someone else's").unwrap();
    std::fs::write(other.join("wp-config.php"), b"<?php // their password").unwrap();
    let before = kit::tree_record(&other);
    std::fs::rename(&inst.www, sb.path("htdocs-moved-away")).unwrap();
    symlink(&other, &inst.www).unwrap();

    let taken = dir.join("taken.aps");
    let out = sb.cli(&["backup", "shop", "--to", taken.as_str(), "--json"]);
    assert!(!out.status.success(), "{out:?}");
    let message = json(&out)["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains(inst.www.as_str()) && message.contains("symlink"),
        "{message}"
    );
    assert!(!taken.exists());

    let out = sb.cli(&["restore", "shop", "--from", good.as_str(), "--json"]);
    assert!(!out.status.success(), "{out:?}");
    let message = json(&out)["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains(inst.www.as_str()) && message.contains("symlink"),
        "{message}"
    );
    assert_eq!(
        kit::tree_record(&other),
        before,
        "the other customer's folder changed"
    );
}
