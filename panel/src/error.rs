//! [`PanelError`]: why a panel operation could not even start or list its work.

use camino::Utf8PathBuf;

use crate::config::ConfigError;
use crate::engine::EngineError;
use crate::store::files::StoreError;

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
