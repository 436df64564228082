//! The conformance pieces against real components: real accounts made and removed, real
//! processes, the real MariaDB and PostgreSQL servers.

mod findings;
mod report;
mod sandbox;
mod state;

use camino::{Utf8Path, Utf8PathBuf};

/// A root-owned folder (0755) for this test's sandboxes, removed with the value.
pub struct Base {
    _dir: tempfile::TempDir,
    pub path: Utf8PathBuf,
}

pub fn base() -> Base {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("aps-conf-test-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    Base { _dir: dir, path }
}

/// A fresh base folder and a sandbox in it (not kept).
pub fn sandbox() -> (Base, aps_conformance::sandbox::Sandbox) {
    let base = base();
    let options = aps_conformance::sandbox::SandboxOptions {
        base: base.path.clone(),
        keep: false,
    };
    let sandbox = aps_conformance::sandbox::Sandbox::create(&options).unwrap();
    (base, sandbox)
}

/// Whether the user `name` exists.
pub fn user_exists(name: &str) -> bool {
    std::process::Command::new("id")
        .arg(name)
        .output()
        .unwrap()
        .status
        .success()
}

/// Runs `sh -c script` as `uid:gid`, waits for it.
pub fn sh_as(uid: u32, gid: u32, script: &str, cwd: &Utf8Path) {
    use std::os::unix::process::CommandExt;
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .uid(uid)
        .gid(gid)
        .status()
        .unwrap();
    assert!(status.success(), "{script}: {status}");
}
