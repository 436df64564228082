//! `<state>/panel.toml`: the panel's choices — where backups go, how they are packed, how many
//! are kept, and the optional off-machine copy. Every key is optional; a missing file means
//! all defaults. The shape is documented in docs/policies.md.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use jiff::SignedDuration;
use serde::Deserialize;

use aps_controller::registry::validate::{keys_of, unknown_key};

use crate::naming::{ArchiveFormat, Compression};
use crate::periodicity::Periodicity;
use crate::retention::{DEFAULT_KEEP, KeepRules, RetentionPolicy};

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
}

/// `store = "folder"` (the archive store in that folder) or a `[store]` table.
#[derive(Debug, Clone)]
// Read once per command: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum StoreSetting {
    Folder(Utf8PathBuf),
    Table(StoreTable),
}

impl<'de> Deserialize<'de> for StoreSetting {
    /// A table's own error (`missing field `bucket``), not serde's "did not match any variant".
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Folder(Utf8PathBuf),
            Table(toml::Table),
        }
        match Raw::deserialize(d)? {
            Raw::Folder(p) => Ok(StoreSetting::Folder(p)),
            Raw::Table(t) => StoreTable::deserialize(toml::Value::Table(t))
                .map(StoreSetting::Table)
                .map_err(|e| serde::de::Error::custom(format!("[store]: {}", e.message()))),
        }
    }
}

/// `[store]`: which kind of store `run` and `backup` write into, and where.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StoreTable {
    #[serde(default)]
    pub kind: StoreKind,
    /// The archive folder (kind `archive`, default `backups`) or the repository's folder
    /// (kind `repository`, default `repository`).
    pub path: Option<Utf8PathBuf>,
    /// Repository only: the master key that `store init` writes (mode 0600); opening the
    /// repository with it skips the password's key derivation. Default `repository.key`.
    pub key_file: Option<Utf8PathBuf>,
    /// Repository only: the password `store init` writes (mode 0600), for the `restic` tool
    /// and for a person. Default `repository.password`.
    pub password_file: Option<Utf8PathBuf>,
    /// Repository only: `[store.s3]`, the repository in an S3-compatible bucket instead of
    /// the folder `path`.
    pub s3: Option<S3Bucket>,
}

/// A prefix of an S3-compatible bucket and the credentials to reach it: `[store.s3]` (where
/// the repository lives) and the bucket keys of `[remote]`. Unknown keys are refused by
/// [`unknown_keys`] before these tables are read (serde's own refusal cannot be combined with
/// `[remote]` flattening this table into its own).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct S3Bucket {
    /// `https://s3.example.com`; absent means AWS itself.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Key prefix inside the bucket, e.g. `host1/` or `host1/repository`.
    #[serde(default)]
    pub prefix: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// Else the environment's `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// A file holding the secret key (kept out of panel.toml); else `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key_file: Option<Utf8PathBuf>,
    /// Take the credentials from the cloud machine's instance-metadata endpoint (EC2's
    /// `169.254.169.254`) when no key is given. Off by default: without it, missing keys are
    /// refused before any request instead of asking an endpoint most hosts do not have.
    #[serde(default)]
    pub use_instance_metadata: bool,
}

/// The keys an S3 client signs with, as [`S3Bucket::credentials`] resolved them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Credentials {
    Keys {
        access_key_id: String,
        secret_access_key: String,
    },
    /// `use-instance-metadata = true` and no key given: the client asks the endpoint.
    InstanceMetadata,
}

