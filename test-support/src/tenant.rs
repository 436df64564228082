//! A hostile tenant for tests of any crate: the unprivileged account
//! `aps-test` (made by scripts/ci/test-user.sh) and its folder-for-symlink swapper, so that each
//! defence against a tenant's race is tested with a real account and a real race, the same one
//! everywhere.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use camino::Utf8Path;

use aps_controller::account::Account;

/// The tenant's account name.
pub const TENANT: &str = "aps-test";

/// The tenant's account, looked up by name; panics with how to make it when it is missing.
pub fn tenant() -> Account {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").arg(flag).arg(TENANT).output().unwrap();
        assert!(
            out.status.success(),
            "user {TENANT} is missing: run scripts/ci/test-user.sh"
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    Account {
        name: TENANT.into(),
        uid: id("-u"),
        gid: id("-g"),
        groups: Vec::new(),
    }
}

/// Starts the tenant: as [`TENANT`], makes `bait` a symlink to `target`, then swaps `victim` and
/// `bait` with renameat2(RENAME_EXCHANGE) as fast as it can until `stop` exists. End it with
/// [`stop_swapper`].
pub fn swapper(victim: &Utf8Path, bait: &Utf8Path, target: &Utf8Path, stop: &Utf8Path) -> Child {
    let who = tenant();
    let script = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
victim, bait, target, stop = [a.encode() for a in sys.argv[1:5]]
os.symlink(target, bait)
AT_FDCWD, RENAME_EXCHANGE, SYS_renameat2 = -100, 2, 316
n = 0
while not os.path.exists(stop):
    for _ in range(200):
        if libc.syscall(SYS_renameat2, AT_FDCWD, victim, AT_FDCWD, bait, RENAME_EXCHANGE) == 0:
            n += 1
print(n, flush=True)
"#;
    Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .args([
            victim.as_str(),
            bait.as_str(),
            target.as_str(),
            stop.as_str(),
        ])
        .uid(who.uid)
        .gid(who.gid)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the tenant's swapper")
}

/// Stops the swapper and returns how many swaps it made (a test whose race never ran checks
/// nothing, so callers assert it is above zero).
pub fn stop_swapper(child: Child, stop: &Utf8Path) -> u64 {
    std::fs::write(stop, b"").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "swapper failed: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
