//! The repository store on a real repository on disk, with real databases on the test servers
//! and (interoperability) the `restic` tool from scripts/ci/install-deps.sh.

#![cfg(feature = "repository")]

use test_support::repository as common;

use std::collections::BTreeMap;
use std::process::Command;

use aps_controller::archive::{ManifestHeader, PartKind, TagKey};
use aps_controller::database::{self, Database, DbKind};
use aps_panel::Periodicity;
use aps_panel::config::{RepositoryLocation, RepositorySettings};
use aps_panel::store::SnapshotInfo;
use aps_panel::store::repository::{BackupInput, PackageTags, RepositoryError, RepositoryStore};
use camino::{Utf8Path, Utf8PathBuf};
use test_support::database::create_database;

use common::{TIMEOUT, body, fill, rows, tree};

struct Site {
    _tmp: tempfile::TempDir,
    root: Utf8PathBuf,
    settings: RepositorySettings,
    web_dirs: BTreeMap<String, Utf8PathBuf>,
}

/// A site of 200 files (text and incompressible bytes) in two web folders, one of them holding
/// a symlink to a file outside the site, and a repository beside it.
fn site() -> Site {
    let tmp = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::try_from(tmp.path().to_path_buf()).unwrap();
    let docs = root.join("site/httpdocs");
    let cache = root.join("site/cache");
    for i in 0..190u32 {
        let dir = docs.join(format!("d{}", i % 7));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i}.txt")), body(i, 0)).unwrap();
    }
    std::fs::create_dir_all(&cache).unwrap();
    for i in 0..10u32 {
        std::fs::write(cache.join(format!("c{i}.bin")), body(1000 + i, 0)).unwrap();
    }
    std::fs::write(root.join("outside-secret"), "another tenant's data").unwrap();
    std::os::unix::fs::symlink(root.join("outside-secret"), docs.join("link")).unwrap();
    let settings = RepositorySettings {
        location: RepositoryLocation::Folder(root.join("repo")),
        key_file: root.join("keys/repository.key"),
        password_file: root.join("keys/repository.password"),
        sharing: Default::default(),
    };
    let web_dirs = BTreeMap::from([("/".to_owned(), docs), ("/cache".to_owned(), cache)]);
    Site {
        _tmp: tmp,
        root,
        settings,
        web_dirs,
    }
}

fn backup(
    store: &RepositoryStore,
    site: &Site,
    dbs: &BTreeMap<String, Database>,
) -> Result<SnapshotInfo, RepositoryError> {
    backup_cached(store, site, dbs, None)
}

/// A backup remembering its web folders' manifest entries and its snapshot in `cache`.
fn backup_cached(
    store: &RepositoryStore,
    site: &Site,
    dbs: &BTreeMap<String, Database>,
    cache: Option<&Utf8Path>,
) -> Result<SnapshotInfo, RepositoryError> {
    store.backup(&BackupInput {
        instance: "blog",
        periodicity: Periodicity::Daily,
        package: Some(PackageTags {
            id: "http://example.org/blog".to_owned(),
            version: "1.2".to_owned(),
            release: "3".to_owned(),
        }),
        web_dirs: &site.web_dirs,
        databases: dbs,
        header: ManifestHeader::new("http://example.org/blog", "Blog", "1.2", "3", "1.2", "blog"),
        key: &key(7),
        account: None,
        dump_timeout: TIMEOUT,
        cache,
        script: None,
        walk: Default::default(),
    })
}

/// A backup key (every byte `b`).
fn key(b: u8) -> TagKey {
    TagKey::new(vec![b; 32]).unwrap()
}

