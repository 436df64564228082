//! `<state>/panel.toml`: the panel's choices — where backups go, how they are packed, how many
//! are kept, and the optional off-machine copy. Every key is optional; a missing file means
//! all defaults. The shape is documented in docs/policies.md.
//!
//! This module reads the file and checks it as a whole ([`PanelConfig::load`]); its parts are
//! the `[store]` section (`store.rs`), the S3 buckets of `[store.s3]` and `[remote]`
//! (`s3.rs`), the keep counts of `[retention]` (`keep.rs`), whom `[notify]` tells after a run
//! (`notify.rs`), and the unknown-key messages (`unknown.rs`).

use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

use crate::naming::{ArchiveFormat, Compression};

mod keep;
mod notify;
mod s3;
mod store;
mod unknown;

pub use keep::{InstanceOverrides, KeepConfig, RetentionConfig};
pub use notify::NotifyConfig;
pub use s3::{
    DEFAULT_S3_RETRIES, DEFAULT_S3_TIMEOUT, RemoteConfig, S3Bucket, S3Credentials, UploadSizes,
};
pub use store::{
    DEFAULT_LOCK_WAIT, RepositoryLocation, RepositorySettings, Sharing, StoreKind, StoreSetting,
    StoreTable,
};

pub const FILE_NAME: &str = "panel.toml";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PanelConfig {
    /// Backup folder (`store = "backups"`), or a `[store]` table that also chooses the kind;
    /// relative paths are under the state folder. Default: the archive folder `backups`.
    pub store: Option<StoreSetting>,
    #[serde(default)]
    pub compression: Compression,
    /// age recipients (`age1…`); when any is given, archives are encrypted (`.age`).
    #[serde(default)]
    pub age_recipients: Vec<String>,
    /// The age identity `drill` and `verify` use when `--identity` is not given (relative to
    /// the state folder); checked like the controller's other secret files.
    pub identity_file: Option<Utf8PathBuf>,
    /// Default parallelism of `run`.
    pub jobs: Option<usize>,
    #[serde(default)]
    pub retention: RetentionConfig,
    pub remote: Option<RemoteConfig>,
    /// Whom to tell after each `run` (`[notify]`).
    pub notify: Option<NotifyConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read panel config {path}: {source}")]
    Read {
        path: Utf8PathBuf,
        source: std::io::Error,
    },
    #[error("panel config {path}: {message}")]
    Invalid { path: Utf8PathBuf, message: String },
}

impl PanelConfig {
    /// Reads `<state>/panel.toml`; a missing file is the default configuration.
    pub fn load(state_dir: &Utf8Path) -> Result<Self, ConfigError> {
        let path = state_dir.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PanelConfig::default()),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        // Every unknown key at once, with its line and the valid keys; then the types.
        let unknown = unknown::unknown_keys(&text);
        if !unknown.is_empty() {
            return Err(ConfigError::Invalid {
                path,
                message: unknown.join("; "),
            });
        }
        let config: PanelConfig = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.clone(),
            message: aps_controller::registry::validate::toml_problem(&text, &e),
        })?;
        config
            .retention_policy()
            .map_err(|message| ConfigError::Invalid {
                path: path.clone(),
                message,
            })?;
        if let Err(message) = config.check_store_table() {
            return Err(ConfigError::Invalid { path, message });
        }
        if let Err(message) = config.check_policies_apply(&text) {
            return Err(ConfigError::Invalid { path, message });
        }
        // Missing S3 keys are a mistake in the settings, said before any request is made
        // (object_store would otherwise ask the instance-metadata endpoint and fail with
        // its HTTP error).
        let buckets = [
            config.remote.as_ref().map(|r| ("remote", &r.bucket)),
            match &config.store {
                Some(StoreSetting::Table(t)) => t.s3.as_ref().map(|b| ("store.s3", b)),
                _ => None,
            },
        ];
        for (section, bucket) in buckets.into_iter().flatten() {
            if let Err(message) = bucket.credentials(section) {
                return Err(ConfigError::Invalid { path, message });
            }
        }
        if let Some(file) = config.identity_file(state_dir) {
            // Whoever can read it reads every encrypted backup; whoever can replace it decides
            // what a drill believes: the rules of the backup key (docs/security.md).
            let problem = match std::fs::symlink_metadata(&file) {
                Ok(meta) => aps_controller::backup_key::private_file_problem(&file, &meta),
                Err(e) => Err(format!("it cannot be read: {e}")),
            };
            if let Err(problem) = problem {
                return Err(ConfigError::Invalid {
                    path,
                    message: format!(
                        "{}identity-file {file}: {problem}",
                        aps_controller::registry::validate::line_of_key(&text, "", "identity-file")
                            .map(|n| format!("line {n}: "))
                            .unwrap_or_default()
                    ),
                });
            }
        }
        if let Some(problems) = config.notify.as_ref().map(NotifyConfig::problems)
            && !problems.is_empty()
        {
            return Err(ConfigError::Invalid {
                path,
                message: problems.join("; "),
            });
        }
        if config.jobs == Some(0) {
            return Err(ConfigError::Invalid {
                path,
                message: "jobs must be at least 1".to_owned(),
            });
        }
        // Checked as the archive writer will parse them, so a bad key stops every command
        // before any backup starts (not each instance's backup at its own step).
        if let Err(e) = aps_controller::archive::check_recipients(&config.age_recipients) {
            return Err(ConfigError::Invalid {
                path,
                message: format!(
                    "age-recipients: {e} (an age public key, age1…; `aps-controller key generate` makes a pair)"
                ),
            });
        }
        Ok(config)
    }

    /// `identity-file`, resolved against the state folder.
    pub fn identity_file(&self, state_dir: &Utf8Path) -> Option<Utf8PathBuf> {
        self.identity_file.as_ref().map(|f| state_dir.join(f))
    }

    /// How the controller packs an archive file, as panel.toml says.
    pub fn archive_choice(&self) -> crate::engine::ArchiveChoice {
        crate::engine::ArchiveChoice {
            compression: self.compression,
            age_recipients: self.age_recipients.clone(),
        }
    }

    pub fn archive_format(&self) -> ArchiveFormat {
        ArchiveFormat {
            compression: self.compression,
            encrypted: !self.age_recipients.is_empty(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::retention::RetentionPolicy;

    pub(crate) fn load(text: &str) -> Result<PanelConfig, ConfigError> {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        std::fs::write(dir.join(FILE_NAME), text).unwrap();
        PanelConfig::load(dir)
    }

    #[test]
    fn missing_file_is_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let c = PanelConfig::load(dir).unwrap();
        assert_eq!(c.store_dir(dir), dir.join("backups"));
        assert_eq!(c.archive_format().extension(), ".aps.tar.zst");
        assert_eq!(c.retention_policy().unwrap(), RetentionPolicy::default());
    }

    #[test]
    fn rejects_mistakes_naming_the_file() {
        for (text, needle) in [
            ("compresion = \"gzip\"", "unknown key `compresion`"),
            ("compression = \"xz\"", "unknown variant"),
            (
                "[retention]\nkeep-within = \"soon\"",
                "keep-within \"soon\"",
            ),
            ("jobs = 0", "jobs must be at least 1"),
            (
                "age-recipients = [\"ssh-ed25519 AAA\"]",
                "age-recipients: invalid age recipient",
            ),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(
                err.contains(FILE_NAME) && err.contains(needle),
                "{text}: {err}"
            );
        }
    }
}
