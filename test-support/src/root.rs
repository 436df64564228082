//! Tests that need something the run may lack on purpose: root, database servers, the S3
//! server. Missing, it fails the test; only the run's own `APS_TEST_NO_<WHAT>=1` skips, and
//! says so, since a test that passes without checking anything hides missing infrastructure.

use std::os::unix::fs::PermissionsExt;

use camino::{Utf8Path, Utf8PathBuf};

/// True (said on stderr) when the run skips `what` on purpose: `var` is `1`.
pub fn skipped_on_purpose(var: &str, what: &str) -> bool {
    let skip = std::env::var(var).is_ok_and(|v| v == "1");
    if skip {
        eprintln!("{var}=1: {what} skipped");
    }
    skip
}

/// True when the test runs as root. Otherwise false when the run skips root tests
/// (`APS_TEST_NO_ROOT=1`, said on stderr), and a failed test when it does not: `what` names
/// what needs root.
pub fn needs_root(what: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if skipped_on_purpose("APS_TEST_NO_ROOT", &format!("not root: {what}")) {
        return false;
    }
    panic!(
        "not root: {what} needs root; run the tests as root (scripts/test), or set \
         APS_TEST_NO_ROOT=1 to skip root tests on purpose"
    )
}

/// A copy of the program `exe` in `dir`, mode 0755, for another account to run: the build
/// folder may lie in a folder only root can enter (a clone in /root or in a `mktemp -d`
/// folder). `dir` and the folders above it must let that account through.
pub fn reachable_copy(exe: &Utf8Path, dir: &Utf8Path) -> Utf8PathBuf {
    let name = exe.file_name().expect("a program's path names a file");
    let copy = dir.join(name);
    std::fs::copy(exe, &copy).unwrap_or_else(|e| panic!("copy {exe} to {copy}: {e}"));
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// A copy of the folder `tree` (e.g. a fixture package) at `dir/<its name>`, folders 0755 and
/// files readable by all (keeping their exec bits), for another account to read: like [`reachable_copy`], the
/// repository may lie in a folder only root can enter. Symbolic links are refused, not
/// followed: fixtures hold none.
pub fn reachable_tree(tree: &Utf8Path, dir: &Utf8Path) -> Utf8PathBuf {
    let copy = dir.join(tree.file_name().expect("a folder's path names it"));
    copy_tree(tree, &copy);
    copy
}

fn copy_tree(from: &Utf8Path, to: &Utf8Path) {
    std::fs::create_dir(to).unwrap_or_else(|e| panic!("create {to}: {e}"));
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in from
        .read_dir_utf8()
        .unwrap_or_else(|e| panic!("read {from}: {e}"))
    {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(entry.path(), &target);
        } else if kind.is_file() {
            // std::fs::copy keeps the mode bits (a script's exec bit).
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copy {} to {target}: {e}", entry.path()));
            let mode = std::fs::metadata(&target).unwrap().permissions().mode();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode | 0o444))
                .unwrap();
        } else {
            panic!("{}: neither a folder nor a file", entry.path());
        }
    }
}