impl S3Bucket {
    /// `""` or `a/b/`: what every object key of the repository starts with.
    pub fn key_prefix(&self) -> String {
        let p = self.prefix.trim_matches('/');
        if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        }
    }

    /// The key id (`access-key-id`, else `AWS_ACCESS_KEY_ID`) and the secret
    /// (`secret-access-key-file`, else `AWS_SECRET_ACCESS_KEY`), checked before any request:
    /// a missing, unreadable or empty one is refused naming the key of `section` (`remote` or
    /// `store.s3`) to set.
    pub fn credentials(&self, section: &str) -> Result<S3Credentials, String> {
        let env = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let id = match &self.access_key_id {
            Some(id) if id.trim().is_empty() => {
                return Err(format!("[{section}] access-key-id is empty"));
            }
            Some(id) => Some(id.trim().to_owned()),
            None => env("AWS_ACCESS_KEY_ID"),
        };
        let secret = match &self.secret_access_key_file {
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    format!("[{section}] secret-access-key-file {file} cannot be read: {e}")
                })?;
                let text = text.trim();
                if text.is_empty() {
                    return Err(format!(
                        "[{section}] secret-access-key-file {file} is empty; put the secret \
                         access key in it"
                    ));
                }
                Some(text.to_owned())
            }
            None => env("AWS_SECRET_ACCESS_KEY"),
        };
        match (id, secret) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(S3Credentials::Keys {
                access_key_id,
                secret_access_key,
            }),
            (None, None) if self.use_instance_metadata => Ok(S3Credentials::InstanceMetadata),
            (None, _) => Err(format!(
                "no access key given for {}: set access-key-id in [{section}] of panel.toml \
                 (or AWS_ACCESS_KEY_ID in the environment){}",
                self.describe(),
                if self.use_instance_metadata {
                    ", together with the secret"
                } else {
                    "; on a cloud machine whose instance-metadata endpoint hands out \
                     credentials, set use-instance-metadata = true instead"
                }
            )),
            (Some(_), None) => Err(format!(
                "no secret access key given for {}: set secret-access-key-file in [{section}] \
                 of panel.toml to a file holding it (or AWS_SECRET_ACCESS_KEY in the environment)",
                self.describe()
            )),
        }
    }

    /// `s3://bucket/prefix/`, for messages and reports.
    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key_prefix())
    }
}

/// Where the repository store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryLocation {
    /// A folder of this machine.
    Folder(Utf8PathBuf),
    /// A prefix of an S3-compatible bucket.
    S3(S3Bucket),
}

impl RepositoryLocation {
    /// The folder, or `s3://bucket/prefix/`.
    pub fn describe(&self) -> String {
        match self {
            RepositoryLocation::Folder(p) => p.to_string(),
            RepositoryLocation::S3(s3) => s3.describe(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// One archive file per backup (the default, and the format of `--to FILE`).
    #[default]
    Archive,
    /// A deduplicating restic-format repository (see docs/policies.md).
    Repository,
}

/// Where the repository store lives, resolved against the state folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySettings {
    pub location: RepositoryLocation,
    pub key_file: Utf8PathBuf,
    pub password_file: Utf8PathBuf,
}

/// Keep counts; at the top level they apply to every instance, under `instances.<name>` they
/// override them for one instance. Precedence for a periodicity P of instance I:
/// `instances.I.P` > `instances.I.keep` > `P` > `keep` > 7.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KeepConfig {
    pub keep: Option<usize>,
    pub hourly: Option<usize>,
    pub daily: Option<usize>,
    pub weekly: Option<usize>,
    pub monthly: Option<usize>,
    pub bimonthly: Option<usize>,
    pub shutdown: Option<usize>,
    pub manual: Option<usize>,
    /// Also keep every backup younger than this (`"48h"`, `"90m"`, ISO 8601 `"PT48H"`).
    pub keep_within: Option<String>,
}

impl KeepConfig {
    fn get(&self, p: Periodicity) -> Option<usize> {
        match p {
            Periodicity::Hourly => self.hourly,
            Periodicity::Daily => self.daily,
            Periodicity::Weekly => self.weekly,
            Periodicity::Monthly => self.monthly,
            Periodicity::Bimonthly => self.bimonthly,
            Periodicity::Shutdown => self.shutdown,
            Periodicity::Manual => self.manual,
            Periodicity::All => None,
        }
    }
}

/// `[retention]`: the keep counts of every instance, and `instances.<name>` overriding them.
/// Two flattened parts, so that [`unknown_keys`] can list the keys of each from its struct.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RetentionConfig {
    #[serde(flatten)]
    pub all: KeepConfig,
    #[serde(flatten)]
    pub overrides: InstanceOverrides,
}