#[cfg(unix)]
fn mode(path: &Utf8Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_private_keys_and_refuses_twice() {
    let site = site();
    let report = RepositoryStore::init(&site.settings).unwrap();
    assert_eq!(report.repository, site.root.join("repo").as_str());
    assert_eq!(mode(&site.settings.key_file), 0o600);
    assert_eq!(mode(&site.settings.password_file), 0o600);
    assert!(site.root.join("repo/config").is_file());
    let again = RepositoryStore::init(&site.settings).unwrap_err();
    assert!(
        matches!(again, RepositoryError::KeyExists { .. }),
        "{again}"
    );
    // A key file that is not ours is refused with a message naming it.
    let other = RepositorySettings {
        key_file: site.root.join("junk.key"),
        ..site.settings.clone()
    };
    std::fs::write(&other.key_file, "not a key").unwrap();
    let err = RepositoryStore::open(&other).unwrap_err().to_string();
    assert!(
        err.contains("junk.key") && err.contains("store init"),
        "{err}"
    );
    let store = RepositoryStore::open(&site.settings).unwrap();
    assert!(store.snapshots(None).unwrap().is_empty());
}

#[test]
fn backup_change_backup_restores_each_snapshot_exactly() {
    let Some(db) = create_database(DbKind::Mysql, "repo_store") else {
        return;
    };
    fill(&db);
    let site = site();
    RepositoryStore::init(&site.settings).unwrap();
    let store = RepositoryStore::open(&site.settings).unwrap();
    let dbs = BTreeMap::from([("main".to_owned(), db.database().clone())]);

    let first = backup(&store, &site, &dbs).unwrap();
    let expect_first = (
        tree(&site.web_dirs["/"]),
        tree(&site.web_dirs["/cache"]),
        rows(&db),
    );
    // 200 web files, the link (stored as a link, not as the file it names), the dump, and the
    // manifest with its tag.
    assert_eq!(first.files, 204, "{first:?}");
    assert_eq!(first.instance, "blog");
    assert_eq!(first.periodicity, Some(Periodicity::Daily));
    assert_eq!(first.package.as_ref().unwrap().release, "3");

    // Change 1% of the files (2 of 200) and one row.
    for i in [3u32, 150] {
        let path = site.web_dirs["/"].join(format!("d{}/f{i}.txt", i % 7));
        std::fs::write(path, body(i, 1)).unwrap();
    }
    database::query(
        &db,
        "UPDATE notes SET body = 'changed' WHERE id = 42",
        TIMEOUT,
    )
    .unwrap();
    let second = backup(&store, &site, &dbs).unwrap();
    let expect_second = (
        tree(&site.web_dirs["/"]),
        tree(&site.web_dirs["/cache"]),
        rows(&db),
    );
    assert_ne!(expect_first.0, expect_second.0);
    assert_ne!(expect_first.2, expect_second.2);
    // The engine took every unchanged web file from the first snapshot without reading it;
    // the 2 changed files, the dump (whose changed row kept its size) and the manifest and
    // its tag were read.
    assert_eq!(second.files_unchanged, second.files - 5, "{second:?}");
    // Deduplicated: the second snapshot adds a small part of what the first one did.
    assert!(
        second.bytes_added * 5 < first.bytes_added,
        "first added {}, second {}",
        first.bytes_added,
        second.bytes_added
    );

    let listed = store.snapshots(Some("blog")).unwrap();
    assert_eq!(
        listed.iter().map(|s| &s.id).collect::<Vec<_>>(),
        [&first.id, &second.id],
        "older to newer"
    );
    assert_eq!(store.latest("blog").unwrap().unwrap().id, second.id);
    assert!(store.snapshots(Some("shop")).unwrap().is_empty());

    for (snap, expect) in [(&first, &expect_first), (&second, &expect_second)] {
        let target = site.root.join(format!("staging-{}", &snap.id[..8]));
        // A unique prefix names a snapshot, as with restic.
        let staged = store
            .restore_to_staging("blog", &snap.id[..10], &target)
            .unwrap();
        assert_eq!(
            tree(&staged.web_dirs["/"]),
            expect.0,
            "web / of {}",
            snap.id
        );
        assert_eq!(tree(&staged.web_dirs["/cache"]), expect.1);
        let fresh = create_database(DbKind::Mysql, "repo_load").unwrap();
        database::load(&fresh, &staged.dumps["main"], TIMEOUT).unwrap();
        assert_eq!(rows(&fresh), expect.2, "query results of {}", snap.id);
    }
    store.check(true).unwrap();

    // A non-empty target is refused before anything is written.
    let busy = site.root.join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("keep"), "x").unwrap();
    let err = store
        .restore_to_staging("blog", &first.id, &busy)
        .unwrap_err();
    assert!(
        matches!(err, RepositoryError::TargetNotEmpty { .. }),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);

    store.forget("blog", &first.id).unwrap();
    assert_eq!(store.snapshots(None).unwrap().len(), 1);
}

#[test]
fn a_failing_dump_fails_the_backup_and_leaves_no_snapshot() {
    let Some(db) = create_database(DbKind::Postgresql, "repo_fail") else {
        return;
    };
    let site = site();
    RepositoryStore::init(&site.settings).unwrap();
    let store = RepositoryStore::open(&site.settings).unwrap();
    // The tool starts, then exits non-zero: the server refuses the password.
    let dbs = BTreeMap::from([("main".to_owned(), db.with_password("wrong"))]);
    let err = backup(&store, &site, &dbs).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, RepositoryError::Incomplete { .. }),
        "{message}"
    );
    assert!(message.contains("dump of database main"), "{message}");
    assert!(
        message.contains("password"),
        "names the tool's reason: {message}"
    );
    assert!(store.snapshots(None).unwrap().is_empty());
    store.check(false).unwrap();
    // The same instance with the right password backs up.
    let dbs = BTreeMap::from([("main".to_owned(), db.database().clone())]);
    backup(&store, &site, &dbs).unwrap();
    assert_eq!(store.snapshots(None).unwrap().len(), 1);
}

