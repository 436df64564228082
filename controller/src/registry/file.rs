//! INSTANCE.toml: the file a person (or a panel) writes to register an instance.
//!
//! Parsing only checks the shape (TOML syntax, known keys, value types) and resolves relative
//! paths; everything that needs the package is checked by [`super::validate`], so that all
//! problems of a file can be reported together.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};

use crate::paths::normalize;
use serde::Deserialize;

use crate::database::{Database, DbKind};
use crate::secret::Secret;

/// A parsed INSTANCE.toml, paths resolved, not yet checked against its package.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceFile {
    pub name: String,
    /// Absolute when the file had a folder to resolve against, else as written.
    pub package: Utf8PathBuf,
    /// As written; parsed by validation so its error joins the others.
    pub base_url: String,
    pub web_dirs: BTreeMap<String, Utf8PathBuf>,
    /// Setting id → TOML value as written; converted by validation.
    pub settings: BTreeMap<String, toml::Value>,
    pub databases: BTreeMap<String, Database>,
    /// The system account the instance's scripts and tools run as (a user name, or a uid);
    /// when absent, the owner of the root web folder at registration.
    pub user: Option<String>,
    /// Its group instead of the user's primary group.
    pub group: Option<String>,
    /// `role = "staging"`, the only role (checked with the file's shape).
    pub role: Option<super::instance::Role>,
}

/// INSTANCE.toml could not be read or is not of the expected shape.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: Utf8PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.as_deref().map(Utf8Path::as_str).unwrap_or("<instance file>"))]
    Toml {
        path: Option<Utf8PathBuf>,
        /// 1-based; 0 when the TOML parser gave no position.
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "{}: {} problem(s):\n{}",
        path.as_deref().map(Utf8Path::as_str).unwrap_or("<instance file>"),
        problems.len(),
        problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
    )]
    Shape {
        path: Option<Utf8PathBuf>,
        /// Every unknown or missing key, with its line and the valid keys.
        problems: Vec<String>,
    },
}

/// INSTANCE.toml's keys, in the order its messages list them
/// ([`super::toml_report::keys_of`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawFile {
    name: String,
    package: Utf8PathBuf,
    base_url: String,
    user: Option<String>,
    group: Option<String>,
    role: Option<super::instance::Role>,
    #[serde(default)]
    web_dirs: BTreeMap<String, Utf8PathBuf>,
    #[serde(default)]
    settings: BTreeMap<String, toml::Value>,
    #[serde(default)]
    databases: BTreeMap<String, RawDatabase>,
}

/// `[databases.ID]`'s keys, likewise.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    #[serde(rename = "type")]
    kind: DbKind,
    name: String,
    login: String,
    password: String,
    host: String,
    /// Defaults to the server kind's standard port.
    port: Option<u16>,
    version: Option<String>,
    prefix: Option<String>,
}

impl RawDatabase {
    fn into_database(self) -> Database {
        Database {
            port: self.port.unwrap_or(self.kind.default_port()),
            kind: self.kind,
            name: self.name,
            login: self.login,
            password: Secret::new(self.password),
            host: self.host,
            version: self.version,
            prefix: self.prefix,
        }
    }
}

/// One database in the shape of INSTANCE.toml's `[databases.ID]` table, on its own (an
/// install's `existing:` file); the message is TOML's own.
pub fn parse_database_table(text: &str) -> Result<Database, String> {
    toml::from_str::<RawDatabase>(text)
        .map(RawDatabase::into_database)
        .map_err(|e| e.message().to_owned())
}

impl InstanceFile {
    /// Reads and parses `path`; relative paths inside are resolved against its folder.
    pub fn load(path: &Utf8Path) -> Result<Self, ParseError> {
        let text = std::fs::read_to_string(path).map_err(|source| ParseError::Read {
            path: path.to_owned(),
            source,
        })?;
        let abs = crate::paths::absolute_normalized(path).map_err(|source| ParseError::Read {
            path: path.to_owned(),
            source,
        })?;
        let dir = abs.parent().unwrap_or(Utf8Path::new("/"));
        Self::parse(&text, Some(dir)).map_err(|e| match e {
            ParseError::Toml {
                line,
                column,
                message,
                ..
            } => ParseError::Toml {
                path: Some(path.to_owned()),
                line,
                column,
                message,
            },
            ParseError::Shape { problems, .. } => ParseError::Shape {
                path: Some(path.to_owned()),
                problems,
            },
            other => other,
        })
    }

