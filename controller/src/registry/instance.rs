//! The instance record: everything the controller keeps about one installed instance.

use std::collections::BTreeMap;

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
