//! Backup destination checks and the atomic commit, on real files.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use aps_controller::destination::{Destination, DestinationError, PARTIAL_MARKER};
use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

/// Set in the re-executed copy of this test binary that runs as the unprivileged user.
const CHILD_ENV: &str = "APS_DESTINATION_TEST_UNWRITABLE_DIR";
const CHILD_OK: &str = "child-check-passed";
const TEST_USER: &str = "aps-test";

fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_path_buf()).unwrap();
    (dir, path)
}

fn names(dir: &Utf8Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn commit_puts_the_whole_file_in_place() {
    let (_keep, dir) = tempdir();
    let dest = dir.join("site.tar");
    let prepared = Destination::prepare(&dest, false).unwrap();
    let temp = prepared.temp_path().to_owned();
    assert_eq!(temp.parent(), Some(dir.as_path()));
    assert!(
        temp.file_name()
            .unwrap()
            .starts_with(&format!(".site.tar{PARTIAL_MARKER}")),
        "{temp}"
    );

    // Written the way a script writes BACKUP_FILE: by path, in several steps. Until the commit
    // the destination does not exist, however much has been written.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&temp)
        .unwrap();
    file.write_all(b"part one,").unwrap();
    assert!(!dest.exists());
    file.write_all(b" part two").unwrap();
    drop(file);
    assert!(!dest.exists());

    let committed = prepared.commit().unwrap();
    assert_eq!(committed.path, dest);
    assert_eq!(committed.size, 18);
    assert_eq!(
        committed.sha256,
        hex::encode(Sha256::digest(b"part one, part two"))
    );
    assert_eq!(std::fs::read(&dest).unwrap(), b"part one, part two");
    assert_eq!(names(&dir), ["site.tar"], "temporary file left behind");
}

#[test]
fn drop_without_commit_deletes_the_temporary_file() {
    let (_keep, dir) = tempdir();
    let dest = dir.join("site.tar");
    let prepared = Destination::prepare(&dest, false).unwrap();
    std::fs::write(prepared.temp_path(), b"half a backup").unwrap();
    drop(prepared);
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));
}

#[test]
fn the_file_handle_writes_the_temporary_file() {
    let (_keep, dir) = tempdir();
    let prepared = Destination::prepare(dir.join("a.bin"), false).unwrap();
    prepared.file().write_all(b"archive").unwrap();
    let committed = prepared.commit().unwrap();
    assert_eq!(committed.size, 7);
}

#[test]
fn existing_file_needs_force() {
    let (_keep, dir) = tempdir();
    let dest = dir.join("site.tar");
    std::fs::write(&dest, b"yesterday").unwrap();

    let err = Destination::prepare(&dest, false).unwrap_err();
    assert!(matches!(err, DestinationError::Exists { .. }), "{err:?}");
    // The Rust API's option, not a front end's flag.
    assert_eq!(
        err.to_string(),
        format!("backup destination {dest} already exists; use force to replace it")
    );
    assert_eq!(
        names(&dir),
        ["site.tar"],
        "refusal must not leave a temp file"
    );

    let prepared = Destination::prepare(&dest, true).unwrap();
    // The old backup stays whole until the new one is committed.
    std::fs::write(prepared.temp_path(), b"today").unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"yesterday");
    prepared.commit().unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"today");
    assert_eq!(names(&dir), ["site.tar"]);
}