    /// Parses INSTANCE.toml text. With `base_dir`, relative `package` and web-dir paths are
    /// joined to it; without it they stay relative (and validation refuses them).
    pub fn parse(text: &str, base_dir: Option<&Utf8Path>) -> Result<Self, ParseError> {
        let problems = super::toml_report::shape_problems(text);
        if !problems.is_empty() {
            return Err(ParseError::Shape {
                path: None,
                problems,
            });
        }
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| line_column(text, s.start))
                .unwrap_or((0, 0));
            // The key as well as the position: `key `port` in [databases.main]: invalid type…`.
            let place = e
                .span()
                .map(|s| super::toml_report::toml_place(text, s.start).1)
                .unwrap_or_default();
            let message = super::toml_report::toml_message(&e);
            ParseError::Toml {
                path: None,
                line,
                column,
                message: match place.strip_prefix(", ") {
                    Some(place) => format!("{place}: {message}"),
                    None => message,
                },
            }
        })?;
        let resolve = |p: Utf8PathBuf| match base_dir {
            Some(d) if p.is_relative() => normalize(&d.join(p)),
            _ if p.is_absolute() => normalize(&p),
            _ => p,
        };
        Ok(InstanceFile {
            user: raw.user,
            group: raw.group,
            role: raw.role,
            name: raw.name,
            package: resolve(raw.package),
            base_url: raw.base_url,
            web_dirs: raw
                .web_dirs
                .into_iter()
                .map(|(k, v)| (k, resolve(v)))
                .collect(),
            settings: raw.settings,
            databases: raw
                .databases
                .into_iter()
                .map(|(id, d)| (id, d.into_database()))
                .collect(),
        })
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_error_has_position() {
        let err = InstanceFile::parse("name = \"a\"\nbogus = = 1\n", None).unwrap_err();
        match err {
            ParseError::Toml { line, .. } => assert_eq!(line, 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_key_is_refused_with_position() {
        let text = "name = \"a\"\npackage = \"p\"\nbase-url = \"http://a/\"\ncolour = 1\n";
        let err = InstanceFile::parse(text, None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("colour"), "{msg}");
        assert!(msg.contains("line 4:"), "{msg}");
    }

    #[test]
    fn every_unknown_and_missing_key_at_once_with_the_valid_keys() {
        let text = "nmae = \"a\"\npackage = \"p\"\nbase-url = \"http://a/\"\n\
                    [databases.main]\ntype = \"mysql\"\nname = \"d\"\nlogin = \"u\"\n\
                    password = \"p\"\nhots = \"h\"\n";
        let err = InstanceFile::parse(text, None).unwrap_err();
        let ParseError::Shape { problems, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(
            problems,
            &[
                "line 1: unknown key `nmae` at the top level; did you mean `name`? (valid keys \
                 there: name, package, base-url, user, group, role, web-dirs, settings, databases)",
                "missing key `name` (required at the top level)",
                "line 9: unknown key `hots` in [databases.main]; did you mean `host`? (valid \
                 keys there: type, name, login, password, host, port, version, prefix)",
                "missing key `host` in [databases.main]",
            ]
        );
    }

    #[test]
    fn relative_paths_resolve_against_base() {
        let text = "name = \"a\"\npackage = \"../pkgs/blog\"\nbase-url = \"http://a/\"\n[web-dirs]\n\"/\" = \"www/./a\"\n";
        let f = InstanceFile::parse(text, Some(Utf8Path::new("/etc/inst"))).unwrap();
        assert_eq!(f.package, "/etc/pkgs/blog");
        assert_eq!(f.web_dirs["/"], "/etc/inst/www/a");
    }
}
