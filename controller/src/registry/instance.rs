//! The instance record: everything the controller keeps about one installed instance.

use std::collections::{BTreeMap, BTreeSet};

use camino::Utf8PathBuf;
use serde::{Deserialize, Serialize};

use crate::database::Database;

/// A registered instance. Paths are absolute once registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Instance {
    /// `[a-z0-9][a-z0-9._-]{0,62}`.
    pub name: String,
    /// The package as registered: a folder or a `.app.zip`, absolute.
    pub package: Utf8PathBuf,
    pub base_url: BaseUrl,
    /// url-mapping full URL path (`/`, `/cache`) → absolute folder (or file, for file mappings).
    pub web_dirs: BTreeMap<String, Utf8PathBuf>,
    /// Setting id → value (service and global settings).
    pub settings: BTreeMap<String, SettingValue>,
    /// db requirement id (case kept) → database resource.
    pub databases: BTreeMap<String, Database>,
    /// Settings the package declares `type="password"` (or a list of them): their values are
    /// kept in the private secrets file, not the record, and never shown.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub secret_settings: BTreeSet<String>,
    /// The system account the instance's work runs as: `user` of INSTANCE.toml, else the
    /// owner of the root web folder, recorded at registration (a name, or a uid without one).
    /// `None` only in records made before accounts were recorded: then the owner of the root
    /// web folder is read at each operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The group of INSTANCE.toml, if it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `role = "staging"` of INSTANCE.toml: an instance drills restore into, which `run` leaves
    /// out when it backs up every instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Whether `configure disable` switched the instance off. Records made before the status
    /// was recorded hold none and read as enabled; an enabled record stores none either.
    #[serde(default, skip_serializing_if = "InstanceStatus::is_enabled")]
    pub status: InstanceStatus,
    /// What an install by this controller made, which a removal takes away (and nothing
    /// else). `None` for an instance registered from INSTANCE.toml (or installed before the
    /// record said it): the controller made nothing of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<Installed>,
}

/// Whether an instance serves its users, as its package's `configure enable|disable` last
/// left it (only packages with `status-control` can be disabled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceStatus {
    #[default]
    Enabled,
    Disabled,
}

impl InstanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Enabled => "enabled",
            InstanceStatus::Disabled => "disabled",
        }
    }

    pub fn is_enabled(&self) -> bool {
        *self == InstanceStatus::Enabled
    }
}

/// What an install made: the top-level names it put into the root web folder, whether it
/// made that folder, and the databases and users it created (an `existing:` one is not here).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Installed {
    /// The root web folder did not exist and the install made it.
    #[serde(default)]
    pub web_root_created: bool,
    /// The names the install made directly in the root web folder.
    #[serde(default)]
    pub top_level: Vec<String>,
    /// db requirement id → the database and user it created (no password).
    #[serde(default)]
    pub created_databases: BTreeMap<String, crate::database::CreatedDatabase>,
}

/// What an instance is for, when it is not an ordinary one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A copy that drills (and migrations) overwrite: backing it up would only fill the store.
    Staging,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Staging => "staging",
        }
    }
}

impl Instance {
    /// Whether INSTANCE.toml marked it `role = "staging"`.
    pub fn is_staging(&self) -> bool {
        self.role == Some(Role::Staging)
    }

    /// The root web folder: the `/` mapping's, else the first mapping's (by URL).
    pub fn root_web_dir(&self) -> Option<&Utf8PathBuf> {
        self.web_dirs
            .get("/")
            .or_else(|| self.web_dirs.values().next())
    }

    /// The web folders the controller archives: every mapping's folder except those inside another
    /// mapping's folder (a child mapping's folder usually sits in its parent's, which already holds
    /// it; archiving it twice would also restore it twice).
    pub fn archived_web_dirs(&self) -> Vec<(&String, &Utf8PathBuf)> {
        let dirs = &self.web_dirs;
        dirs.iter()
            .filter(|(url, dir)| {
                !dirs.iter().any(|(other_url, other)| {
                    other_url != *url && dir.starts_with(other) && *dir != other
                })
            })
            .collect()
    }
}

