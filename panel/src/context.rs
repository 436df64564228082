//! [`Panel`]: the state folder, panel.toml and the stores it names, opened once per command.

use camino::{Utf8Path, Utf8PathBuf};

use crate::config::{ConfigError, PanelConfig};
use crate::engine::ArchiveChoice;
pub use crate::error::PanelError;
use crate::retention::RetentionPolicy;
use crate::store::files::{ArchiveFiles, Remote};
use crate::store::{LocalStore, Store, StoreCx};

pub struct Panel {
    pub state_dir: Utf8PathBuf,
    pub config: PanelConfig,
    pub policy: RetentionPolicy,
    pub local: LocalStore,
    /// The off-machine copy, when panel.toml has a `[remote]`.
    pub remote: Option<Box<dyn Remote>>,
    /// The store panel.toml chose (`[store] kind`): what every backup, listing, restore,
    /// retention, verify and drill asks; [`crate::store::chosen`].
    pub store: Box<dyn Store>,
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
        let store = crate::store::chosen(&config, state_dir);
        Ok(Panel {
            store,
            stale_reservations,
            local,
            state_dir: state_dir.to_owned(),
            config,
            policy,
            remote,
        })
    }

    /// The archive store's folder, or with `remote` the off-machine copy (an error when
    /// panel.toml has no `[remote]`).
    pub fn files(&self, remote: bool) -> Result<&dyn ArchiveFiles, PanelError> {
        match (&self.remote, remote) {
            (Some(r), true) => Ok(r.as_ref()),
            (None, true) => Err(PanelError::Usage("panel.toml has no [remote]".to_owned())),
            (_, false) => Ok(&self.local),
        }
    }

    pub fn archive_choice(&self) -> ArchiveChoice {
        self.config.archive_choice()
    }

    /// What [`Panel::store`]'s calls work with.
    pub fn cx(&self) -> StoreCx<'_> {
        StoreCx {
            state_dir: &self.state_dir,
            config: &self.config,
            policy: &self.policy,
            local: &self.local,
            remote: self.remote.as_deref(),
        }
    }
}
