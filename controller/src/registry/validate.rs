//! Checking an INSTANCE.toml against its package: everything found is reported at once.

use std::collections::{BTreeMap, HashMap};

use aps_meta::{AppMeta, DbRequirement, Requirements, Setting, SettingType};
use camino::Utf8PathBuf;

use super::file::InstanceFile;
use super::instance::{BaseUrl, BaseUrlError, Instance, SettingValue, is_valid_instance_name};
use crate::database::DbKind;

// Kept here too: the panel and the CLI name them from `validate`.
pub use super::toml_report::{
    did_you_mean, keys_of, line_of_key, shape_problems, toml_message, toml_place, toml_problem,
    unknown_key,
};

/// One thing wrong with an instance file. Each names the key to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("name {0:?} is invalid: expected [a-z0-9][a-z0-9._-]{{0,62}}")]
    InvalidName(String),
    #[error(
        "an instance named {0:?} already exists (register with {replace} to overwrite it)",
        replace = crate::overrides::Override::Replace
    )]
    AlreadyExists(String),
    #[error(transparent)]
    BaseUrl(#[from] BaseUrlError),
    #[error("{what} path {path:?} is relative and there is no file folder to resolve it against")]
    RelativePath { what: String, path: Utf8PathBuf },
    #[error("package {path}: {message}")]
    Package { path: Utf8PathBuf, message: String },
    /// `hint`: `; did you mean `x`?`, or the ids the package declares (see [`unknown_id_hint`]).
    #[error("settings.{id}: the package declares no such setting{hint}")]
    UnknownSetting { id: String, hint: String },
    #[error("settings.{0}: required (no default value, not optional) but not given")]
    MissingSetting(String),
    #[error("settings.{id}: {message}")]
    SettingShape { id: String, message: String },
    /// The message comes from aps-meta, which never echoes password values.
    #[error("settings.{id}: {message}")]
    InvalidSettingValue { id: String, message: String },
    #[error("databases.{0}: the package requires this database but it is not given")]
    MissingDatabase(String),
    #[error(
        "databases: the package needs one of these sets of databases, none is given in full: {}",
        .0.iter().map(|a| format!("[{}]", a.join(", "))).collect::<Vec<_>>().join(" or ")
    )]
    MissingDatabaseChoice(Vec<Vec<String>>),
    #[error("databases.{id}: the package has no database requirement with this id{hint}")]
    UnknownDatabase { id: String, hint: String },
    #[error("databases.{id}: the package requires server type {required:?}, got {given:?}")]
    DatabaseType {
        id: String,
        required: String,
        given: String,
    },
    #[error("databases.{0}: prefix given but the package does not allow table prefixes")]
    DatabasePrefixNotAllowed(String),
    #[error("databases.{id}.{field}: must not be empty")]
    DatabaseFieldEmpty { id: String, field: &'static str },
    #[error("web-dirs: no folder for url-mapping {0:?} (and no parent mapping to put it under)")]
    MissingWebDir(String),
    #[error("web-dirs.{0:?}: the package has no such url-mapping")]
    UnknownWebDir(String),
    #[error("web-dirs.{0:?}: this url-mapping is virtual and has no folder")]
    VirtualWebDir(String),
    #[error(
        "web-dirs.{url:?}: folder {path} does not exist; create it (the application's files \
         belong there) or fix the path"
    )]
    WebDirMissing { url: String, path: Utf8PathBuf },
    #[error("user: {0}")]
    Account(String),
    #[error("group: {0}")]
    Group(String),
    #[error("web-dirs.{url:?}: {path} {reason}")]
    WebDirNotAllowed {
        url: String,
        path: Utf8PathBuf,
        reason: String,
    },
    /// Two instances over one folder: a restore of one empties and refills the other's files.
    #[error(
        "web-dirs.{url:?}: {path} {how} {other_path}, the web folder {other_url:?} of instance \
         {other:?}; a restore of either would replace the other's files: give each instance \
         folders of its own"
    )]
    WebDirTaken {
        url: String,
        path: Utf8PathBuf,
        /// `is`, `lies inside` or `holds`.
        how: &'static str,
        other: String,
        other_url: String,
        other_path: Utf8PathBuf,
    },
    /// Two instances in one database: a restore of one wipes the whole database.
    #[error(
        "databases.{id}: {target} is already database {other_id:?} of instance {other:?}; a \
         restore of either empties the whole database (table prefixes too): give each instance \
         a database of its own"
    )]
    DatabaseTaken {
        id: String,
        /// `MySQL/MariaDB database `x` on host:port`.
        target: String,
        other: String,
        other_id: String,
    },
    /// The login did not work (or the server did not answer): `message` has the server's
    /// words and what to change.
    #[error("databases.{id}: {message}")]
    DatabaseConnect { id: String, message: String },
}