/// The instance's base URL, split as `BASE_URL_*` needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseUrl {
    /// `http` or `https`.
    pub scheme: String,
    pub host: String,
    /// Only when the URL names a port.
    pub port: Option<u16>,
    /// Path under the host, as the URL has it: `/` for the site root, `/blog/` otherwise.
    pub path: String,
}

/// A setting value: one string, or the elements of a `list` setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SettingValue {
    Single(String),
    List(Vec<String>),
}

/// Why a base URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("base-url {url:?}: {reason}")]
pub struct BaseUrlError {
    pub url: String,
    pub reason: String,
}

impl BaseUrl {
    /// Parses `http[s]://host[:port][/path]`. The path is normalised to start and end with `/`
    /// (so `BASE_URL_PATH` can be derived without guessing); query, fragment and user info are
    /// refused because no `BASE_URL_*` variable could carry them.
    pub fn parse(url: &str) -> Result<Self, BaseUrlError> {
        let err = |reason: &str| BaseUrlError {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| err("expected scheme://host/path"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(err("scheme must be http or https"));
        }
        if rest.contains(['?', '#']) {
            return Err(err("query and fragment are not allowed"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(err("user info is not allowed"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| err("unclosed [ in IPv6 host"))?;
            if h.is_empty()
                || !h
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            {
                return Err(err("invalid IPv6 host"));
            }
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| err("junk after IPv6 host"))?,
                ),
            };
            (format!("[{}]", h.to_ascii_lowercase()), port)
        } else {
            let (h, p) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            let valid = !h.is_empty()
                && h.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                });
            if !valid {
                return Err(err("invalid host name"));
            }
            (h.to_ascii_lowercase(), p)
        };
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| err("port must be a number from 1 to 65535"))?,
            ),
        };
        // Empty segments are folded so `/blog//` and `/blog` both become `/blog/`.
        let mut norm = String::from("/");
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            if seg == "." || seg == ".." {
                return Err(err("path must not contain . or .. segments"));
            }
            if seg.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(err("path must not contain spaces or control characters"));
            }
            norm.push_str(seg);
            norm.push('/');
        }
        Ok(BaseUrl {
            scheme,
            host,
            port,
            path: norm,
        })
    }
}

impl std::fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        f.write_str(&self.path)
    }
}

/// Whether `name` is a valid instance name: `[a-z0-9][a-z0-9._-]{0,62}`. It becomes a file
/// name in the state folder, hence the strict rule (no `/`, no leading dot).
pub fn is_valid_instance_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_is_normalised() {
        let u = BaseUrl::parse("HTTP://Example.TEST:8080/blog").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.host.as_str(), u.port, u.path.as_str()),
            ("http", "example.test", Some(8080), "/blog/")
        );
        assert_eq!(u.to_string(), "http://example.test:8080/blog/");
        assert_eq!(BaseUrl::parse("https://a.b").unwrap().path, "/");
        assert_eq!(
            BaseUrl::parse("https://[::1]:443//x//y")
                .unwrap()
                .to_string(),
            "https://[::1]:443/x/y/"
        );
        for bad in [
            "ftp://a/",
            "a/b",
            "http://",
            "http://a:0/",
            "http://a:99999/",
            "http://u@a/",
            "http://a/?q",
            "http://a/../",
            "http://-a/",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn instance_names() {
        for ok in ["a", "blog", "0x", "my.blog_2-b", &"a".repeat(63)] {
            assert!(is_valid_instance_name(ok), "{ok}");
        }
        for bad in ["", "Blog", ".a", "-a", "a/b", "a b", &"a".repeat(64), "é"] {
            assert!(!is_valid_instance_name(bad), "{bad}");
        }
    }
}
