//! The backup key on real files: made on first use (0600, never overwritten, one key when
//! many controllers start at once), refused when others could read or swap it, and shared by
//! a fleet through controller.toml's `backup-key-file`.

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

use aps_controller::archive::{ArchiveError, ArchiveOptions, ArchiveWriter, ManifestHeader};
use aps_controller::backup_key::{BackupKeyError, load, load_or_create};
use aps_controller::registry::StateDir;
use aps_controller::{Controller, ControllerConfig, ErrorKind, OperationError};
use camino::{Utf8Path, Utf8PathBuf};

fn temp() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("aps-key-")
        .tempdir()
        .unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

#[test]
fn made_on_first_use_private_and_never_overwritten() {
    let (_t, dir) = temp();
    let path = dir.join("state/backup-key");
    let key = load_or_create(&path).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.trim().len(), 64, "{text:?}");
    assert_eq!(
        load_or_create(&path).unwrap(),
        key,
        "the same key the second time"
    );
    // A key that exists is taken as it is, never replaced.
    let given = "ab".repeat(32);
    std::fs::write(&path, format!("{given}\n")).unwrap();
    let k = load_or_create(&path).unwrap();
    assert_ne!(k, key);
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), given);
    // No temporary files left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["backup-key"]);
}

#[test]
fn controllers_starting_at_once_get_one_key() {
    let (_t, dir) = temp();
    let path = dir.join("backup-key");
    let keys: Vec<_> = (0..8)
        .map(|_| {
            let p = path.clone();
            std::thread::spawn(move || load_or_create(&p).unwrap())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(keys.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(load(&path).unwrap(), keys[0]);
}

#[test]
fn a_key_others_could_read_or_swap_is_refused() {
    let (_t, dir) = temp();
    let path = dir.join("backup-key");
    load_or_create(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = load_or_create(&path).unwrap_err();
    assert!(
        matches!(&err, BackupKeyError::Invalid { reason, .. } if reason.contains("0644")),
        "{err}"
    );
    // Not replaced by a new one either.
    assert_eq!(
        std::fs::metadata(&path).unwrap().mode() & 0o777,
        0o644,
        "left as it was"
    );
    // A symlink to a key is not followed.
    let real = dir.join("real-key");
    load_or_create(&real).unwrap();
    let link = dir.join("link-key");
    symlink(&real, &link).unwrap();
    assert!(matches!(load(&link), Err(BackupKeyError::Read { .. })));
    // A key file of another account (aps-test, made by scripts/ci/test-user.sh).
    if let Some(uid) = uid_of("aps-test") {
        let theirs = dir.join("their-key");
        load_or_create(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(uid), None).unwrap();
        let err = load(&theirs).unwrap_err();
        assert!(matches!(err, BackupKeyError::Invalid { .. }), "{err}");
    }
}

fn uid_of(user: &str) -> Option<u32> {
    let out = std::process::Command::new("id")
        .args(["-u", user])
        .output()
        .ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

fn archive(dir: &Utf8Path, key: &aps_controller::archive::TagKey) -> Utf8PathBuf {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hi").unwrap();
    let path = dir.join("backup.aps");
    let file = std::fs::File::create(&path).unwrap();
    let header = ManifestHeader::new("http://example.test/app", "App", "1.0", "1", "1.2", "site");
    let mut w = ArchiveWriter::create(&file, &ArchiveOptions::default(), header).unwrap();
    w.add_web_dir("/", &www).unwrap();
    w.tag_with(key.clone());
    w.finish().unwrap();
    path
}

fn controller(state: &Utf8Path, toml: Option<&str>) -> Controller {
    std::fs::create_dir_all(state).unwrap();
    if let Some(t) = toml {
        std::fs::write(state.join("controller.toml"), t).unwrap();
    }
    let config = ControllerConfig::load(StateDir::at(state)).unwrap();
    Controller::open(config).unwrap()
}

/// Two machines naming one key file restore each other's archives; a third with its own key
/// refuses them as untrusted; a configured key file that is missing is an error, never a
/// fresh key.
#[test]
fn a_fleet_shares_one_key_through_controller_toml() {
    let (_t, dir) = temp();
    let shared = dir.join("fleet-key");
    load_or_create(&shared).unwrap();
    let toml = format!("backup-key-file = \"{shared}\"\n");
    let a = controller(&dir.join("a"), Some(&toml));
    let b = controller(&dir.join("b"), Some(&toml));
    let c = controller(&dir.join("c"), None);
    let file = archive(&dir, &a.config().backup_key().unwrap());
    b.verify_archive(&file, None)
        .expect("another machine of the fleet");
    a.verify_archive(&file, None)
        .expect("the machine that made it");
    let err = c.verify_archive(&file, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UntrustedBackup, "{err}");
    assert!(matches!(
        err,
        OperationError::Archive {
            source: ArchiveError::Untrusted { .. },
            ..
        }
    ));
    assert_eq!(err.kind().exit_code(), 18);
    assert!(!dir.join("a/backup-key").exists(), "no key of its own");

    let d = controller(&dir.join("d"), Some("backup-key-file = \"missing-key\"\n"));
    let err = d.verify_archive(&file, None).unwrap_err();
    assert!(err.to_string().contains("missing-key"), "{err}");
    assert!(!dir.join("d/missing-key").exists(), "never made up");
}
