//! What a package's script left that it should not have, seen by the controller after the
//! script ended: processes of the sandbox account still running, and files of the account
//! outside the instance's folders (its home, the shared temporary folders).
//!
//! Variables a script reads that the standard does not define are not detected: a script's
//! reads of its environment leave no trace the controller can see without tracing the
//! interpreter (docs/conformance.md says so).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use serde::Serialize;

use aps_controller::archive::{open_dir_nofollow, open_walked_dir, pending_names};

/// A process of the sandbox account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessSeen {
    pub pid: i32,
    /// Its command line (arguments joined by spaces, cut at 200 bytes), or its `comm`.
    pub command: String,
}

/// The processes whose real or effective uid is `uid`, read from `/proc`. After a script
/// ended (the runner ends its process group and cgroup), any found is one the script left
/// behind: a daemon that escaped, a `setsid` child.
pub fn processes_of(uid: u32) -> Vec<ProcessSeen> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut seen: Vec<ProcessSeen> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            process_uid(pid).is_some_and(|(real, effective)| real == uid || effective == uid)
        })
        .map(|pid| ProcessSeen {
            pid,
            command: command_of(pid),
        })
        .collect();
    seen.sort_by_key(|p| p.pid);
    seen
}

/// Kills (SIGKILL) every process of `uid`, through a pidfd checked to still be the account's
/// process (a pid reused meanwhile is not touched). Repeats until none is left or a few
/// rounds passed (a process may fork while the others die).
pub fn end_processes_of(uid: u32) {
    for _ in 0..10 {
        let left = processes_of(uid);
        if left.is_empty() {
            return;
        }
        for process in left {
            let Some(pid) = rustix::process::Pid::from_raw(process.pid) else {
                continue;
            };
            let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            else {
                continue;
            };
            // The pidfd names this process for good: check it is still the account's.
            if process_uid(process.pid).is_some_and(|(r, e)| r == uid || e == uid) {
                let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Real and effective uid of a process, from `/proc/PID/status`.
fn process_uid(pid: i32) -> Option<(u32, u32)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    let mut ids = line["Uid:".len()..]
        .split_whitespace()
        .map(|v| v.parse::<u32>());
    Some((ids.next()?.ok()?, ids.next()?.ok()?))
}

fn command_of(pid: i32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut text: String = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    if text.is_empty() {
        text = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        text = format!("[{text}]");
    }
    if text.len() > 200 {
        let cut = text.floor_char_boundary(200);
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// One file system entry of the account, as [`OutsideFiles`] saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntrySeen {
    /// `d`, `f`, `l` or `o` (another kind).
    pub kind: char,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

/// A file the script wrote outside the instance's folders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutsideWrite {
    pub path: Utf8PathBuf,
    /// `created` or `changed`.
    pub what: &'static str,
}

/// The entries belonging to one account in a few folders (its home and the shared temporary
/// folders), the instance's own folders left out: taken before a script and after it, the
/// difference is what the script wrote where it should not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutsideFiles {
    pub entries: BTreeMap<Utf8PathBuf, EntrySeen>,
    /// Entries past the bound were not looked at.
    pub truncated: bool,
}

/// Most entries one [`OutsideFiles::capture`] walks (a busy /tmp must not stall a run).
pub const OUTSIDE_WALK_LIMIT: usize = 200_000;

impl OutsideFiles {
    /// Walks `roots` by descriptor (no symlink followed, and no folder the account could not
    /// enter itself) and keeps every entry owned by `uid`, except what lies in `excluded` (the
    /// instance's web folders).
    pub fn capture(roots: &[&Utf8Path], uid: u32, excluded: &[&Utf8Path]) -> OutsideFiles {
        let mut out = OutsideFiles::default();
        let mut walked = 0usize;
        for root in roots {
            let Ok(fd) = open_dir_nofollow(root.as_std_path()) else {
                continue;
            };
            let Ok(fd) = rustix::fs::openat(
                &fd,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            ) else {
                continue;
            };
            walk(&fd, root, uid, excluded, &mut out, &mut walked, 0);
        }
        out
    }

    /// What `after` holds that `self` (taken before) did not, or holds changed.
    pub fn written_since(&self, after: &OutsideFiles) -> Vec<OutsideWrite> {
        after
            .entries
            .iter()
            .filter_map(|(path, seen)| {
                let what = match self.entries.get(path) {
                    None => "created",
                    Some(before) if before != seen && seen.kind != 'd' => "changed",
                    Some(_) => return None,
                };
                Some(OutsideWrite {
                    path: path.clone(),
                    what,
                })
            })
            .collect()
    }
}

// `struct stat` field types differ between architectures; the casts are no-ops on x86_64.
#[allow(clippy::unnecessary_cast)]
fn walk(
    dir: &OwnedFd,
    path: &Utf8Path,
    uid: u32,
    excluded: &[&Utf8Path],
    out: &mut OutsideFiles,
    walked: &mut usize,
    depth: usize,
) {
    if depth > aps_controller::archive::MAX_DEPTH {
        return;
    }
    let Ok(names) = pending_names(dir.as_fd()) else {
        return;
    };
    for name in names {
        *walked += 1;
        if *walked > OUTSIDE_WALK_LIMIT {
            out.truncated = true;
            return;
        }
        let child = path.join(String::from_utf8_lossy(&name).as_ref());
        if excluded.iter().any(|e| child.starts_with(e)) {
            continue;
        }
        let os = OsStr::from_bytes(&name);
        let Ok(st) = rustix::fs::statat(dir, os, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => 'd',
            FileType::RegularFile => 'f',
            FileType::Symlink => 'l',
            _ => 'o',
        };
        if st.st_uid == uid {
            out.entries.insert(
                child.clone(),
                EntrySeen {
                    kind,
                    size: if kind == 'd' { 0 } else { st.st_size as u64 },
                    mtime: st.st_mtime as i64,
                    mtime_nsec: st.st_mtime_nsec as i64,
                },
            );
        }
        // A folder the account cannot enter (not its own, no search bit for others) holds
        // nothing the account can have written: not walked (other runs' private folders in
        // /tmp would cost seconds per script).
        let enterable = st.st_uid == uid || st.st_mode & 0o001 != 0;
        if kind == 'd'
            && enterable
            && let Ok(Some(sub)) = open_walked_dir(dir.as_fd(), os)
        {
            walk(&sub, &child, uid, excluded, out, walked, depth + 1);
        }
    }
}