/// What follows "no such setting" (or database id): the declared id closest to `given` (at
/// most two edits), else the declared ids, so a typo is fixed without opening APP-META.xml.
pub fn unknown_id_hint(given: &str, declared: &[&str]) -> String {
    if let Some(close) = did_you_mean(given, declared) {
        return format!("; did you mean `{close}`?");
    }
    match declared.len() {
        0 => " (it declares none)".to_owned(),
        // A package with hundreds of settings: the list would bury the message.
        1..=20 => format!(" (it declares: {})", declared.join(", ")),
        n => format!(" ({n} are declared; APP-META.xml lists them)"),
    }
}

/// Web folders given in the file that are not folders on this machine, checked at
/// registration (a record that points nowhere would fail every backup later). Kept out of
/// [`validate`], which checks the file against its package alone.
pub fn web_dirs_exist(file: &InstanceFile) -> Vec<Problem> {
    file.web_dirs
        .iter()
        .filter(|(_, dir)| dir.is_absolute() && !dir.is_dir())
        .map(|(url, dir)| Problem::WebDirMissing {
            url: url.clone(),
            path: dir.clone(),
        })
        .collect()
}

/// Checks `file` against the package metadata and builds the record.
///
/// Settings in the record are resolved: given values, plus the package default of every
/// setting not given, so the record alone says what scripts receive.
/// Web folders of child url-mappings not given default to their parent's folder joined with
/// the child's relative URL (`/` → `/srv/blog`, so `/cache` → `/srv/blog/cache`).
pub fn validate(file: &InstanceFile, meta: Option<&AppMeta>) -> Result<Instance, Vec<Problem>> {
    let mut problems = Vec::new();
    if !is_valid_instance_name(&file.name) {
        problems.push(Problem::InvalidName(file.name.clone()));
    }
    let base_url = BaseUrl::parse(&file.base_url)
        .map_err(|e| problems.push(e.into()))
        .ok();
    if file.package.is_relative() {
        problems.push(Problem::RelativePath {
            what: "package".into(),
            path: file.package.clone(),
        });
    }
    for (url, dir) in &file.web_dirs {
        if dir.is_relative() {
            problems.push(Problem::RelativePath {
                what: format!("web-dirs.{url:?}"),
                path: dir.clone(),
            });
        }
    }
    for (id, db) in &file.databases {
        for (field, v) in [("name", &db.name), ("login", &db.login), ("host", &db.host)] {
            if v.trim().is_empty() {
                problems.push(Problem::DatabaseFieldEmpty {
                    id: id.clone(),
                    field,
                });
            }
        }
    }
    // Without the package nothing else can be checked; its own problem is already listed.
    let Some(meta) = meta else {
        return Err(problems);
    };
    let settings = check_settings(file, meta, &mut problems);
    check_databases(file, meta, &mut problems);
    let web_dirs = check_web_dirs(file, meta, &mut problems);
    let secret_settings = meta
        .service
        .all_settings()
        .into_iter()
        .chain(meta.all_global_settings())
        .filter(|s| s.is_secret() && settings.contains_key(s.id.as_str()))
        .map(|s| s.id.to_string())
        .collect();
    match base_url {
        Some(base_url) if problems.is_empty() => Ok(Instance {
            name: file.name.clone(),
            package: file.package.clone(),
            base_url,
            web_dirs,
            settings,
            databases: file.databases.clone(),
            secret_settings,
            user: file.user.clone(),
            group: file.group.clone(),
            role: file.role,
            status: Default::default(),
            installed: None,
        }),
        _ => Err(problems),
    }
}

