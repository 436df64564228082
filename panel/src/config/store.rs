//! panel.toml's `[store]` (or `store = "folder"`): which kind of store, where it is, and the
//! keys that do not apply to the kind chosen.

use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

use super::{PanelConfig, S3Bucket};

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
    /// Repository only: the host name written into this controller's snapshots, and the only
    /// host whose snapshots it lists, restores, keeps and forgets (servers sharing one
    /// repository each set their own). Default: the machine's host name, as restic's.
    pub host: Option<String>,
    /// Repository only: how long a prune waits for running backups (and a backup for a
    /// running prune) to release the repository's lock before it refuses, e.g. `"10m"`.
    pub lock_wait: Option<String>,
}

/// How long a prune waits for the backups holding the repository's lock, and a backup for a
/// prune, when panel.toml's `lock-wait` does not say.
pub const DEFAULT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// `lock-wait` as a duration: a non-negative one such as `"10m"` or `"90s"`.
fn parse_lock_wait(text: &str) -> Result<std::time::Duration, String> {
    text.parse::<jiff::SignedDuration>()
        .ok()
        .and_then(|d| std::time::Duration::try_from(d).ok())
        .ok_or_else(|| format!("store: lock-wait {text:?} is not a duration such as \"10m\""))
}

/// What a repository shared by several servers needs from each: its name in the snapshots
/// and how long it waits for the others' locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sharing {
    /// `None`: the machine's host name.
    pub host: Option<String>,
    pub lock_wait: std::time::Duration,
}

impl Default for Sharing {
    fn default() -> Self {
        Sharing {
            host: None,
            lock_wait: DEFAULT_LOCK_WAIT,
        }
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
    pub sharing: Sharing,
}

impl PanelConfig {
    /// The `[store]` keys that do not go together: a repository's keys with the archive store,
    /// a folder and a bucket for one repository.
    pub(super) fn check_store_table(&self) -> Result<(), String> {
        let Some(StoreSetting::Table(t)) = &self.store else {
            return Ok(());
        };
        if t.kind == StoreKind::Archive
            && (t.key_file.is_some()
                || t.password_file.is_some()
                || t.s3.is_some()
                || t.host.is_some()
                || t.lock_wait.is_some())
        {
            return Err(
                "store: key-file, password-file, host, lock-wait and [store.s3] belong to \
                 kind = \"repository\""
                    .to_owned(),
            );
        }
        if let Some(host) = &t.host
            && (host.trim().is_empty() || host.chars().any(char::is_control))
        {
            return Err(format!("store: host {host:?} must be a non-empty name"));
        }
        if let Some(wait) = &t.lock_wait {
            parse_lock_wait(wait)?;
        }
        if t.s3.is_some() && t.path.is_some() {
            return Err(
                "store: a repository is either in the folder `path` or in [store.s3], not both"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// With the repository store, the keys that would only act on archive files the store
    /// never makes: refused with what to do instead, so that no promise of panel.toml (an
    /// off-site copy, encryption) is dropped silently. `compression` stays: it still packs
    /// `backup --to FILE` archives, and the repository compresses by itself.
    pub(super) fn check_policies_apply(&self, text: &str) -> Result<(), String> {
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
            sharing: Sharing {
                host: t.and_then(|t| t.host.clone()),
                // Checked when panel.toml was read (`check_store_table`).
                lock_wait: t
                    .and_then(|t| t.lock_wait.as_deref())
                    .and_then(|w| parse_lock_wait(w).ok())
                    .unwrap_or(DEFAULT_LOCK_WAIT),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::load;

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
}
