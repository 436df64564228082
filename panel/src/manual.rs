//! `backup NAME [--to FILE]`: one backup on demand, into the store or to a file of the
//! operator's choice, packed as panel.toml says unless the request says otherwise.
//!
//! Without `to` the backup goes into the local store under the standard name with periodicity
//! `manual`; with `to` it is written exactly there and recorded in the store
//! ([`crate::store::local`]), so that `backups`, `verify --instance`, `restore --latest` and
//! drills see it. The caller runs the controller's backup on [`ManualPlan::destination`] (so
//! that its typed error reaches the user unchanged) and then calls [`ManualPlan::finish`].

use camino::Utf8PathBuf;
use jiff::Timestamp;

use crate::context::{Panel, PanelError};
use crate::engine::ArchiveChoice;
use crate::naming::{ArchiveFormat, BackupName, Compression};
use crate::periodicity::Periodicity;
use crate::store::local::Reservation;
pub use crate::web_dirs::{inside_web_dir_message, web_dir_containing};

/// What the request names; `None` takes panel.toml's choice.
#[derive(Debug, Clone, Default)]
pub struct ManualRequest {
    pub instance: String,
    pub to: Option<Utf8PathBuf>,
    pub compression: Option<Compression>,
    pub recipients: Option<Vec<String>>,
}

/// Where the backup goes and how it is packed, with the store's name held for it.
#[derive(Debug)]
pub struct ManualPlan {
    pub destination: Utf8PathBuf,
    pub archive: ArchiveChoice,
    /// Things the user may want to know but that do not stop the backup.
    pub warnings: Vec<String>,
    external: bool,
    reservation: Reservation,
}

impl ManualPlan {
    /// The name the store knows the backup by.
    pub fn name(&self) -> &BackupName {
        &self.reservation.name
    }

    /// After a successful backup: records a `--to` backup in the store (returns the record),
    /// and releases the name.
    pub fn finish(self, panel: &Panel) -> Result<Option<Utf8PathBuf>, PanelError> {
        if !self.external {
            return Ok(None);
        }
        Ok(Some(
            panel
                .local
                .record_external(&self.reservation, &self.destination)?,
        ))
    }
}

/// Decides destination, name and packing, and reserves the name; writes nothing else.
pub fn plan(
    panel: &Panel,
    request: &ManualRequest,
    now: Timestamp,
) -> Result<ManualPlan, PanelError> {
    let config = panel.archive_choice();
    let archive = ArchiveChoice {
        compression: request.compression.unwrap_or(config.compression),
        age_recipients: request.recipients.clone().unwrap_or(config.age_recipients),
    };
    let chosen = ArchiveFormat {
        compression: archive.compression,
        encrypted: !archive.age_recipients.is_empty(),
    };
    let mut warnings = Vec::new();
    let format = match &request.to {
        None => chosen,
        Some(to) => match ArchiveFormat::of_file_name(to.file_name().unwrap_or_default()) {
            Some(named) if named != chosen => {
                let file_name = to.file_name().unwrap_or_default();
                let stem = file_name
                    .strip_suffix(named.extension())
                    .unwrap_or(file_name);
                warnings.push(format!(
                    "{to} ends in {} but the archive is written as {} (compression {}{}); name it \
                     {stem}{} so that its name says what it holds",
                    named.extension(),
                    chosen.extension(),
                    serde_plain(archive.compression),
                    if chosen.encrypted { ", encrypted" } else { "" },
                    chosen.extension()
                ));
                chosen
            }
            _ => chosen,
        },
    };
    let name = BackupName::new(&request.instance, Periodicity::Manual, now, format);
    let reservation = panel.local.reserve(&name)?;
    Ok(ManualPlan {
        destination: request
            .to
            .clone()
            .unwrap_or_else(|| reservation.path.clone()),
        archive,
        warnings,
        external: request.to.is_some(),
        reservation,
    })
}

fn serde_plain(c: Compression) -> &'static str {
    match c {
        Compression::Zstd => "zstd",
        Compression::Gzip => "gzip",
        Compression::None => "none",
    }
}

/// The newest good backup of `instance` in the local store (its full path), for
/// `restore --latest` and `verify --instance`.
pub fn latest(panel: &Panel, instance: &str) -> Result<Utf8PathBuf, PanelError> {
    let newest = crate::listing::newest_good(&panel.local, instance)?.ok_or_else(|| {
        PanelError::NoBackup {
            instance: instance.to_owned(),
            store: panel.local.root().to_string(),
        }
    })?;
    Ok(panel.local.path_of(&newest))
}
