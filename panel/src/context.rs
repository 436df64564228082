//! [`Panel`]: the state folder, panel.toml and the stores it names, opened once per command.

use camino::{Utf8Path, Utf8PathBuf};

use crate::config::{ConfigError, PanelConfig};
use crate::engine::{ArchiveChoice, EngineError};
use crate::retention::RetentionPolicy;
use crate::store::{LocalStore, Remote, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PanelError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot make a scratch folder in {path}: {source}")]
    Scratch {
        path: Utf8PathBuf,
        source: std::io::Error,
    },
    #[error("instance {instance} has no good backup in {store}")]
    NoBackup { instance: String, store: String },
}

pub struct Panel {
    pub state_dir: Utf8PathBuf,
    pub config: PanelConfig,
    pub policy: RetentionPolicy,
    pub local: LocalStore,
    /// The off-machine copy, when panel.toml has a `[remote]`.
    pub remote: Option<Box<dyn Remote>>,
    /// Name reservations of backups killed before they finished, removed on opening.
    pub stale_reservations: Vec<Utf8PathBuf>,
}

impl Panel {
    pub fn open(state_dir: &Utf8Path) -> Result<Self, PanelError> {
        let config = PanelConfig::load(state_dir)?;
        let policy = config
            .retention_policy()
            .map_err(|message| ConfigError::Invalid {
                path: state_dir.join(crate::config::FILE_NAME),
                message,
            })?;
        let remote = match &config.remote {
            None => None,
            #[cfg(feature = "s3")]
            Some(r) => Some(Box::new(crate::store::s3::S3Store::open(r)?) as Box<dyn Remote>),
            #[cfg(not(feature = "s3"))]
            Some(_) => {
                return Err(PanelError::Usage(
                    "panel.toml has a [remote] but this build has no S3 support (feature s3)"
                        .to_owned(),
                ));
            }
        };
        // Only a folder panel.toml names must exist already; the default one (also the one
        // beside a repository store) is made when first written.
        let local = if config.archive_store_named() {
            LocalStore::configured(config.store_dir(state_dir))
        } else {
            LocalStore::new(config.store_dir(state_dir))
        };
        local.check_exists()?;
        let stale_reservations = local.remove_stale_reservations();
        Ok(Panel {
            stale_reservations,
            local,
            state_dir: state_dir.to_owned(),
            config,
            policy,
            remote,
        })
    }

    /// The local store, or with `remote` the off-machine copy (an error when panel.toml has no
    /// `[remote]`).
    pub fn store(&self, remote: bool) -> Result<&dyn Store, PanelError> {
        match (&self.remote, remote) {
            (Some(r), true) => Ok(r.as_ref()),
            (None, true) => Err(PanelError::Usage("panel.toml has no [remote]".to_owned())),
            (_, false) => Ok(&self.local),
        }
    }

    pub fn archive_choice(&self) -> ArchiveChoice {
        ArchiveChoice {
            compression: self.config.compression,
            age_recipients: self.config.age_recipients.clone(),
        }
    }
}
