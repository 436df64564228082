//! The repository store in a bucket of the loopback S3 server (s3s-fs, scripts/ci/s3-server.sh):
//! init, backup, change, backup, list, restore each snapshot into a staging folder, check and
//! read every pack back — with a real database dumped into it. Without a server these tests
//! fail, naming the script, unless APS_TEST_NO_S3=1.

#![cfg(feature = "repository")]

use test_support::repository as common;

use std::collections::BTreeMap;

use aps_controller::database::{self, Database, DbKind};
use aps_panel::Periodicity;
use aps_panel::config::{RepositoryLocation, RepositorySettings, S3Bucket};
use aps_panel::store::repository::{BackupInput, RepositoryError, RepositoryStore};
use aps_panel::store::{ReadData, SnapshotInfo};
use camino::{Utf8Path, Utf8PathBuf};
use test_support::database::create_database;

use test_support::s3_env;

use common::{TIMEOUT, body, fill, rows, tree};

struct Site {
    _tmp: tempfile::TempDir,
    root: Utf8PathBuf,
    settings: RepositorySettings,
    s3: S3Bucket,
    env: s3_env::S3TestEnv,
    web_dirs: BTreeMap<String, Utf8PathBuf>,
}

/// 100 files of poorly compressible bytes in one web folder; a repository under a prefix of
/// its own in the test bucket, the secret key in a file as panel.toml gives it.
fn site(test: &str) -> Option<Site> {
    let env = s3_env::s3_test_env(test)?;
    let tmp = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::try_from(tmp.path().to_path_buf()).unwrap();
    let docs = root.join("site/httpdocs");
    for i in 0..100u32 {
        let dir = docs.join(format!("d{}", i % 5));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i}.bin")), body(i, 0)).unwrap();
    }
    let secret = root.join("s3-secret");
    std::fs::write(&secret, format!("{}\n", env.secret_key)).unwrap();
    let s3 = S3Bucket {
        endpoint: Some(env.endpoint.clone()),
        bucket: env.bucket.clone(),
        prefix: format!("{}repository", env.prefix),
        region: "us-east-1".to_owned(),
        access_key_id: Some(env.access_key.clone()),
        secret_access_key_file: Some(secret),
        use_instance_metadata: false,
        retries: None,
        timeout: None,
    };
    let settings = RepositorySettings {
        location: RepositoryLocation::S3(s3.clone()),
        key_file: root.join("keys/repository.key"),
        password_file: root.join("keys/repository.password"),
        sharing: Default::default(),
    };
    Some(Site {
        _tmp: tmp,
        web_dirs: BTreeMap::from([("/".to_owned(), docs)]),
        root,
        settings,
        s3,
        env,
    })
}

fn backup(
    store: &RepositoryStore,
    site: &Site,
    dbs: &BTreeMap<String, Database>,
) -> Result<SnapshotInfo, RepositoryError> {
    store.backup(&BackupInput::new(
        "blog",
        Periodicity::Daily,
        &site.web_dirs,
        dbs,
        common::header(),
        &common::key(),
    ))
}

/// The objects under the repository's prefix, as the bucket's folder on the server's disk
/// holds them: the repository really is in the bucket, not somewhere local.
fn objects_on_server(site: &Site, under: &str) -> usize {
    let Some(dir) = server_dir(site) else {
        return usize::MAX;
    };
    let dir = dir.join(site.s3.key_prefix()).join(under);
    fn count(dir: &Utf8Path) -> usize {
        if dir.is_file() {
            return 1;
        }
        dir.read_dir_utf8().map_or(0, |it| {
            it.map(|e| {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    count(e.path())
                } else {
                    1
                }
            })
            .sum()
        })
    }
    count(&dir)
}

/// s3s-fs keeps bucket B in `<root>/B`; scripts/ci/s3-server.sh serves /tmp/aps-ci/s3.
fn server_dir(site: &Site) -> Option<Utf8PathBuf> {
    let dir = Utf8PathBuf::from("/tmp/aps-ci/s3").join(&site.env.bucket);
    dir.is_dir().then_some(dir)
}

