//! The S3 remote against a real S3-compatible server (s3s-fs, started by
//! scripts/ci/s3-server.sh). Without a server these tests fail, naming the script, unless
//! APS_TEST_NO_S3=1.
#![cfg(feature = "s3")]

use std::collections::BTreeMap;

use aps_panel::config::{RemoteConfig, S3Bucket, UploadSizes};
use aps_panel::prune::prune_store;
use aps_panel::retention::{KeepRules, RetentionPolicy};
use aps_panel::store::s3::S3Store;
use aps_panel::store::{ArchiveFiles, BackupStatus, Remote};
use aps_panel::{ArchiveFormat, BackupName, Periodicity};
use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

use test_support::s3_env;

struct Fixture {
    store: S3Store,
    _tmp: tempfile::TempDir,
    dir: Utf8PathBuf,
}

/// `None` only when APS_TEST_NO_S3=1.
fn fixture(test: &str) -> Option<Fixture> {
    let env = s3_env::s3_test_env(test)?;
    let tmp = tempfile::tempdir().unwrap();
    let dir = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, env.secret_key + "\n").unwrap();
    let config = RemoteConfig {
        bucket: S3Bucket {
            endpoint: Some(env.endpoint),
            bucket: env.bucket,
            prefix: env.prefix,
            region: "us-east-1".to_owned(),
            access_key_id: Some(env.access_key),
            secret_access_key_file: Some(secret),
            use_instance_metadata: false,
            retries: None,
            timeout: None,
        },
        upload: UploadSizes {
            multipart_threshold_mib: 6,
            part_size_mib: 5,
        },
    };
    Some(Fixture {
        store: S3Store::open(&config).unwrap(),
        _tmp: tmp,
        dir,
    })
}

fn write(dir: &Utf8Path, name: &str, len: usize) -> (Utf8PathBuf, String) {
    // Not a repeating pattern, so a misplaced part would change the hash.
    let body: Vec<u8> = (0..len).map(|i| ((i * 7919) % 251) as u8).collect();
    let path = dir.join(name);
    std::fs::write(&path, &body).unwrap();
    (path, hex::encode(Sha256::digest(&body)))
}

fn name(day: u32) -> BackupName {
    let t = format!("2026-06-{day:02}T02:00:00Z").parse().unwrap();
    BackupName::new("blog", Periodicity::Daily, t, ArchiveFormat::default())
}

#[test]
fn upload_single_and_multipart_checked_listed_and_downloaded() {
    let Some(f) = fixture("upload") else { return };
    let small = name(1).file_name();
    let big = name(2).file_name();
    let (small_path, small_sha) = write(&f.dir, &small, 1000);
    let (big_path, big_sha) = write(&f.dir, &big, 12 * 1024 * 1024 + 17);

    let up = f
        .store
        .upload(&small_path, &format!("blog/{small}"), &small_sha)
        .unwrap();
    assert_eq!(
        (up.parts, up.size, up.sha256.as_str()),
        (1, 1000, small_sha.as_str())
    );
    let up = f
        .store
        .upload(&big_path, &format!("blog/{big}"), &big_sha)
        .unwrap();
    assert_eq!(up.parts, 3, "12 MiB in 5 MiB parts");
    assert_eq!(up.sha256, big_sha);

    let listed: Vec<(String, u64, BackupStatus)> = f
        .store
        .list(None)
        .unwrap()
        .into_iter()
        .map(|s| (s.key, s.size, s.status))
        .collect();
    assert_eq!(
        listed,
        [
            (format!("blog/{small}"), 1000, BackupStatus::Good),
            (
                format!("blog/{big}"),
                12 * 1024 * 1024 + 17,
                BackupStatus::Good
            ),
        ]
    );
    assert!(f.store.list(Some("shop")).unwrap().is_empty());

    let back = f.dir.join("back");
    f.store.download(&format!("blog/{big}"), &back).unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(std::fs::read(&back).unwrap())),
        big_sha
    );
}

#[test]
fn checksum_mismatch_fails_and_leaves_no_object() {
    let Some(f) = fixture("mismatch") else { return };
    let file = name(3).file_name();
    let (path, _) = write(&f.dir, &file, 500);
    let wrong = "0".repeat(64);
    let err = f
        .store
        .upload(&path, &format!("blog/{file}"), &wrong)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checksum mismatch") && err.contains(&file),
        "{err}"
    );
    assert!(
        f.store.list(None).unwrap().is_empty(),
        "a copy that failed its check is removed"
    );
}

#[test]
fn retention_applies_to_the_remote() {
    let Some(f) = fixture("retention") else {
        return;
    };
    for day in 1..=4 {
        let file = name(day).file_name();
        let (path, sha) = write(&f.dir, &file, 10);
        f.store
            .upload(&path, &format!("blog/{file}"), &sha)
            .unwrap();
    }
    let mut rules = KeepRules::default();
    rules.keep.insert(Periodicity::Daily, 2);
    let policy = RetentionPolicy {
        default: rules,
        instances: BTreeMap::new(),
    };
    let now = "2026-06-30T00:00:00Z".parse().unwrap();
    let p = prune_store(&f.store, Some("blog"), &policy, now, false).unwrap();
    assert_eq!(
        p.removed,
        [
            format!("blog/{}", name(2).file_name()),
            format!("blog/{}", name(1).file_name())
        ]
    );
    let left: Vec<String> = f
        .store
        .list(Some("blog"))
        .unwrap()
        .into_iter()
        .map(|s| s.file_name)
        .collect();
    assert_eq!(left, [name(3).file_name(), name(4).file_name()]);
}