/// Users are never locked in: the Debian `restic` tool opens our repository with the password
/// file, checks it, lists our snapshot and restores the same files.
#[test]
fn restic_lists_checks_and_restores_our_repository() {
    let Some(db) = create_database(DbKind::Mysql, "repo_restic") else {
        return;
    };
    fill(&db);
    let site = site();
    RepositoryStore::init(&site.settings).unwrap();
    let store = RepositoryStore::open(&site.settings).unwrap();
    let dbs = BTreeMap::from([("main".to_owned(), db.database().clone())]);
    let snap = backup(&store, &site, &dbs).unwrap();

    let repo = site.root.join("repo");
    let run =
        |args: &[&str]| common::restic(repo.as_str(), &site.settings.password_file, &[], args);
    run(&["check", "--read-data"]);
    let listed: serde_json::Value = serde_json::from_str(&run(&["snapshots", "--json"])).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], snap.id.as_str());
    let tags = listed[0]["tags"].as_array().unwrap();
    assert!(tags.iter().any(|t| t == "aps-instance=blog"), "{tags:?}");
    let target = site.root.join("restic-restore");
    run(&["restore", &snap.id, "--target", target.as_str()]);
    assert_eq!(tree(&target.join("web/%2F")), tree(&site.web_dirs["/"]));
    assert_eq!(
        tree(&target.join("web/%2Fcache")),
        tree(&site.web_dirs["/cache"])
    );
    // The streamed dump and manifest come out whole through `restic restore` (their nodes
    // record the bytes read: third_party/rustic_core/PATCHED.md) and through `restic dump`.
    let restored_dump = target.join("databases/main.sql");
    let dumped = site.root.join("restic-main.sql");
    std::fs::write(&dumped, run(&["dump", &snap.id, "/databases/main.sql"])).unwrap();
    assert!(std::fs::metadata(&restored_dump).unwrap().len() > 0);
    assert_eq!(
        std::fs::read(&restored_dump).unwrap(),
        std::fs::read(&dumped).unwrap()
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["parts"][0]["name"], "db-main.sql");
    assert_eq!(
        manifest["parts"][0]["size"],
        std::fs::metadata(&restored_dump).unwrap().len()
    );
    let fresh = create_database(DbKind::Mysql, "repo_restic_load").unwrap();
    database::load(&fresh, &restored_dump, TIMEOUT).unwrap();
    assert_eq!(rows(&fresh), rows(&db));
}

/// A snapshot becomes a tagged archive holding exactly its manifest's parts with the key that
/// made it, and is refused as untrusted with any other key; the private folder goes with it.
#[test]
fn a_staged_snapshot_is_an_archive_of_its_manifest_and_needs_the_key() {
    let Some(db) = create_database(DbKind::Postgresql, "repo_stage") else {
        return;
    };
    fill(&db);
    let site = site();
    RepositoryStore::init(&site.settings).unwrap();
    let store = RepositoryStore::open(&site.settings).unwrap();
    let dbs = BTreeMap::from([("stats".to_owned(), db.database().clone())]);
    let snap = backup(&store, &site, &dbs).unwrap();
    let work = site.root.join("work");
    // What a controller killed during a restore left: removed by the next one.
    let mut dead = Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    let left = work.join(format!(".repository-restore-{pid}-left"));
    std::fs::create_dir_all(left.join("snapshot/web")).unwrap();

    let err = store
        .stage_archive("blog", &snap, &work, &key(8))
        .unwrap_err();
    assert!(matches!(err, RepositoryError::Untrusted { .. }), "{err}");
    assert!(
        std::fs::read_dir(&work).unwrap().next().is_none(),
        "staging left behind"
    );

    let staged = store.stage_archive("blog", &snap, &work, &key(7)).unwrap();
    let manifest = aps_controller::archive::verify(&staged.archive, None).unwrap();
    let kinds: Vec<&PartKind> = manifest.parts.iter().map(|p| &p.kind).collect();
    assert!(matches!(kinds[0], PartKind::DatabaseDump { db_id, .. } if db_id == "stats"));
    assert_eq!(manifest.parts.len(), 3, "{manifest:?}");
    let dir = staged.archive.parent().unwrap().to_owned();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dir).unwrap().permissions())
            & 0o777,
        0o700
    );
    drop(staged);
    assert!(!dir.exists(), "the staging folder is removed");
}

