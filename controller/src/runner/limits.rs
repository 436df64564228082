//! Resource bounds of a package script (controller.toml `[limits]`) and how they reach the
//! child (`setrlimit` before `exec`).

use super::ProcessSpec;

/// Bounds set with `setrlimit` on a package script before it starts; `None`: inherited from
/// the controller (normally unlimited). Exceeding the file size kills the script (SIGXFSZ),
/// exceeding the CPU time too (SIGXCPU, then SIGKILL): the operation fails and is rolled back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ResourceLimits {
    /// Largest file the script may write, in MiB (`RLIMIT_FSIZE`): bounds a backup file.
    pub max_file_size_mb: Option<u64>,
    /// Open files at once (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
    /// CPU seconds (`RLIMIT_CPU`); wall time is bounded by the timeout.
    pub cpu_secs: Option<u64>,
    /// Data bytes a walk of the instance's web folders may read (backup, safety snapshot,
    /// estimate): a sparse file counts its data, not its holes.
    pub max_instance_size: Option<u64>,
    /// Entries (files, folders, symlinks) a walk of the instance's web folders may take.
    pub max_files: Option<u64>,
}

impl ResourceLimits {
    /// `self`, with `over`'s keys where it has them.
    pub fn overridden_by(self, over: &ResourceLimits) -> ResourceLimits {
        ResourceLimits {
            max_file_size_mb: over.max_file_size_mb.or(self.max_file_size_mb),
            open_files: over.open_files.or(self.open_files),
            cpu_secs: over.cpu_secs.or(self.cpu_secs),
            max_instance_size: over.max_instance_size.or(self.max_instance_size),
            max_files: over.max_files.or(self.max_files),
        }
    }
}

impl ProcessSpec {
    /// Bounds the child with `setrlimit` (soft and hard limit alike) before it starts.
    pub fn limits(mut self, limits: &ResourceLimits) -> Self {
        let bounds = [
            (
                libc::RLIMIT_FSIZE,
                limits
                    .max_file_size_mb
                    .map(|m| m.saturating_mul(1024 * 1024)),
            ),
            (libc::RLIMIT_NOFILE, limits.open_files),
            (libc::RLIMIT_CPU, limits.cpu_secs),
        ];
        self.rlimits = bounds
            .into_iter()
            .filter_map(|(resource, value)| Some((resource, value?)))
            .collect();
        self
    }
}
