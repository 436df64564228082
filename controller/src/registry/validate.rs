//! Checking an INSTANCE.toml against its package: everything found is reported at once.

use std::collections::{BTreeMap, HashMap};

use aps_meta::{AppMeta, DbRequirement, Requirements, Setting, SettingType};
use camino::Utf8PathBuf;

use super::file::InstanceFile;
use super::instance::{BaseUrl, BaseUrlError, Instance, SettingValue, is_valid_instance_name};
use crate::database::DbKind;

/// One thing wrong with an instance file. Each names the key to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("name {0:?} is invalid: expected [a-z0-9][a-z0-9._-]{{0,62}}")]
    InvalidName(String),
    #[error("an instance named {0:?} already exists (register with --replace to overwrite it)")]
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
        }),
        _ => Err(problems),
    }
}

fn scalar_text(v: &toml::Value) -> Option<String> {
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
    match required.trim().to_ascii_lowercase().as_str() {
        // MariaDB is served by the same tools and variables as MySQL.
        "mysql" | "mariadb" => kind == DbKind::Mysql,
        "postgresql" | "postgres" | "pgsql" => kind == DbKind::Postgresql,
        _ => false,
    }
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

const TOP_KEYS: &[&str] = &[
    "name",
    "package",
    "base-url",
    "user",
    "group",
    "role",
    "web-dirs",
    "settings",
    "databases",
];
const DATABASE_KEYS: &[&str] = &[
    "type", "name", "login", "password", "host", "port", "version", "prefix",
];

/// Every unknown or missing key of an INSTANCE.toml at once, each with its line, the valid
/// keys and the likely one meant (the typed parse stops at the first). Empty when the text is
/// not TOML at all: the parse reports that, with its position.
pub fn shape_problems(text: &str) -> Vec<String> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for key in table.keys().filter(|k| !TOP_KEYS.contains(&k.as_str())) {
        problems.push(unknown_key(text, "", key, TOP_KEYS));
    }
    for key in ["name", "package", "base-url"] {
        if !table.contains_key(key) {
            problems.push(format!("missing key `{key}` (required at the top level)"));
        }
    }
    // One role only: anything else is refused here, with its line, not by the parser's words.
    if let Some(role) = table.get("role").filter(|r| r.as_str() != Some("staging")) {
        let line =
            line_of_key(text, "", "role").map_or_else(String::new, |l| format!("line {l}: "));
        problems.push(format!(
            "{line}role = {role}: the only role is \"staging\" (an instance a drill restores \
             into, left out of `run`); leave `role` out for any other instance"
        ));
    }
    if let Some(toml::Value::Table(dbs)) = table.get("databases") {
        for (id, db) in dbs {
            let toml::Value::Table(db) = db else {
                continue;
            };
            let section = format!("databases.{id}");
            for key in db.keys().filter(|k| !DATABASE_KEYS.contains(&k.as_str())) {
                problems.push(unknown_key(text, &section, key, DATABASE_KEYS));
            }
            for key in ["type", "name", "login", "password", "host"] {
                if !db.contains_key(key) {
                    problems.push(format!("missing key `{key}` in [{section}]"));
                }
            }
        }
    }
    problems
}

/// `line N: unknown key `k` in [section]; did you mean `x`? (valid keys there: …)`.
pub fn unknown_key(text: &str, section: &str, key: &str, valid: &[&str]) -> String {
    let place = if section.is_empty() {
        "at the top level".to_owned()
    } else {
        format!("in [{section}]")
    };
    let line = line_of_key(text, section, key)
        .map(|n| format!("line {n}: "))
        .unwrap_or_default();
    let guess = did_you_mean(key, valid)
        .map(|v| format!("; did you mean `{v}`?"))
        .unwrap_or_default();
    format!(
        "{line}unknown key `{key}` {place}{guess} (valid keys there: {})",
        valid.join(", ")
    )
}

/// A typed TOML parse's error as a person reads it: `line N, key `k` in [section]: what is
/// wrong`, never the parser's own multi-line rendering (with its source excerpt and carets).
/// The line and the key come from the error's position in `text`.
pub fn toml_problem(text: &str, e: &toml::de::Error) -> String {
    let message = toml_message(e);
    match e.span() {
        Some(span) => {
            let (line, place) = toml_place(text, span.start);
            format!("line {line}{place}: {message}")
        }
        None => message,
    }
}

/// The error's own words, one line; serde says "field" where the files say "key".
pub fn toml_message(e: &toml::de::Error) -> String {
    e.message()
        .trim()
        .replace("missing field", "missing key")
        .replace("unknown field", "unknown key")
}

/// The 1-based line of byte `offset` of `text`, and `, key `k` in [section]` for the key
/// written on that line (or `, in [section]` for a table header), as far as it can be told.
pub fn toml_place(text: &str, offset: usize) -> (usize, String) {
    let start = offset.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let mut section = String::new();
    let mut key = None;
    for (i, line) in text.lines().enumerate().take(line_no) {
        let t = line.trim();
        if let Some(header) = t.strip_prefix('[').and_then(|h| h.split(']').next()) {
            section = header.trim_matches('[').trim().to_owned();
            key = None;
        } else if i + 1 == line_no
            && let Some((k, _)) = t.split_once('=')
        {
            key = Some(k.trim().trim_matches('"').to_owned());
        }
    }
    let place = match (key, section.is_empty()) {
        (Some(k), true) => format!(", key `{k}`"),
        (Some(k), false) => format!(", key `{k}` in [{section}]"),
        (None, false) => format!(", in [{section}]"),
        (None, true) => String::new(),
    };
    (line_no, place)
}

/// The valid key closest to `key`, when it is close (at most two edits).
pub fn did_you_mean<'a>(key: &str, valid: &[&'a str]) -> Option<&'a str> {
    valid
        .iter()
        .map(|v| (edit_distance(v, key), *v))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

/// The 1-based line where `key = …` is written under `[section]` (the text as written;
/// dotted and inline forms are not searched).
pub fn line_of_key(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(header) = t.strip_prefix('[').and_then(|h| h.split(']').next()) {
            current = header.trim().to_owned();
            continue;
        }
        let Some((k, _)) = t.split_once('=') else {
            continue;
        };
        if current == section && k.trim().trim_matches('"') == key {
            return Some(i + 1);
        }
    }
    None
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