/// Sets `path`'s modification time back to `mtime`, as `touch -d` does.
fn set_mtime(path: &Utf8Path, mtime: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

/// A repeat backup with the cache (the previous snapshot as the parent, manifest entries of
/// unchanged folders reused) takes every file whose content changed behind an unchanged size
/// and modification time: one rewritten in place and its mtime set back, one replaced by a
/// new file of the same size and mtime. Only those two (and the manifest) are read again, and
/// each snapshot restores exactly what the site held. A remembered parent that was forgotten
/// meanwhile is not used: the engine's own search finds the newest snapshot instead.
#[test]
fn a_repeat_takes_content_changed_behind_the_same_size_and_mtime() {
    let site = site();
    RepositoryStore::init(&site.settings).unwrap();
    let store = RepositoryStore::open(&site.settings).unwrap();
    let cache = site.root.join("cache");
    let none = BTreeMap::new();
    let docs = &site.web_dirs["/"];
    let first = backup_cached(&store, &site, &none, Some(&cache)).unwrap();
    // 200 web files, the link, the manifest and its tag.
    assert_eq!(first.files, 203, "{first:?}");
    let same = backup_cached(&store, &site, &none, Some(&cache)).unwrap();
    assert_eq!(
        same.files_unchanged, 201,
        "only the manifest is read: {same:?}"
    );

    // File times come from a coarse clock: a write right after the backup's walk could
    // otherwise keep every time as it was.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let in_place = docs.join("d3/f3.txt");
    let old = std::fs::metadata(&in_place).unwrap();
    std::fs::write(&in_place, body(3, 9)).unwrap();
    set_mtime(&in_place, old.modified().unwrap());
    let replaced = docs.join("d1/f8.txt");
    let old = std::fs::metadata(&replaced).unwrap();
    let new = docs.join("d1/.f8.new");
    std::fs::write(&new, body(8, 9)).unwrap();
    set_mtime(&new, old.modified().unwrap());
    std::fs::rename(&new, &replaced).unwrap();
    for (path, seed) in [(&in_place, 3), (&replaced, 8)] {
        assert_eq!(
            std::fs::metadata(path).unwrap().len() as usize,
            body(seed, 0).len(),
            "same size"
        );
    }
    let changed = backup_cached(&store, &site, &none, Some(&cache)).unwrap();
    assert_eq!(
        changed.files_unchanged,
        changed.files - 4,
        "the two files, the manifest and its tag are read: {changed:?}"
    );
    let target = site.root.join("staging-changed");
    let staged = store
        .restore_to_staging("blog", &changed.id, &target)
        .unwrap();
    assert_eq!(tree(&staged.web_dirs["/"]), tree(docs));
    assert_eq!(
        std::fs::read(staged.web_dirs["/"].join("d3/f3.txt")).unwrap(),
        body(3, 9)
    );
    assert_eq!(
        std::fs::read(staged.web_dirs["/"].join("d1/f8.txt")).unwrap(),
        body(8, 9)
    );

    // The remembered parent is gone: the newest remaining snapshot is the parent.
    store.forget("blog", &changed.id).unwrap();
    let after = backup_cached(&store, &site, &none, Some(&cache)).unwrap();
    assert_eq!(
        after.files_unchanged,
        after.files - 4,
        "the parent is the snapshot before the changes: {after:?}"
    );
    store.check(true).unwrap();
}

/// One store backs up many instances in a run and reads each index file once: the index it
/// builds for each backup still holds what the backups before it in the same process wrote,
/// so a second instance with the same files adds none of their data again.
#[test]
fn backups_of_one_store_deduplicate_against_each_other() {
    let site = site();
    RepositoryStore::init(&site.settings).unwrap();
    let store = RepositoryStore::open(&site.settings).unwrap();
    let none = BTreeMap::new();
    let header = |name: &str| {
        ManifestHeader::new("http://example.org/blog", "Blog", "1.2", "3", "1.2", name)
    };
    let key = key(7);
    let mut added = Vec::new();
    for name in ["blog", "shop", "wiki"] {
        let input = BackupInput::new(
            name,
            Periodicity::Daily,
            &site.web_dirs,
            &none,
            header(name),
            &key,
        );
        let snap = store.backup(&input).unwrap();
        assert_eq!(
            snap.files_unchanged, 0,
            "a first backup of {name}: {snap:?}"
        );
        added.push(snap.bytes_added);
    }
    // The first stores the data; the others only their manifests and trees.
    assert!(added[0] > 500_000, "{added:?}");
    assert!(
        added[1] * 50 < added[0] && added[2] * 50 < added[0],
        "{added:?}"
    );
    store.check(true).unwrap();
}
