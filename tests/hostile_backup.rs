//! Hostile backup scripts, through the real `aps-controller` binary: a `sufficient` script
//! that leaves `BACKUP_FILE` as a symlink to a file only root may read.

mod support;

use std::os::unix::fs::PermissionsExt;

use support::{Sandbox, entries, json};

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
    assert!(std::fs::symlink_metadata(&dest).is_err(), "something was put in place");
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