/// A TOML scalar as the text a setting holds (`8080`, `true`); `None` for tables, arrays
/// and dates. Also reads settings files (`lifecycle::given`).
pub(crate) fn scalar_text(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

fn check_settings(
    file: &InstanceFile,
    meta: &AppMeta,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, SettingValue> {
    let mut declared: Vec<&Setting> = meta.all_global_settings();
    declared.extend(meta.service.all_settings());
    let mut by_id: HashMap<&str, &Setting> = HashMap::new();
    for s in &declared {
        by_id.entry(s.id.as_str()).or_insert(s);
    }
    let mut out = BTreeMap::new();
    for (id, value) in &file.settings {
        let Some(setting) = by_id.get(id.as_str()) else {
            let mut ids: Vec<&str> = by_id.keys().copied().collect();
            ids.sort_unstable();
            problems.push(Problem::UnknownSetting {
                id: id.clone(),
                hint: unknown_id_hint(id, &ids),
            });
            continue;
        };
        let shape = |message: &str| Problem::SettingShape {
            id: id.clone(),
            message: message.to_string(),
        };
        match (&setting.kind, value) {
            (SettingType::List { element_type }, toml::Value::Array(items)) => {
                // Each element is checked as a setting of the element type with the same
                // constraints (regex, lengths) as the list declares.
                let mut element = (*setting).clone();
                element.kind = (**element_type).clone();
                let mut values = Vec::new();
                for item in items {
                    match scalar_text(item) {
                        Some(text) => {
                            check_value(&element, id, &text, problems);
                            values.push(text);
                        }
                        None => problems
                            .push(shape("list elements must be strings, numbers or booleans")),
                    }
                }
                out.insert(id.clone(), SettingValue::List(values));
            }
            (SettingType::List { .. }, _) => {
                problems.push(shape("is a list setting: give an array of strings"));
            }
            (_, toml::Value::Array(_)) => {
                problems.push(shape("is not a list setting: give a single value"));
            }
            (_, v) => match scalar_text(v) {
                Some(text) => {
                    check_value(setting, id, &text, problems);
                    out.insert(id.clone(), SettingValue::Single(text));
                }
                None => problems.push(shape("give a string, number or boolean")),
            },
        }
    }
    for s in declared {
        if out.contains_key(s.id.as_str()) || file.settings.contains_key(s.id.as_str()) {
            continue;
        }
        match &s.default_value {
            Some(d) => {
                let v = match s.kind {
                    SettingType::List { .. } if d.is_empty() => SettingValue::List(Vec::new()),
                    SettingType::List { .. } => SettingValue::List(vec![d.to_string()]),
                    _ => SettingValue::Single(d.to_string()),
                };
                out.insert(s.id.to_string(), v);
            }
            None if s.optional
                || s.value_of_setting.is_some()
                || matches!(s.kind, SettingType::StaticText) => {}
            None => problems.push(Problem::MissingSetting(s.id.to_string())),
        }
    }
    out
}

fn check_value(setting: &Setting, id: &str, value: &str, problems: &mut Vec<Problem>) {
    if let Err(message) = super::package::check_setting_value(setting, value) {
        problems.push(Problem::InvalidSettingValue {
            id: id.to_string(),
            message,
        });
    }
}

fn check_databases(file: &InstanceFile, meta: &AppMeta, problems: &mut Vec<Problem>) {
    let service = &meta.service;
    let all = service.all_databases();
    for (id, db) in &file.databases {
        let Some(req) = all.iter().find(|r| r.id == *id) else {
            let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
            problems.push(Problem::UnknownDatabase {
                id: id.clone(),
                hint: unknown_id_hint(id, &ids),
            });
            continue;
        };
        if let Some(required) = &req.server_type
            && !server_type_matches(required, db.kind)
        {
            problems.push(Problem::DatabaseType {
                id: id.clone(),
                required: required.clone(),
                given: db.kind.as_str().to_string(),
            });
        }
        if db.prefix.is_some() && !req.can_use_tables_prefix {
            problems.push(Problem::DatabasePrefixNotAllowed(id.clone()));
        }
    }
    check_requirements(&service.requirements, file, problems);
}

fn server_type_matches(required: &str, kind: DbKind) -> bool {
    DbKind::from_server_type(required) == Some(kind)
}

fn check_requirements(reqs: &Requirements, file: &InstanceFile, problems: &mut Vec<Problem>) {
    for r in &reqs.databases {
        if !file.databases.contains_key(&r.id) {
            problems.push(Problem::MissingDatabase(r.id.clone()));
        }
    }
    for choice in &reqs.choices {
        if !choice
            .alternatives
            .iter()
            .any(|a| requirements_satisfied(&a.requirements, file))
        {
            let sets = choice
                .alternatives
                .iter()
                .map(|a| {
                    let mut ids = Vec::new();
                    collect_db_ids(&a.requirements, &mut ids);
                    ids
                })
                .collect();
            problems.push(Problem::MissingDatabaseChoice(sets));
        }
    }
}

fn requirements_satisfied(reqs: &Requirements, file: &InstanceFile) -> bool {
    let mut p = Vec::new();
    check_requirements(reqs, file, &mut p);
    p.is_empty()
}

fn collect_db_ids(reqs: &Requirements, out: &mut Vec<String>) {
    out.extend(reqs.databases.iter().map(|r: &DbRequirement| r.id.clone()));
    for c in &reqs.choices {
        for a in &c.alternatives {
            collect_db_ids(&a.requirements, out);
        }
    }
}

/// `/blog/` and `blog` → `/blog`; `/` stays `/`.
fn normalize_url(url: &str) -> String {
    let segs: Vec<&str> = url.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", segs.join("/"))
}

fn check_web_dirs(
    file: &InstanceFile,
    meta: &AppMeta,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Utf8PathBuf> {
    let flat = meta
        .service
        .provision
        .url_mapping
        .as_ref()
        .map(|m| m.flattened())
        .unwrap_or_default();
    let given: BTreeMap<String, &Utf8PathBuf> = file
        .web_dirs
        .iter()
        .map(|(k, v)| (normalize_url(k), v))
        .collect();
    for url in given.keys() {
        match flat.iter().find(|m| m.full_url == *url) {
            Some(m) if m.is_virtual => problems.push(Problem::VirtualWebDir(url.clone())),
            Some(_) => {}
            // A web root is meaningful even for a package without url-mapping.
            None if url == "/" => {}
            None => problems.push(Problem::UnknownWebDir(url.clone())),
        }
    }
    let mut out: BTreeMap<String, Utf8PathBuf> = BTreeMap::new();
    if let Some(root) = given.get("/") {
        out.insert("/".into(), (*root).clone());
    }
    // `flattened()` lists parents before children, so a parent's folder is known in time.
    for m in flat.iter().filter(|m| !m.is_virtual) {
        if let Some(dir) = given.get(&m.full_url) {
            out.insert(m.full_url.clone(), (*dir).clone());
            continue;
        }
        let parent = out
            .iter()
            .filter(|(u, _)| is_ancestor(u, &m.full_url))
            .max_by_key(|(u, _)| u.len());
        match parent {
            Some((pu, pdir)) => {
                let rest = m.full_url[pu.len()..].trim_start_matches('/');
                let dir = pdir.join(rest);
                out.insert(m.full_url.clone(), dir);
            }
            None => problems.push(Problem::MissingWebDir(m.full_url.clone())),
        }
    }
    out
}

fn is_ancestor(parent: &str, child: &str) -> bool {
    parent != child
        && (parent == "/"
            || child
                .strip_prefix(parent)
                .is_some_and(|rest| rest.starts_with('/')))
}
