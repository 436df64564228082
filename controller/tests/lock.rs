//! Instance locks between real processes: a copy of this test binary holds the lock.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use aps_controller::lock::{InstanceLock, LockError, is_free};
use camino::{Utf8Path, Utf8PathBuf};

/// Set in the re-executed copy of this binary: the state folder in which to hold the lock.
const HOLDER_ENV: &str = "APS_LOCK_TEST_HOLDER_STATE";

/// Not a test of its own: the body of the holder process. It takes the lock, says so on
/// stdout, and keeps it until its stdin closes (or it is killed).
#[test]
fn lock_holder_process() {
    let Ok(state) = std::env::var(HOLDER_ENV) else {
        return;
    };
    let lock = InstanceLock::acquire(Utf8Path::new(&state), "blog", "backup").unwrap();
    println!("locked {}", std::process::id());
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(lock);
}

struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    _stdout: BufReader<ChildStdout>,
}

fn start_holder(state: &Utf8Path) -> Holder {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lock_holder_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLDER_ENV, state.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // Wait (blocking, no clock) until the holder has the lock.
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "holder exited without locking"
        );
        // libtest may print "test lock_holder_process ... " on the same line first.
        if let Some((_, pid)) = line.trim().split_once("locked ") {
            assert_eq!(pid.parse::<u32>().unwrap(), child.id());
            break;
        }
    }
    Holder {
        child,
        stdin,
        _stdout: stdout,
    }
}

fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_path_buf()).unwrap();
    (dir, path)
}

#[test]
fn busy_while_another_process_holds_it_then_free_after_release() {
    if std::env::var_os(HOLDER_ENV).is_some() {
        return;
    }
    let (_keep, state) = tempdir();
    let mut holder = start_holder(&state);

    let err = InstanceLock::acquire(&state, "blog", "restore").unwrap_err();
    match &err {
        LockError::Busy {
            instance,
            owner_pid,
            since,
            operation,
            ..
        } => {
            assert_eq!(instance, "blog");
            assert_eq!(*owner_pid, Some(holder.child.id()));
            assert!(since.is_some());
            assert_eq!(operation.as_deref(), Some("backup"));
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&format!("pid {}", holder.child.id())), "{msg}");
    assert!(!is_free(&state, "blog").unwrap());

    // Orderly release: close its stdin, it drops the lock and exits.
    drop(holder.stdin.take());
    assert!(holder.child.wait().unwrap().success());
    assert!(is_free(&state, "blog").unwrap());
    let lock = InstanceLock::acquire(&state, "blog", "restore").unwrap();
    assert!(lock.takeover().is_none(), "a released lock is no takeover");
}

#[test]
fn lock_of_a_killed_holder_is_taken_over_and_reported() {
    if std::env::var_os(HOLDER_ENV).is_some() {
        return;
    }
    let (_keep, state) = tempdir();
    let mut holder = start_holder(&state);
    let pid = holder.child.id();
    holder.child.kill().unwrap();
    holder.child.wait().unwrap();

    // The file is still there, the lock is not.
    assert!(state.join("locks/blog.lock").exists());
    assert!(is_free(&state, "blog").unwrap());
    let lock = InstanceLock::acquire(&state, "blog", "restore").unwrap();
    let stale = lock.takeover().expect("takeover reported");
    let previous = stale.previous_owner.as_ref().unwrap();
    assert_eq!(previous.pid, pid);
    assert_eq!(previous.operation, "backup");
    assert_eq!(lock.owner().pid, std::process::id());
}
