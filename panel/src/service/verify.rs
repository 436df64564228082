//! Verification (`aps-controller verify FILE | --instance NAME | --repository`): a backup
//! checked end to end (format, manifest, every part's hash), or the repository store.

use camino::Utf8PathBuf;
use serde::Serialize;

use super::{Field, ServiceError, check_instance_name, require_registered, words};
use crate::context::{Panel, PanelError};
use crate::engine::Engine;
use crate::store::{ReadData, VerifyReport};

/// One archive: `file`, or the newest good backup of `instance` in the backup store.
#[derive(Debug, Clone, Default)]
pub struct ArchiveRequest {
    pub file: Option<Utf8PathBuf>,
    pub instance: Option<String>,
    /// Else panel.toml's `identity-file`.
    pub identity: Option<Utf8PathBuf>,
}

/// A verified archive, and what was checked (empty when nothing more is worth saying).
#[derive(Debug, Serialize)]
pub struct VerifiedArchive {
    pub file: Utf8PathBuf,
    pub detail: String,
}

impl ArchiveRequest {
    /// Everything that can be checked without opening anything.
    pub fn check(&self) -> Result<(), ServiceError> {
        match &self.instance {
            Some(i) => check_instance_name(Field::InstanceOption, i),
            None => Ok(()),
        }
    }
}

/// The archive verified; a damaged one is an error naming the file.
pub fn verify_archive(
    panel: &Panel,
    engine: &Engine,
    request: &ArchiveRequest,
) -> Result<VerifiedArchive, ServiceError> {
    request.check()?;
    let file = match (&request.file, &request.instance) {
        (Some(f), _) => f.clone(),
        (None, Some(i)) => {
            require_registered(engine.controller(), i)?;
            crate::manual::latest(&panel.local, i)?
        }
        (None, None) => {
            return Err(ServiceError::usage(words![
                "give ",
                Field::File,
                " or ",
                Field::InstanceOption,
                " NAME"
            ]));
        }
    };
    let identity = request
        .identity
        .clone()
        .or_else(|| panel.config.identity_file(&panel.state_dir));
    match engine.verify_archive(&file, identity.as_deref()) {
        Ok(detail) => Ok(VerifiedArchive { file, detail }),
        Err(e) => Err(ServiceError::Unverified {
            file,
            error: Box::new(PanelError::Engine(e)),
        }),
    }
}

/// The store's own check (the repository store's): its structure and the pack files `read`
/// names read back; damage is [`ServiceError::Damaged`] with every finding.
pub fn verify_repository(panel: &Panel, read: &ReadData) -> Result<VerifyReport, ServiceError> {
    let report = panel
        .store
        .verify(&panel.cx(), read)
        .map_err(|e| ServiceError::Unchecked {
            problem: e.problem,
            repository: e.repository,
        })?;
    if !report.is_ok() {
        return Err(ServiceError::Damaged {
            repository: report.repository.clone(),
            errors: report.errors.clone(),
            warnings: report.warnings.clone(),
        });
    }
    Ok(report)
}
