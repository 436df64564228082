//! Database resources of an instance and the controller's own backup of them: dumps with the
//! servers' own tools (`mysqldump`/`mysql`, `pg_dump`/`psql`), run against real servers.

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The server kind of a database resource (`type` in INSTANCE.toml, `DB_<id>_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    /// MySQL or MariaDB.
    Mysql,
    Postgresql,
}

impl DbKind {
    /// The value of `DB_<id>_TYPE`, as the standard's `db:server-type` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DbKind::Mysql => "mysql",
            DbKind::Postgresql => "postgresql",
        }
    }
}

/// One database resource of an instance: what `DB_<id>_*` variables carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Database {
    #[serde(rename = "type")]
    pub kind: DbKind,
    pub name: String,
    pub login: String,
    pub password: Secret,
    pub host: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Table prefix (`DB_<id>_PREFIX`), only when the requirement allows prefixes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}