#[test]
fn destination_appearing_meanwhile_is_not_overwritten_without_force() {
    let (_keep, dir) = tempdir();
    let dest = dir.join("site.tar");
    let prepared = Destination::prepare(&dest, false).unwrap();
    std::fs::write(prepared.temp_path(), b"new").unwrap();
    std::fs::write(&dest, b"someone else's").unwrap();
    let err = prepared.commit().unwrap_err();
    assert!(matches!(err, DestinationError::Exists { .. }), "{err:?}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"someone else's");
    assert_eq!(names(&dir), ["site.tar"]);
}

#[test]
fn folder_is_refused_even_with_force() {
    let (_keep, dir) = tempdir();
    let dest = dir.join("backups");
    std::fs::create_dir(&dest).unwrap();
    for force in [false, true] {
        let err = Destination::prepare(&dest, force).unwrap_err();
        assert!(matches!(err, DestinationError::IsAFolder { .. }), "{err:?}");
        assert!(err.to_string().contains(dest.as_str()), "{err}");
    }
    assert_eq!(names(&dir), ["backups"]);
}

#[test]
fn symlinks_are_refused_even_dangling_and_with_force() {
    let (_keep, dir) = tempdir();
    let real = dir.join("real.tar");
    std::fs::write(&real, b"x").unwrap();
    let to_file = dir.join("link.tar");
    std::os::unix::fs::symlink(&real, &to_file).unwrap();
    let dangling = dir.join("dangling.tar");
    std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
    let to_dir = dir.join("dirlink");
    std::os::unix::fs::symlink(&dir, &to_dir).unwrap();

    for link in [&to_file, &dangling, &to_dir] {
        for force in [false, true] {
            let err = Destination::prepare(link, force).unwrap_err();
            assert!(
                matches!(err, DestinationError::Symlink { .. }),
                "{link}: {err:?}"
            );
        }
    }
    // Nothing was written through the dangling link.
    assert!(!dir.join("nowhere").exists());
    assert_eq!(std::fs::read(&real).unwrap(), b"x");
}

#[test]
fn missing_parent_is_refused() {
    let (_keep, dir) = tempdir();
    let dest = dir.join("no/such/folder/site.tar");
    let err = Destination::prepare(&dest, true).unwrap_err();
    match &err {
        DestinationError::MissingParent { parent, .. } => {
            assert_eq!(parent, &dir.join("no/such/folder"))
        }
        other => panic!("expected MissingParent, got {other:?}"),
    }
    assert!(!dir.join("no").exists());
}

#[test]
fn parent_that_is_a_file_is_refused() {
    let (_keep, dir) = tempdir();
    std::fs::write(dir.join("file"), b"").unwrap();
    let err = Destination::prepare(dir.join("file/site.tar"), false).unwrap_err();
    assert!(
        matches!(err, DestinationError::ParentNotAFolder { .. }),
        "{err:?}"
    );
}

#[test]
fn path_without_file_name_is_refused() {
    let err = Destination::prepare("/tmp/..", false).unwrap_err();
    assert!(
        matches!(err, DestinationError::NoFileName { .. }),
        "{err:?}"
    );
}

/// Root writes into a 0555 folder, so the refusal is checked by a copy of this test binary
/// running as the unprivileged `aps-test` user (created by scripts/ci/test-user.sh); as a
/// non-root user the check runs in-process. The copy lies in the test's own folder: the build
/// folder may be one only root can enter.
#[test]
fn unwritable_parent_is_refused() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        check_unwritable(Utf8Path::new(&dir));
        println!("{CHILD_OK}");
        return;
    }

    let base = tempfile::Builder::new()
        .prefix("aps-dest-test-")
        .tempdir()
        .unwrap();
    let base_path = Utf8PathBuf::from_path_buf(base.path().to_path_buf()).unwrap();
    // The unprivileged user must be able to reach the folder, but not write into it.
    std::fs::set_permissions(&base_path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let readonly = base_path.join("readonly");
    std::fs::create_dir(&readonly).unwrap();
    std::fs::set_permissions(&readonly, std::fs::Permissions::from_mode(0o555)).unwrap();

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        check_unwritable(&readonly);
        return;
    }

    ensure_test_user();
    let exe = Utf8PathBuf::from_path_buf(std::env::current_exe().unwrap()).unwrap();
    let exe = test_support::reachable_copy(&exe, &base_path);
    let out = Command::new("runuser")
        .args(["-u", TEST_USER, "--"])
        .arg(&exe)
        .args(["--exact", "unwritable_parent_is_refused", "--nocapture"])
        .env(CHILD_ENV, readonly.as_str())
        .output()
        .expect("runuser");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(CHILD_OK),
        "check as {TEST_USER} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(names(&readonly).is_empty());
}

fn check_unwritable(dir: &Utf8Path) {
    let dest = dir.join("site.tar");
    let err = Destination::prepare(&dest, false).unwrap_err();
    match &err {
        DestinationError::ParentNotWritable { parent, .. } => assert_eq!(parent, dir),
        other => panic!("expected ParentNotWritable, got {other:?}"),
    }
    assert!(err.to_string().contains(dir.as_str()), "{err}");
}

fn ensure_test_user() {
    let exists = |user: &str| {
        Command::new("id")
            .arg(user)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !exists(TEST_USER) {
        let script = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ci/test-user.sh");
        let status = Command::new("bash").arg(&script).status().unwrap();
        assert!(status.success(), "{script} failed");
    }
    assert!(
        exists(TEST_USER),
        "user {TEST_USER} missing; run scripts/ci/test-user.sh"
    );
}

/// `check` creates nothing; `create` makes exactly the temporary file `temp_path` named, so an
/// operation can journal the name first. A leftover of the same name is refused, not reused.
#[test]
fn temp_file_is_named_before_it_exists() {
    let (_keep, dir) = tempdir();
    let dest = dir.join("site.tar");
    let checked = Destination::check(&dest, false).unwrap();
    assert!(names(&dir).is_empty(), "check alone creates nothing");
    let planned = checked.temp_path("op-1");
    assert_eq!(planned, dir.join(format!(".site.tar{PARTIAL_MARKER}op-1")));

    let prepared = checked.create("op-1").unwrap();
    assert_eq!(prepared.temp_path(), planned);
    assert_eq!(names(&dir), [format!(".site.tar{PARTIAL_MARKER}op-1")]);

    let again = Destination::check(&dest, false).unwrap().create("op-1");
    assert!(
        matches!(again, Err(DestinationError::Io { ref source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{again:?}"
    );
    drop(prepared);
    assert!(names(&dir).is_empty(), "dropped uncommitted: deleted");
}
