//! Seed → capture → damage → capture: the diff names exactly the damage; put back by hand
//! (files rewritten, the database loaded from the controller's own dump) → the capture is
//! equal again. On both real servers.

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::time::Duration;

use aps_conformance::capture::{Capture, CaptureOptions, Difference, FileKind, Owner, diff};
use aps_conformance::seed::{self, MARKER_NAME};
use aps_controller::database::{self, Database, DbKind};
use camino::Utf8PathBuf;

const TIMEOUT: Duration = Duration::from_secs(120);

fn sorted(mut d: Vec<Difference>) -> Vec<String> {
    let mut out: Vec<String> = d.drain(..).map(|d| d.to_string()).collect();
    out.sort();
    out
}

fn round_trip(kind: DbKind) {
    if !test_support::needs_root("making accounts") {
        return;
    }
    let Some(db) = test_support::database::create_database(kind, "conf") else {
        return;
    };
    let (_base, sandbox) = crate::sandbox();
    let account = sandbox.account().clone();
    let root = sandbox.web_root().to_owned();
    // A small site: files, a private config, a symlink, a writable upload folder.
    std::fs::write(root.join("index.php"), "<?php echo 'hi';\n").unwrap();
    std::fs::create_dir_all(root.join("conf/deep")).unwrap();
    std::fs::write(root.join("conf/deep/config.php"), b"<?php $x = \"\\0\";\n").unwrap();
    std::fs::set_permissions(
        root.join("conf/deep/config.php"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    symlink("index.php", root.join("home.php")).unwrap();
    std::fs::create_dir(root.join("upload")).unwrap();
    std::fs::write(root.join("robots.txt"), "User-agent: *\n").unwrap();
    aps_controller::account::chown_tree(&root, &account).unwrap();

    let web_dirs: BTreeMap<String, Utf8PathBuf> = [
        ("/".to_owned(), root.clone()),
        ("/upload".to_owned(), root.join("upload")),
        // A url-mapping of one file.
        ("/robots.txt".to_owned(), root.join("robots.txt")),
    ]
    .into();
    let writable: BTreeMap<String, Utf8PathBuf> =
        [("/upload".to_owned(), root.join("upload"))].into();
    let databases: BTreeMap<String, Database> = [("main".to_owned(), db.database().clone())].into();
    let options = CaptureOptions {
        account_uid: Some(account.uid),
        timeout: TIMEOUT,
    };

    let seeded = seed::seed(&writable, &databases, Some(&account), TIMEOUT).unwrap();
    assert_eq!(seeded.markers, vec![root.join("upload").join(MARKER_NAME)]);
    let seeded_capture = Capture::take(&web_dirs, &databases, &options).unwrap();

    // The capture saw what is there, each file once (the nested folder apart).
    let top = &seeded_capture.folders["/"].entries;
    assert!(!top.keys().any(|k| k.starts_with("upload")), "{top:?}");
    assert!(
        !top.contains_key("robots.txt"),
        "captured under its own mapping"
    );
    let robots = &seeded_capture.folders["/robots.txt"].entries[""];
    assert_eq!((robots.kind, robots.size), (FileKind::File, Some(14)));
    let config = &top["conf/deep/config.php"];
    assert_eq!(
        (config.kind, config.mode, config.owner),
        (FileKind::File, 0o640, Owner::Account)
    );
    assert_eq!(top["home.php"].target.as_deref(), Some("index.php"));
    let marker = &seeded_capture.folders["/upload"].entries[MARKER_NAME];
    assert_eq!(marker.owner, Owner::Account);
    let tables = &seeded_capture.databases["main"].tables;
    let names: Vec<&str> = tables.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "aps_conformance_extra",
            "aps_conformance_seed",
            "aps_conformance_view"
        ]
    );
    assert_eq!(tables["aps_conformance_seed"].rows, 7);
    assert_eq!(tables["aps_conformance_seed"].columns.len(), 4);
    assert_eq!(tables["aps_conformance_extra"].rows, 3);
    assert!(tables["aps_conformance_view"].definition.is_some());
    // The same state captured again is equal: the capture is deterministic.
    let again = Capture::take(&web_dirs, &databases, &options).unwrap();
    assert_eq!(diff(&seeded_capture, &again), vec![]);
    assert_eq!(seeded_capture, again);

    // Saved for the hand restore: the controller's own dump, the files' contents.
    let dump_dir = tempfile::tempdir().unwrap();
    let dump = Utf8PathBuf::from_path_buf(dump_dir.path().join("main.sql")).unwrap();
    database::dump(db.database(), &dump, TIMEOUT).unwrap();
    let marker_path = root.join("upload").join(MARKER_NAME);
    let marker_bytes = std::fs::read(&marker_path).unwrap();
    let config_bytes = std::fs::read(root.join("conf/deep/config.php")).unwrap();

    let damage = seed::damage(&seeded_capture, &databases, Some(&account), TIMEOUT).unwrap();
    let damaged = Capture::take(&web_dirs, &databases, &options).unwrap();
    let found = diff(&seeded_capture, &damaged);
    assert_eq!(sorted(found.clone()), sorted(damage.expected.clone()));
    assert_eq!(
        sorted(found),
        sorted(vec![
            Difference::FileMissing {
                folder: "/".into(),
                path: "conf/deep/config.php".into()
            },
            Difference::FileContent {
                folder: "/upload".into(),
                path: MARKER_NAME.into(),
                before_size: Some(marker_bytes.len() as u64),
                after_size: Some(31),
            },
            Difference::TableRows {
                database: "main".into(),
                table: "aps_conformance_seed".into()
            },
            Difference::TableMissing {
                database: "main".into(),
                table: "aps_conformance_extra".into()
            },
            Difference::TableAdded {
                database: "main".into(),
                table: "aps_conformance_intruder".into()
            },
        ])
    );

    // Put back by hand: the files rewritten (mode and owner too), the database loaded from
    // the dump.
    std::fs::write(&marker_path, &marker_bytes).unwrap();
    let config_path = root.join("conf/deep/config.php");
    std::fs::write(&config_path, &config_bytes).unwrap();
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&config_path, Some(account.uid), Some(account.gid)).unwrap();
    database::load(db.database(), &dump, TIMEOUT).unwrap();
    let restored = Capture::take(&web_dirs, &databases, &options).unwrap();
    assert_eq!(diff(&seeded_capture, &restored), vec![]);

    // A mode, an owner and a row count are named too.
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::os::unix::fs::chown(root.join("index.php"), Some(0), Some(0)).unwrap();
    let q = |t: &str| match kind {
        DbKind::Mysql => format!("`{t}`"),
        DbKind::Postgresql => format!("\"{t}\""),
    };
    database::query(
        db.database(),
        &format!("DELETE FROM {} WHERE id = 4;\n", q("aps_conformance_seed")),
        TIMEOUT,
    )
    .unwrap();
    let changed = Capture::take(&web_dirs, &databases, &options).unwrap();
    assert_eq!(
        sorted(diff(&seeded_capture, &changed)),
        vec![
            "file conf/deep/config.php of web folder /: mode 0640 became 0666".to_owned(),
            "file index.php of web folder /: owner the instance's account became uid 0".to_owned(),
            "table aps_conformance_seed of database main: 7 rows became 6".to_owned(),
        ]
    );
}

#[test]
fn mysql_seed_damage_and_restore_are_named_exactly_by_the_diff() {
    round_trip(DbKind::Mysql);
}

#[test]
fn postgresql_seed_damage_and_restore_are_named_exactly_by_the_diff() {
    round_trip(DbKind::Postgresql);
}
