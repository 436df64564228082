//! Every call into the controller goes through here, so the rest of the panel depends on a
//! handful of functions and not on the controller's evolving API.

use camino::{Utf8Path, Utf8PathBuf};

pub use aps_controller::operation::{BackupReport, RestoreReport};

use crate::naming::Compression;

/// How the controller's archive writer packs a backup (from panel.toml).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveChoice {
    pub compression: Compression,
    pub age_recipients: Vec<String>,
}

/// Result of the package's verification-script, or of the manifest comparison.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    pub passed: bool,
    /// `verification-script` or `manifest-counts`.
    pub method: &'static str,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot open the controller with state folder {state_dir}: {message}")]
    Open {
        state_dir: Utf8PathBuf,
        message: String,
    },
    #[error("{operation} of instance {instance} failed: {message}")]
    Operation {
        operation: &'static str,
        instance: String,
        message: String,
    },
    #[error("archive {archive} did not verify: {message}")]
    Verify {
        archive: Utf8PathBuf,
        message: String,
    },
    #[error("cannot list registered instances: {message}")]
    Instances { message: String },
    #[error(
        "no state folder: pass --state-dir, or set APS_CONTROLLER_STATE_DIR, XDG_STATE_HOME or HOME"
    )]
    StateDir,
    #[error("this build of the controller cannot {what} yet")]
    NotWired { what: &'static str },
}

/// The controller handle, shared by the worker threads of `run`.
pub struct Engine {
    state_dir: Utf8PathBuf,
}

impl Engine {
    pub fn open(state_dir: &Utf8Path) -> Result<Self, EngineError> {
        Ok(Engine {
            state_dir: state_dir.to_owned(),
        })
    }

    pub fn state_dir(&self) -> &Utf8Path {
        &self.state_dir
    }

    /// Names of the registered instances, sorted.
    pub fn instances(&self) -> Result<Vec<String>, EngineError> {
        Err(EngineError::NotWired {
            what: "list instances",
        })
    }

    /// Backs `instance` up into `destination` (which the controller writes via temp + rename).
    pub fn backup(
        &self,
        _instance: &str,
        _destination: &Utf8Path,
        _archive: &ArchiveChoice,
    ) -> Result<BackupReport, EngineError> {
        Err(EngineError::NotWired { what: "back up" })
    }

    pub fn restore(
        &self,
        _instance: &str,
        _source: &Utf8Path,
        _identity: Option<&Utf8Path>,
    ) -> Result<RestoreReport, EngineError> {
        Err(EngineError::NotWired { what: "restore" })
    }

    /// Checks an archive end to end (format, manifest, every part's hash).
    pub fn verify_archive(
        _archive: &Utf8Path,
        _identity: Option<&Utf8Path>,
    ) -> Result<String, EngineError> {
        Err(EngineError::NotWired {
            what: "verify archives",
        })
    }

    /// After a restore of `backup` into `instance`: the package's verification-script if it has
    /// one, else the manifest's file and row counts against what `instance` now holds.
    pub fn check_restored(
        &self,
        _instance: &str,
        _backup: &Utf8Path,
        _identity: Option<&Utf8Path>,
    ) -> Result<Verification, EngineError> {
        Err(EngineError::NotWired {
            what: "check a restored instance",
        })
    }
}

/// The state folder: the flag (or `APS_CONTROLLER_STATE_DIR`, via clap), else
/// `$XDG_STATE_HOME/aps-controller`, else `$HOME/.local/state/aps-controller` — the controller's
/// own rule, so both sides agree on where the registry and `backups/` are.
pub fn resolve_state_dir(flag: Option<Utf8PathBuf>) -> Result<Utf8PathBuf, EngineError> {
    let env = |k: &str| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Utf8PathBuf::from)
    };
    let dir = flag
        .filter(|p| !p.as_str().is_empty())
        .or_else(|| env("APS_CONTROLLER_STATE_DIR"))
        .or_else(|| env("XDG_STATE_HOME").map(|p| p.join("aps-controller")))
        .or_else(|| env("HOME").map(|p| p.join(".local/state/aps-controller")))
        .ok_or(EngineError::StateDir)?;
    if dir.is_relative() {
        let cwd = std::env::current_dir()
            .ok()
            .and_then(|p| Utf8PathBuf::from_path_buf(p).ok());
        return cwd.map(|c| c.join(&dir)).ok_or(EngineError::StateDir);
    }
    Ok(dir)
}
