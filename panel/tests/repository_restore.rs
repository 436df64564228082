//! Writing a repository snapshot back out: the staged tree is the backed-up tree exactly —
//! contents, symlinks, modes (setuid, setgid, sticky included) and modification times, which
//! is what the archive store's tree hash covers — and a database dump streamed into the
//! snapshot comes back whole, however many chunks it spans.

#![cfg(feature = "repository")]

use test_support::repository as common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use aps_controller::archive::capture_tree_to;
use aps_controller::database::Database;
use aps_controller::database::{self, DbKind};
use aps_panel::Periodicity;
use aps_panel::config::{RepositoryLocation, RepositorySettings};
use aps_panel::store::repository::{BackupInput, RepositoryStore};
use camino::{Utf8Path, Utf8PathBuf};
use test_support::database::create_database;

fn set_mode(path: &Utf8Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Sets a file's (or, with `-h`, a link's) modification time to `secs` since the epoch.
fn set_mtime(path: &Utf8Path, secs: i64) {
    let status = std::process::Command::new("touch")
        .args(["-h", "-d", &format!("@{secs}"), path.as_str()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_staged_snapshot_is_the_backed_up_tree_modes_and_times_included() {
    let tmp = tempfile::tempdir().unwrap();
    let base = Utf8PathBuf::try_from(tmp.path().to_path_buf()).unwrap();
    let www = base.join("www");
    std::fs::create_dir_all(www.join("uploads/2024")).unwrap();
    std::fs::create_dir_all(www.join("cache")).unwrap();
    std::fs::write(www.join("index.php"), b"<?php echo 1;\n").unwrap();
    std::fs::write(www.join("wp-config.php"), b"<?php // secret\n").unwrap();
    // Larger than the engine's biggest chunk, so the file spans several blobs.
    let big: Vec<u8> = (0..12_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(www.join("uploads/2024/video.bin"), &big).unwrap();
    std::os::unix::fs::symlink("uploads/2024", www.join("latest")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", www.join("dangling")).unwrap();
    set_mode(&www.join("wp-config.php"), 0o640);
    set_mode(&www.join("index.php"), 0o4755);
    set_mode(&www.join("cache"), 0o3770);
    set_mode(&www.join("uploads"), 0o700);
    for (path, secs) in [
        ("index.php", 1_000_000_000),
        ("wp-config.php", 1_500_000_000),
        ("uploads/2024/video.bin", 1_600_000_000),
        ("latest", 1_650_000_000),
        ("uploads/2024", 1_700_000_000),
        ("uploads", 1_710_000_000),
        ("cache", 1_720_000_000),
        ("", 1_730_000_000),
    ] {
        set_mtime(&www.join(path), secs);
    }

    let settings = RepositorySettings {
        location: RepositoryLocation::Folder(base.join("repo")),
        key_file: base.join("keys/repository.key"),
        password_file: base.join("keys/repository.password"),
        sharing: Default::default(),
    };
    RepositoryStore::init(&settings).unwrap();
    let store = RepositoryStore::open(&settings).unwrap();
    let web_dirs = BTreeMap::from([("/".to_owned(), www.clone())]);
    let snap = store
        .backup(&BackupInput::new(
            "blog",
            Periodicity::Manual,
            &web_dirs,
            &BTreeMap::new(),
            common::header(),
            &common::key(),
        ))
        .unwrap();

    let staged = store
        .restore_to_staging("blog", &snap.id, &base.join("staged"))
        .unwrap();
    let staged_www = &staged.web_dirs["/"];
    let original = capture_tree_to(&www, std::io::sink()).unwrap();
    let restored = capture_tree_to(staged_www, std::io::sink()).unwrap();
    assert_eq!(
        (
            original.files,
            original.dirs,
            original.symlinks,
            original.bytes
        ),
        (
            restored.files,
            restored.dirs,
            restored.symlinks,
            restored.bytes
        )
    );
    assert_eq!(
        original.sha256, restored.sha256,
        "the staged tree differs from the backed-up one in a content, mode, time or link"
    );
    // The staging folder itself stays the controller's alone.
    let mode = std::fs::metadata(&staged.target)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn a_streamed_dump_of_many_chunks_comes_back_whole() {
    let Some(test_db) = create_database(DbKind::Mysql, "repo_restore_dump") else {
        panic!("no test database servers: run scripts/ci/start-services.sh");
    };
    let db: Database = test_db.database().clone();
    // ~20 MB of rows: several chunks of the engine's content-defined chunking.
    database::query(
        &db,
        "CREATE TABLE t (id INT PRIMARY KEY, body LONGTEXT);",
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    for batch in 0..20 {
        let rows: Vec<String> = (0..10)
            .map(|i| {
                let id = batch * 10 + i;
                format!("({id}, REPEAT(SHA2('{id}', 256), 1600))")
            })
            .collect();
        database::query(
            &db,
            &format!("INSERT INTO t VALUES {};", rows.join(",")),
            std::time::Duration::from_secs(60),
        )
        .unwrap();
    }

    let tmp = tempfile::tempdir().unwrap();
    let base = Utf8PathBuf::try_from(tmp.path().to_path_buf()).unwrap();
    let www = base.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.php"), b"<?php\n").unwrap();
    let settings = RepositorySettings {
        location: RepositoryLocation::Folder(base.join("repo")),
        key_file: base.join("keys/repository.key"),
        password_file: base.join("keys/repository.password"),
        sharing: Default::default(),
    };
    RepositoryStore::init(&settings).unwrap();
    let store = RepositoryStore::open(&settings).unwrap();
    let web_dirs = BTreeMap::from([("/".to_owned(), www)]);
    let dbs = BTreeMap::from([("main".to_owned(), db.clone())]);
    let snap = store
        .backup(&BackupInput::new(
            "blog",
            Periodicity::Manual,
            &web_dirs,
            &dbs,
            common::header(),
            &common::key(),
        ))
        .unwrap();
    let staged = store
        .restore_to_staging("blog", &snap.id, &base.join("staged"))
        .unwrap();
    let dump = std::fs::read(&staged.dumps["main"]).unwrap();
    assert!(dump.len() > 15_000_000, "dump of {} bytes", dump.len());

    // The dump loads back and gives the same rows.
    let checksum = |db: &Database| {
        database::query(
            db,
            "SELECT COUNT(*), SHA2(GROUP_CONCAT(body ORDER BY id SEPARATOR ''), 256) FROM t;",
            std::time::Duration::from_secs(60),
        )
        .unwrap()
    };
    let before = checksum(&db);
    database::query(&db, "DROP TABLE t;", std::time::Duration::from_secs(60)).unwrap();
    database::load(
        &db,
        &staged.dumps["main"],
        std::time::Duration::from_secs(120),
    )
    .unwrap();
    assert_eq!(checksum(&db), before);
}