#[test]
fn s3_repository_init_backup_list_restore_check() {
    let Some(site) = site("repo-s3") else { return };
    let Some(db) = create_database(DbKind::Mysql, "repo_s3") else {
        return;
    };
    fill(&db);

    let report = RepositoryStore::init(&site.settings).unwrap();
    assert_eq!(report.repository, site.s3.describe());
    assert!(
        report
            .repository
            .starts_with("s3://aps-test/tests/repo-s3-")
    );
    // The key and password files are local, private files; the repository is in the bucket.
    assert!(site.settings.key_file.is_file() && site.settings.password_file.is_file());
    assert!(!site.root.join("repository").exists());
    assert_eq!(objects_on_server(&site, "config"), 1);
    // One restic key, the password's; the master key itself is only in the key file.
    assert_eq!(objects_on_server(&site, "keys"), 1);
    let again = RepositoryStore::init(&RepositorySettings {
        key_file: site.root.join("other.key"),
        password_file: site.root.join("other.password"),
        ..site.settings.clone()
    })
    .unwrap_err();
    assert!(matches!(again, RepositoryError::Exists { .. }), "{again}");

    let store = RepositoryStore::open(&site.settings).unwrap();
    let dbs = BTreeMap::from([("main".to_owned(), db.database().clone())]);
    let first = backup(&store, &site, &dbs).unwrap();
    assert_eq!(
        first.files, 103,
        "100 web files, the dump, the manifest and its tag: {first:?}"
    );
    let expect_first = (tree(&site.web_dirs["/"]), rows(&db));
    assert!(objects_on_server(&site, "data") >= 1);

    // Change 1% of the files and one row.
    std::fs::write(site.web_dirs["/"].join("d3/f3.bin"), body(3, 1)).unwrap();
    database::query(
        &db,
        "UPDATE notes SET body = 'changed' WHERE id = 42",
        TIMEOUT,
    )
    .unwrap();
    let second = backup(&store, &site, &dbs).unwrap();
    let expect_second = (tree(&site.web_dirs["/"]), rows(&db));
    assert_ne!(expect_first, expect_second);
    assert!(
        second.bytes_added * 5 < first.bytes_added,
        "deduplicated in the bucket too: first added {}, second {}",
        first.bytes_added,
        second.bytes_added
    );

    // A second handle (a new process would do the same) lists both, older to newer.
    let store = RepositoryStore::open(&site.settings).unwrap();
    let listed = store.snapshots(Some("blog")).unwrap();
    assert_eq!(
        listed.iter().map(|s| &s.id).collect::<Vec<_>>(),
        [&first.id, &second.id]
    );
    for (snap, expect) in [(&first, &expect_first), (&second, &expect_second)] {
        let target = site.root.join(format!("staging-{}", &snap.id[..8]));
        let staged = store.restore_to_staging("blog", &snap.id, &target).unwrap();
        assert_eq!(tree(&staged.web_dirs["/"]), expect.0, "web of {}", snap.id);
        let fresh = create_database(DbKind::Mysql, "repo_s3_load").unwrap();
        database::load(&fresh, &staged.dumps["main"], TIMEOUT).unwrap();
        assert_eq!(rows(&fresh), expect.1, "query results of {}", snap.id);
    }
    store.check(true).unwrap();
    let verified = store.verify(&ReadData::All).unwrap();
    assert!(verified.is_ok(), "{verified:?}");
    assert_eq!(verified.snapshots, 2);
}

#[test]
fn wrong_s3_credentials_fail_with_the_bucket_named() {
    let Some(mut site) = site("repo-s3-denied") else {
        return;
    };
    std::fs::write(
        site.s3.secret_access_key_file.as_ref().unwrap(),
        "not-the-secret\n",
    )
    .unwrap();
    site.settings.location = RepositoryLocation::S3(site.s3.clone());
    let err = RepositoryStore::init(&site.settings)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&site.s3.describe()), "{err}");
    // Refused before any key was written: with the right secret, init then works.
    assert!(!site.settings.key_file.exists() && !site.settings.password_file.exists());
    std::fs::write(
        site.s3.secret_access_key_file.as_ref().unwrap(),
        format!("{}\n", site.env.secret_key),
    )
    .unwrap();
    RepositoryStore::init(&site.settings).unwrap();
}

/// Users are never locked in: the Debian `restic` tool opens our S3 repository with its `s3:`
/// URL and the password file, lists our snapshot and restores its files.
#[test]
fn restic_reads_our_s3_repository() {
    let Some(site) = site("repo-s3-restic") else {
        return;
    };
    RepositoryStore::init(&site.settings).unwrap();
    let store = RepositoryStore::open(&site.settings).unwrap();
    let snap = backup(&store, &site, &BTreeMap::new()).unwrap();

    let url = format!(
        "s3:{}/{}/{}",
        site.env.endpoint,
        site.env.bucket,
        site.s3.key_prefix().trim_end_matches('/')
    );
    let run = |args: &[&str]| {
        common::restic(
            &url,
            &site.settings.password_file,
            &[
                ("AWS_ACCESS_KEY_ID", &site.env.access_key),
                ("AWS_SECRET_ACCESS_KEY", &site.env.secret_key),
            ],
            args,
        )
    };
    let listed: serde_json::Value = serde_json::from_str(&run(&["snapshots", "--json"])).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], snap.id.as_str());
    let target = site.root.join("restic-restore");
    run(&["restore", &snap.id, "--target", target.as_str()]);
    assert_eq!(tree(&target.join("web/%2F")), tree(&site.web_dirs["/"]));
}
