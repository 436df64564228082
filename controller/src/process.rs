//! Facts about processes on this host, for deciding whether the owner of a journal entry or a
//! lock still runs.

/// State letter and start time (field 22) of a process, from `/proc/<pid>/stat`.
pub(crate) fn read_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// This host's name: a state folder shared between hosts holds other hosts' pids.
pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

// --- Confinement of a run: every process a script or tool starts is ended with it ---------
//
// With a writable cgroup v2 hierarchy (the controller runs as root), each run gets its own
// cgroup below the controller's: the child joins it before `exec`, everything it forks stays
// in it whatever it does with process groups and sessions, and `cgroup.kill` ends them all at
// once. Without one (a controller not running as root, no cgroup2 mounted), the controller
// makes itself a child subreaper: processes that lose their parent are re-parented to the
// controller instead of init, and after each run every such orphan is killed and reaped. The
// controller runs several operations in threads of one process, so an orphan cannot be told
// apart by run there: a sweep kills every process re-parented to the controller that is not
// a child one of its runs started (they are registered in `LIVE_CHILDREN`). That is correct
// (no run may leave anything behind) but may end another run's orphan a little earlier.

use std::collections::HashSet;
use std::ffi::CString;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};

/// Pids of the direct children the runner started and has not reaped yet. Held (locked)
/// around `spawn` + insert, so that a sweep never sees a new child as an orphan.
pub(crate) static LIVE_CHILDREN: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The cgroup v2 mount point and the controller's own cgroup in it, if it can create
/// cgroups there (checked once).
fn cgroup_base() -> Option<&'static Utf8Path> {
    static BASE: std::sync::OnceLock<Option<Utf8PathBuf>> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        if std::env::var_os("APS_CONTROLLER_NO_CGROUP").is_some() {
            return None;
        }
        let mount = cgroup2_mount()?;
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let own = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
        let base = mount.join(own.trim_start_matches('/'));
        // Probe: only a controller allowed to make cgroups (root) gets this far.
        let probe = base.join(format!("aps-probe-{}", std::process::id()));
        std::fs::create_dir(&probe).ok()?;
        let usable = probe.join("cgroup.kill").exists();
        let _ = std::fs::remove_dir(&probe);
        usable.then_some(base)
    })
    .as_deref()
}

/// The cgroup2 mount point, from `/proc/self/mountinfo` (field 5 is the mount point; the
/// file system type follows the ` - ` separator).
fn cgroup2_mount() -> Option<Utf8PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mount = left.split_whitespace().nth(4)?;
        // Mountinfo escapes spaces and the like as \040; such a path is not ours to guess.
        (!mount.contains('\\')).then(|| Utf8PathBuf::from(mount))
    })
}

/// Where one run's processes are kept together, and how they are ended.
pub(crate) enum Confinement {
    /// A cgroup of its own; `procs` is its `cgroup.procs`, written by the child before exec.
    Cgroup { dir: Utf8PathBuf, procs: CString },
    /// The subreaper fallback.
    Subreaper,
}

impl Confinement {
    /// A new confinement for one run.
    pub(crate) fn new() -> Confinement {
        if let Some(base) = cgroup_base() {
            let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = base.join(format!("aps-run-{}-{n}", std::process::id()));
            if std::fs::create_dir(&dir).is_ok()
                && let Ok(procs) = CString::new(dir.join("cgroup.procs").as_str())
            {
                return Confinement::Cgroup { dir, procs };
            }
        }
        become_subreaper();
        Confinement::Subreaper
    }

    /// The `cgroup.procs` file the child joins (writes `0` into) before exec, if any.
    pub(crate) fn procs_file(&self) -> Option<&CString> {
        match self {
            Confinement::Cgroup { procs, .. } => Some(procs),
            Confinement::Subreaper => None,
        }
    }

    /// Kills every process of the run that is still there and waits until they are gone.
    pub(crate) fn end_all(&self) {
        match self {
            Confinement::Cgroup { dir, .. } => {
                let _ = std::fs::write(dir.join("cgroup.kill"), "1");
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    let populated = std::fs::read_to_string(dir.join("cgroup.events"))
                        .map(|e| e.lines().any(|l| l == "populated 1"))
                        .unwrap_or(false);
                    if !populated {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                // Reaping the killed ones is their parents' (or init's) business: without the
                // subreaper, orphans go to init.
            }
            Confinement::Subreaper => reap_orphans(true),
        }
    }
}

impl Drop for Confinement {
    fn drop(&mut self) {
        if let Confinement::Cgroup { dir, .. } = &*self {
            let dir = dir.clone();
            self.end_all();
            let _ = std::fs::remove_dir(dir.as_std_path());
        }
    }
}

/// Ends what runs of a killed controller left in their cgroups (`aps-run-PID-N` whose
/// controller PID no longer runs): the parent-death signal reaches only a script itself, and
/// what it detached stays in its cgroup. Called when the controller opens; best effort.
pub(crate) fn end_stale_runs() {
    let Some(base) = cgroup_base() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        if !left_by_dead_controller(&entry.file_name()) {
            continue;
        }
        let dir = entry.path();
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(2);
        while std::fs::remove_dir(&dir).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: plain system call.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
    });
}

/// Kills (when `kill`) and reaps every child of the controller that none of its runs started:
/// orphans re-parented to it as a subreaper. Repeats while killing one orphans others.
fn reap_orphans(kill: bool) {
    let me = std::process::id();
    for _ in 0..100 {
        let orphans: Vec<u32> = {
            let live = LIVE_CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
            children_of(me)
                .into_iter()
                .filter(|pid| !live.as_ref().is_some_and(|l| l.contains(pid)))
                .collect()
        };
        if orphans.is_empty() {
            return;
        }
        for &pid in &orphans {
            // SAFETY: plain system calls on a pid that is our child (so cannot be reused
            // until we reap it).
            unsafe {
                if kill {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
                libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// Pids whose parent is `parent`, from `/proc`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// Whether `name` is a run's `aps-run-PID-…` (cgroup or run folder) whose controller PID is
/// neither this process nor alive any more: what a killed controller left.
pub(crate) fn left_by_dead_controller(name: &std::ffi::OsStr) -> bool {
    let Some(pid) = name
        .to_str()
        .and_then(|n| n.strip_prefix("aps-run-"))
        .and_then(|rest| rest.split('-').next())
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return false;
    };
    pid != std::process::id() && read_stat(pid).is_none_or(|(state, _)| state == 'Z')
}