/// `[retention.instances.<name>]`: one instance's keep counts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InstanceOverrides {
    #[serde(default)]
    pub instances: BTreeMap<String, KeepConfig>,
}

/// An S3-compatible bucket that receives a copy of every backup. Unknown keys: as for
/// [`S3Bucket`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RemoteConfig {
    #[serde(flatten)]
    pub bucket: S3Bucket,
    #[serde(flatten)]
    pub upload: UploadSizes,
}

/// `[remote]`'s own keys besides the bucket's: how big the upload's parts are.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct UploadSizes {
    /// Files at least this big are uploaded in parts.
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold_mib: u64,
    #[serde(default = "default_part_size")]
    pub part_size_mib: u64,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}
fn default_multipart_threshold() -> u64 {
    64
}
fn default_part_size() -> u64 {
    16
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

/// Every key panel.toml does not know, as `line N: unknown key …; did you mean …? valid keys:
/// …`. Syntax errors are left to the typed parse that follows.
fn unknown_keys(text: &str) -> Vec<String> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    // Each table's valid keys are its struct's fields (a flattened struct's, part by part).
    let keep_keys = keys_of::<KeepConfig>();
    let s3_bucket_keys = keys_of::<S3Bucket>();
    let mut problems = Vec::new();
    let mut check = |section: &str, table: &toml::Table, valid: &[&str]| {
        for key in table.keys() {
            if !valid.contains(&key.as_str()) {
                problems.push(unknown_key(text, section, key, valid));
            }
        }
    };
    check("", &table, keys_of::<PanelConfig>());
    if let Some(toml::Value::Table(retention)) = table.get("retention") {
        check(
            "retention",
            retention,
            &[keep_keys, keys_of::<InstanceOverrides>()].concat(),
        );
        if let Some(toml::Value::Table(instances)) = retention.get("instances") {
            for (name, over) in instances {
                if let toml::Value::Table(over) = over {
                    check(&format!("retention.instances.{name}"), over, keep_keys);
                }
            }
        }
    }
    if let Some(toml::Value::Table(store)) = table.get("store") {
        check("store", store, keys_of::<StoreTable>());
        if let Some(toml::Value::Table(s3)) = store.get("s3") {
            check("store.s3", s3, s3_bucket_keys);
        }
    }
    if let Some(toml::Value::Table(remote)) = table.get("remote") {
        check(
            "remote",
            remote,
            &[s3_bucket_keys, keys_of::<UploadSizes>()].concat(),
        );
    }
    problems
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
        let unknown = unknown_keys(&text);
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
        if let Some(StoreSetting::Table(t)) = &config.store
            && t.kind == StoreKind::Archive
            && (t.key_file.is_some() || t.password_file.is_some() || t.s3.is_some())
        {
            return Err(ConfigError::Invalid {
                path,
                message: "store: key-file, password-file and [store.s3] belong to kind = \
                          \"repository\""
                    .to_owned(),
            });
        }
        if let Some(StoreSetting::Table(t)) = &config.store
            && t.s3.is_some()
            && t.path.is_some()
        {
            return Err(ConfigError::Invalid {
                path,
                message: "store: a repository is either in the folder `path` or in [store.s3], \
                          not both"
                    .to_owned(),
            });
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

    /// With the repository store, the keys that would only act on archive files the store
    /// never makes: refused with what to do instead, so that no promise of panel.toml (an
    /// off-site copy, encryption) is dropped silently. `compression` stays: it still packs
    /// `backup --to FILE` archives, and the repository compresses by itself.
    fn check_policies_apply(&self, text: &str) -> Result<(), String> {
        if self.store_kind() != StoreKind::Repository {
            return Ok(());
        }
        let at = |section: &str, key: &str| {
            aps_controller::registry::validate::line_of_key(text, section, key)
                .map(|n| format!("line {n}: "))
                .unwrap_or_default()
        };
        let mut problems = Vec::new();
        if self.remote.is_some() {
            let line = text
                .lines()
                .position(|l| l.trim().starts_with("[remote]"))
                .map(|n| format!("line {}: ", n + 1))
                .unwrap_or_default();
            problems.push(format!(
                "{line}[remote] does not apply to the repository store: it receives a copy of \
                 each archive file, and the repository store makes none, so nothing would ever \
                 be uploaded. For an off-site copy put the repository itself in the bucket with \
                 [store.s3] (bucket, prefix, endpoint, region, access-key-id, \
                 secret-access-key-file: the keys [remote] has; docs/repository.md), or keep \
                 the archive store"
            ));
        }
        if !self.age_recipients.is_empty() {
            problems.push(format!(
                "{}age-recipients does not apply to the repository store: the repository \
                 encrypts every snapshot itself, with the key in its key-file (keep a copy of \
                 it off the machine; docs/repository.md). Remove age-recipients; to encrypt an \
                 archive written with `backup NAME --to FILE`, give --recipient AGE1…",
                at("", "age-recipients")
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// `identity-file`, resolved against the state folder.
    pub fn identity_file(&self, state_dir: &Utf8Path) -> Option<Utf8PathBuf> {
        self.identity_file.as_ref().map(|f| state_dir.join(f))
    }

    /// The archive store's folder (also used beside a repository, e.g. by `--to` defaults).
    pub fn store_dir(&self, state_dir: &Utf8Path) -> Utf8PathBuf {
        match &self.store {
            Some(StoreSetting::Folder(p)) => state_dir.join(p),
            Some(StoreSetting::Table(StoreTable {
                kind: StoreKind::Archive,
                path: Some(p),
                ..
            })) => state_dir.join(p),
            _ => state_dir.join("backups"),
        }
    }

    /// Whether panel.toml names the archive store's folder (which must then exist).
    pub fn archive_store_named(&self) -> bool {
        matches!(
            &self.store,
            Some(StoreSetting::Folder(_))
                | Some(StoreSetting::Table(StoreTable {
                    kind: StoreKind::Archive,
                    path: Some(_),
                    ..
                }))
        )
    }

    pub fn store_kind(&self) -> StoreKind {
        match &self.store {
            Some(StoreSetting::Table(t)) => t.kind,
            _ => StoreKind::Archive,
        }
    }

    /// The repository store's settings when `[store] kind = "repository"`, else `None`.
    pub fn repository(&self, state_dir: &Utf8Path) -> Option<RepositorySettings> {
        (self.store_kind() == StoreKind::Repository).then(|| self.repository_settings(state_dir))
    }

    /// Where the repository store is, and its key files, resolved against the state folder.
    pub fn repository_settings(&self, state_dir: &Utf8Path) -> RepositorySettings {
        let t = match &self.store {
            Some(StoreSetting::Table(t)) => Some(t),
            _ => None,
        };
        let at = |p: Option<&Utf8PathBuf>, default: &str| match p {
            Some(p) => state_dir.join(p),
            None => state_dir.join(default),
        };
        RepositorySettings {
            location: match t.and_then(|t| t.s3.as_ref()) {
                Some(s3) => RepositoryLocation::S3(s3.clone()),
                None => {
                    RepositoryLocation::Folder(at(t.and_then(|t| t.path.as_ref()), "repository"))
                }
            },
            key_file: at(t.and_then(|t| t.key_file.as_ref()), "repository.key"),
            password_file: at(
                t.and_then(|t| t.password_file.as_ref()),
                "repository.password",
            ),
        }
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

    /// Resolves the keep counts of every configured instance (others use `default`).
    pub fn retention_policy(&self) -> Result<RetentionPolicy, String> {
        let top = &self.retention.all;
        let resolve = |over: Option<&KeepConfig>| -> Result<KeepRules, String> {
            let keep = Periodicity::COUNTED
                .into_iter()
                .map(|p| {
                    let n = over
                        .and_then(|o| o.get(p).or(o.keep))
                        .or(top.get(p))
                        .or(top.keep)
                        .unwrap_or(DEFAULT_KEEP);
                    (p, n)
                })
                .collect();
            let within = over
                .and_then(|o| o.keep_within.as_deref())
                .or(top.keep_within.as_deref());
            let within = within
                .map(|w| {
                    w.parse::<SignedDuration>()
                        .ok()
                        .filter(|d| !d.is_negative())
                        .ok_or_else(|| {
                            format!("keep-within {w:?} is not a duration such as \"48h\"")
                        })
                })
                .transpose()?;
            Ok(KeepRules { keep, within })
        };
        let mut instances = BTreeMap::new();
        for (name, over) in &self.retention.overrides.instances {
            instances.insert(
                name.clone(),
                resolve(Some(over)).map_err(|m| format!("instances.{name}: {m}"))?,
            );
        }
        Ok(RetentionPolicy {
            default: resolve(None)?,
            instances,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<PanelConfig, ConfigError> {
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
    fn precedence_of_keep_counts() {
        let c = load(
            r#"
            compression = "gzip"
            age-recipients = ["age1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5z5tpwxqergd3c8g7rusqmwn7f2"]
            [retention]
            keep = 3
            daily = 10
            keep-within = "48h"
            [retention.instances.blog]
            keep = 5
            weekly = 1
            "#,
        )
        .unwrap();
        assert_eq!(c.archive_format().extension(), ".aps.tar.gz.age");
        let p = c.retention_policy().unwrap();
        assert_eq!(p.default.keep_for(Periodicity::Daily), 10);
        assert_eq!(p.default.keep_for(Periodicity::Hourly), 3);
        assert_eq!(p.default.within, Some(SignedDuration::from_hours(48)));
        let blog = p.for_instance("blog");
        assert_eq!(blog.keep_for(Periodicity::Weekly), 1);
        assert_eq!(
            blog.keep_for(Periodicity::Daily),
            5,
            "instance keep beats global daily"
        );
        assert_eq!(blog.within, Some(SignedDuration::from_hours(48)));
        assert_eq!(p.for_instance("shop"), &p.default);
    }

    #[test]
    fn store_folder_or_table() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let c = load("store = \"elsewhere\"").unwrap();
        assert_eq!(c.store_dir(dir), dir.join("elsewhere"));
        assert_eq!(c.store_kind(), StoreKind::Archive);
        assert_eq!(c.repository(dir), None);
        let c = load("[store]\nkind = \"repository\"\npath = \"/srv/repo\"").unwrap();
        assert_eq!(c.store_kind(), StoreKind::Repository);
        assert_eq!(c.store_dir(dir), dir.join("backups"));
        let r = c.repository(dir).unwrap();
        assert_eq!(r.location, RepositoryLocation::Folder("/srv/repo".into()));
        assert_eq!(r.key_file, dir.join("repository.key"));
        assert_eq!(r.password_file, dir.join("repository.password"));
        let c = load("[store]\npath = \"arch\"").unwrap();
        assert_eq!(c.store_dir(dir), dir.join("arch"));
        assert!(load("[store]\nkind = \"borg\"").is_err());
        let err = load("[store]\nkey-file = \"k\"").unwrap_err().to_string();
        assert!(err.contains("kind = \"repository\""), "{err}");
        let err = load("[store]\nkind = \"repository\"\nkeyfile = \"k\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown key `keyfile` in [store]; did you mean `key-file`?"),
            "{err}"
        );
    }

    #[test]
    fn repository_in_a_bucket() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let c = load(
            "[store]\nkind = \"repository\"\n[store.s3]\nendpoint = \"http://127.0.0.1:9000\"\n\
             bucket = \"b\"\nprefix = \"/host1/repo/\"\n\
             use-instance-metadata = true\n",
        )
        .unwrap();
        let r = c.repository(dir).unwrap();
        let RepositoryLocation::S3(s3) = &r.location else {
            panic!("{r:?}")
        };
        assert_eq!(s3.key_prefix(), "host1/repo/");
        assert_eq!(s3.region, "us-east-1");
        assert_eq!(r.location.describe(), "s3://b/host1/repo/");
        assert_eq!(r.key_file, dir.join("repository.key"), "keys stay local");
        for (text, needle) in [
            (
                "[store]\nkind = \"repository\"\npath = \"r\"\n[store.s3]\nbucket = \"b\"\n",
                "not both",
            ),
            (
                "[store.s3]\nbucket = \"b\"\n",
                "belong to kind = \"repository\"",
            ),
            (
                "[store]\nkind = \"repository\"\n[store.s3]\nbucket = \"b\"\nsecret = \"x\"\n",
                "unknown key `secret` in [store.s3]",
            ),
            ("[store]\nkind = \"repository\"\n[store.s3]\n", "bucket"),
            (
                "[store]\nkind = \"repository\"\n[store.s3]\nbucket = \"b\"\n",
                "no access key given for s3://b/: set access-key-id in [store.s3]",
            ),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn every_unknown_key_at_once_with_line_and_the_valid_keys() {
        let err = load(
            "compresion = \"gzip\"\n[retention]\ndayly = 3\n[retention.instances.blog]\nkeep = 1\nweeky = 2\n",
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "line 1: unknown key `compresion` at the top level; did you mean `compression`?",
            "line 3: unknown key `dayly` in [retention]; did you mean `daily`?",
            "line 6: unknown key `weeky` in [retention.instances.blog]; did you mean `weekly`?",
            "valid keys there: keep, hourly, daily",
        ] {
            assert!(err.contains(needle), "{needle}\n{err}");
        }
    }

    /// The valid keys a message lists are the struct's own fields, in their order: a field
    /// added to a struct is accepted, and listed, without any other list to update.
    #[test]
    fn valid_keys_are_the_structs_fields() {
        #[derive(Deserialize)]
        #[serde(rename_all = "kebab-case")]
        #[allow(dead_code)]
        struct Grown {
            keep: Option<usize>,
            a_new_field: Option<usize>,
        }
        assert_eq!(keys_of::<Grown>(), ["keep", "a-new-field"]);
        assert_eq!(
            keys_of::<PanelConfig>(),
            [
                "store",
                "compression",
                "age-recipients",
                "identity-file",
                "jobs",
                "retention",
                "remote"
            ]
        );
        assert_eq!(
            keys_of::<StoreTable>().join(", "),
            "kind, path, key-file, password-file, s3"
        );
        for (text, valid) in [
            (
                "[store]
kind = \"archive\"
kid = 1
",
                keys_of::<StoreTable>().to_vec(),
            ),
            (
                "[retention]
keep = 1
kep = 1
",
                [keys_of::<KeepConfig>(), keys_of::<InstanceOverrides>()].concat(),
            ),
            (
                "[remote]
bucket = \"b\"
buckt = 1
",
                [keys_of::<S3Bucket>(), keys_of::<UploadSizes>()].concat(),
            ),
        ] {
            let err = load(text).unwrap_err().to_string();
            let listed = format!("(valid keys there: {})", valid.join(", "));
            assert!(err.ends_with(&listed), "{text}: {err}");
        }
        // A flattened struct is read as a map: its keys are listed part by part instead.
        assert!(keys_of::<RetentionConfig>().is_empty());
        assert!(keys_of::<RemoteConfig>().is_empty());
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
