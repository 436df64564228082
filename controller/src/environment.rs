//! The environment a package script runs with: the variables the standard defines for one
//! operation, built from the instance record and the package's metadata.
//!
//! Naming follows docs/scripts.md ("Environment"). Where the standard is
//! silent this module decides, and says so where it does it:
//! - `installation-only` settings go to `install`, `backup` and `restore` (a restore into a new
//!   instance needs the full configuration set), not to `configure`, `upgrade`, `remove`,
//!   `enable`, `disable`.
//! - Database variables go to every operation: `remove` scripts drop their tables.
//! - A virtual url-mapping still gets its `WEB_…_DIR`, pointing where its URL would live.
//! - A setting id declared both globally and by the root service is exported once; the
//!   service's declaration (type, default, flags) wins.
//! - Instance settings the package does not declare are not exported: they are the
//!   controller's or the panel's bookkeeping, not the script's input.
//!
//! Names are passed to `execve` as they are (no shell): `.` and `-` are fine; only `=` and NUL,
//! which cannot be represented in an environment, are refused.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use aps_meta::model::{AppMeta, Setting, SettingType};
use camino::Utf8PathBuf;

use crate::registry::instance::{Instance, SettingValue};

/// The operation a script is run for: it decides which variables are passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptOperation {
    Install,
    /// Reconfiguration; `old_settings` are the values before the change (setting id → value),
    /// exported as `OLDSETTINGS_<id>` for settings with `track-old-value`.
    Configure {
        old_settings: BTreeMap<String, SettingValue>,
    },
    Upgrade,
    Remove,
    Enable,
    Disable,
    Backup {
        backup_file: Utf8PathBuf,
    },
    Restore {
        backup_file: Utf8PathBuf,
    },
    /// The verification-script run against an installed instance (a restore drill). The
    /// standard gives it the configuration script's variables; which set it is silent on, so it
    /// gets what `configure` gets with nothing changing: current settings, no `OLDSETTINGS_*`,
    /// no `installation-only` settings (see `operation::verify`).
    Verify,
}

impl ScriptOperation {
    /// Whether `installation-only` settings are passed (see the module doc).
    fn passes_installation_only(&self) -> bool {
        matches!(
            self,
            ScriptOperation::Install
                | ScriptOperation::Backup { .. }
                | ScriptOperation::Restore { .. }
        )
    }
}

/// Facts about the host that the instance record does not hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// `PHP_VERSION`, when the configuration names the PHP that runs the site.
    pub php_version: Option<String>,
}

/// Why an environment could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvironmentError {
    #[error(
        "environment variable name {name:?} contains {what}, which an environment cannot hold; \
         it comes from {source_desc}"
    )]
    InvalidName {
        name: String,
        what: &'static str,
        source_desc: String,
    },
    #[error(
        "the value of environment variable {name} contains a NUL byte, which an environment cannot hold"
    )]
    NulInValue { name: String },
    #[error(
        "instance {instance} has no web folder for the root url-mapping `/` (web-dirs in its \
         INSTANCE.toml), which the package's url-mapping needs"
    )]
    MissingWebRoot { instance: String },
    #[error("instance {instance}: web folder for URL {url} is not an absolute path: {path}")]
    RelativeWebDir {
        instance: String,
        url: String,
        path: Utf8PathBuf,
    },
    #[error(
        "instance {instance} has no database for requirement `{id}` of the package \
         (databases.{id} in its INSTANCE.toml)"
    )]
    MissingDatabase { instance: String, id: String },
    #[error(
        "instance {instance}: boolean setting {setting} holds {value:?}; expected true or false"
    )]
    InvalidBoolean {
        instance: String,
        setting: String,
        value: String,
    },
    #[error(
        "instance {instance}: setting {setting} is declared as {declared} but the instance holds \
         a list of {count} values for it"
    )]
    ListForScalar {
        instance: String,
        setting: String,
        declared: String,
        count: usize,
    },
}

/// The variables of one script run, sorted by name. `Debug` and `Display` mask secrets;
/// [`ScriptEnvironment::iter`] gives the clear text for the process builder.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ScriptEnvironment {
    vars: BTreeMap<String, String>,
    /// Names declared secret by their source (password settings); `DB_*_PASSWORD` and
    /// `MAIL_*_PASSWORD` are recognised by name.
    secret_names: BTreeSet<String>,
}

impl ScriptEnvironment {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Every variable with its clear-text value, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.vars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Whether the value of `name` is masked in `Debug`/`Display`.
    pub fn is_secret(&self, name: &str) -> bool {
        self.secret_names.contains(name) || is_password_name(name)
    }

    fn masked(&self, name: &str, value: &str) -> String {
        if self.is_secret(name) {
            "***".to_owned()
        } else {
            value.to_owned()
        }
    }

    fn insert(
        &mut self,
        name: String,
        value: String,
        secret: bool,
        source_desc: impl FnOnce() -> String,
    ) -> Result<(), EnvironmentError> {
        check_name(&name, source_desc)?;
        if value.contains('\0') {
            return Err(EnvironmentError::NulInValue { name });
        }
        if secret {
            self.secret_names.insert(name.clone());
        }
        self.vars.insert(name, value);
        Ok(())
    }
}

/// One `NAME=value` line per variable, sorted, secrets masked.
impl fmt::Display for ScriptEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in &self.vars {
            writeln!(f, "{name}={}", self.masked(name, value))?;
        }
        Ok(())
    }
}

impl fmt::Debug for ScriptEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.vars.iter().map(|(k, v)| (k, self.masked(k, v))))
            .finish()
    }
}

/// `DB_<id>_PASSWORD`, `MAIL_<id>_PASSWORD` (the id may itself contain `_`).
fn is_password_name(name: &str) -> bool {
    ["DB_", "MAIL_"].iter().any(|prefix| {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("_PASSWORD"))
            .is_some_and(|id| !id.is_empty())
    })
}

fn check_name(name: &str, source_desc: impl FnOnce() -> String) -> Result<(), EnvironmentError> {
    let what = if name.contains('=') {
        "`=`"
    } else if name.contains('\0') {
        "a NUL byte"
    } else {
        return Ok(());
    };
    Err(EnvironmentError::InvalidName {
        name: name.to_owned(),
        what,
        source_desc: source_desc(),
    })
}

/// [`build_environment_with`] without host facts (no `PHP_VERSION`).
pub fn build_environment(
    instance: &Instance,
    meta: &AppMeta,
    op: ScriptOperation,
) -> Result<ScriptEnvironment, EnvironmentError> {
    build_environment_with(instance, meta, op, &HostFacts::default())
}

/// The variables the standard defines for `op` on `instance` of the package `meta`.
pub fn build_environment_with(
    instance: &Instance,
    meta: &AppMeta,
    op: ScriptOperation,
    host: &HostFacts,
) -> Result<ScriptEnvironment, EnvironmentError> {
    let mut env = ScriptEnvironment::default();
    add_base_url(&mut env, instance)?;
    add_settings(&mut env, instance, meta, &op)?;
    add_web_dirs(&mut env, instance, meta)?;
    add_databases(&mut env, instance, meta)?;
    if let Some(php) = &host.php_version {
        env.insert("PHP_VERSION".into(), php.clone(), false, String::new)?;
    }
    if let ScriptOperation::Backup { backup_file } | ScriptOperation::Restore { backup_file } = &op
    {
        env.insert(
            "BACKUP_FILE".into(),
            backup_file.to_string(),
            false,
            String::new,
        )?;
    }
    Ok(env)
}

fn add_base_url(env: &mut ScriptEnvironment, instance: &Instance) -> Result<(), EnvironmentError> {
    let url = &instance.base_url;
    env.insert(
        "BASE_URL_SCHEME".into(),
        url.scheme.clone(),
        false,
        String::new,
    )?;
    env.insert("BASE_URL_HOST".into(), url.host.clone(), false, String::new)?;
    if let Some(port) = url.port {
        env.insert("BASE_URL_PORT".into(), port.to_string(), false, String::new)?;
    }
    env.insert(
        "BASE_URL_PATH".into(),
        base_url_path(&url.path),
        false,
        String::new,
    )?;
    Ok(())
}

/// `/blog/` → `blog/`, `/` → `/` (what ISPConfig, Froxlor and hs-agent send).
fn base_url_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("{trimmed}/")
    }
}

fn add_settings(
    env: &mut ScriptEnvironment,
    instance: &Instance,
    meta: &AppMeta,
    op: &ScriptOperation,
) -> Result<(), EnvironmentError> {
    // Service declarations first so that they win over a global one with the same id.
    let mut seen = BTreeSet::new();
    let declared = meta
        .service
        .all_settings()
        .into_iter()
        .chain(meta.all_global_settings())
        .filter(|s| seen.insert(s.id.as_str()));
    for setting in declared {
        if setting.installation_only && !op.passes_installation_only() {
            continue;
        }
        let current = match instance.settings.get(setting.id.as_str()) {
            Some(v) => Some(v.clone()),
            None => setting
                .default_value
                .as_deref()
                .map(|d| SettingValue::Single(d.to_string())),
        };
        if let Some(value) = current {
            add_setting_value(env, instance, setting, "SETTINGS_", &value)?;
        }
        if let ScriptOperation::Configure { old_settings } = op
            && setting.track_old_value
            && let Some(old) = old_settings.get(setting.id.as_str())
        {
            add_setting_value(env, instance, setting, "OLDSETTINGS_", old)?;
        }
    }
    Ok(())
}

fn add_setting_value(
    env: &mut ScriptEnvironment,
    instance: &Instance,
    setting: &Setting,
    prefix: &str,
    value: &SettingValue,
) -> Result<(), EnvironmentError> {
    let source = || format!("setting id {:?}", setting.id);
    let base = format!("{prefix}{}", setting.id);
    let secret = setting.is_secret();
    match &setting.kind {
        SettingType::List { element_type } => {
            // A list setting's default value is one string: it is the single element.
            let elements = match value {
                SettingValue::Single(s) => std::slice::from_ref(s),
                SettingValue::List(items) => items.as_slice(),
            };
            for (n, element) in elements.iter().enumerate() {
                let element = scalar_value(instance, setting, element_type, element)?;
                env.insert(format!("{base}_{}", n + 1), element, secret, source)?;
            }
        }
        kind => {
            let single = match value {
                SettingValue::Single(s) => s,
                SettingValue::List(items) => {
                    return Err(EnvironmentError::ListForScalar {
                        instance: instance.name.clone(),
                        setting: setting.id.to_string(),
                        declared: type_name(kind),
                        count: items.len(),
                    });
                }
            };
            let scalar = scalar_value(instance, setting, kind, single)?;
            env.insert(base, scalar, secret, source)?;
        }
    }
    Ok(())
}

/// The exported form of one value: booleans as `true`/`false`, everything else as stored.
fn scalar_value(
    instance: &Instance,
    setting: &Setting,
    kind: &SettingType,
    value: &str,
) -> Result<String, EnvironmentError> {
    if *kind != SettingType::Boolean {
        return Ok(value.to_owned());
    }
    // Panels and older records store booleans in several spellings; scripts compare with
    // `true`/`false` (Froxlor stores exactly these).
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok("true".into()),
        "false" | "0" | "no" | "off" => Ok("false".into()),
        _ => Err(EnvironmentError::InvalidBoolean {
            instance: instance.name.clone(),
            setting: setting.id.to_string(),
            value: value.to_owned(),
        }),
    }
}

fn type_name(kind: &SettingType) -> String {
    match kind {
        SettingType::Other(name) => name.to_string(),
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{other:?}")),
    }
}

fn add_web_dirs(
    env: &mut ScriptEnvironment,
    instance: &Instance,
    meta: &AppMeta,
) -> Result<(), EnvironmentError> {
    let Some(mapping) = &meta.service.provision.url_mapping else {
        return Ok(());
    };
    let flat = mapping.flattened();
    if flat.is_empty() {
        return Ok(());
    }
    let root = instance
        .web_dirs
        .get("/")
        .ok_or_else(|| EnvironmentError::MissingWebRoot {
            instance: instance.name.clone(),
        })?;
    let mut alternates = Vec::new();
    for m in &flat {
        // Virtual mappings have no folder of their own; scripts may still read the name, so
        // they get where the URL would live.
        let dir = match instance.web_dirs.get(&m.full_url) {
            Some(dir) => dir.clone(),
            None => root.join(m.full_url.trim_start_matches('/')),
        };
        if !dir.is_absolute() {
            return Err(EnvironmentError::RelativeWebDir {
                instance: instance.name.clone(),
                url: m.full_url.clone(),
                path: dir,
            });
        }
        let source = || format!("url-mapping {:?}", m.full_url);
        let name = format!("WEB_{}_DIR", m.full_url.replace('/', "_"));
        env.insert(name, dir.to_string(), false, source)?;
        if let Some(rest) = m.full_url.strip_prefix('/')
            && !rest.is_empty()
        {
            alternates.push((format!("WEB_{}_DIR", rest.replace('/', "_")), dir, m));
        }
    }
    // The spelling without the leading underscore never overrides a standard name (`/_x`'s
    // alternate is `/x`'s standard name).
    for (name, dir, m) in alternates {
        if env.vars.contains_key(&name) {
            continue;
        }
        let source = || format!("url-mapping {:?}", m.full_url);
        env.insert(name, dir.to_string(), false, source)?;
    }
    Ok(())
}

fn add_databases(
    env: &mut ScriptEnvironment,
    instance: &Instance,
    meta: &AppMeta,
) -> Result<(), EnvironmentError> {
    let direct: BTreeSet<&str> = meta
        .service
        .requirements
        .databases
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    let mut seen = BTreeSet::new();
    for req in meta.service.all_databases() {
        if !seen.insert(req.id.as_str()) {
            continue;
        }
        let Some(db) = instance.databases.get(&req.id) else {
            // A requirement inside a `choice` alternative the instance did not take is fine.
            if direct.contains(req.id.as_str()) {
                return Err(EnvironmentError::MissingDatabase {
                    instance: instance.name.clone(),
                    id: req.id.clone(),
                });
            }
            continue;
        };
        let source = || format!("database requirement id {:?}", req.id);
        let var = |suffix: &str| format!("DB_{}_{suffix}", req.id);
        env.insert(var("TYPE"), db.kind.as_str().into(), false, source)?;
        env.insert(var("NAME"), db.name.clone(), false, source)?;
        env.insert(var("LOGIN"), db.login.clone(), false, source)?;
        env.insert(var("PASSWORD"), db.password.expose().into(), true, source)?;
        env.insert(var("HOST"), db.host.clone(), false, source)?;
        env.insert(var("PORT"), db.port.to_string(), false, source)?;
        if let Some(version) = &db.version {
            env.insert(var("VERSION"), version.clone(), false, source)?;
        }
        // Scripts test whether PREFIX is set, so it is absent, not empty, when not allowed.
        if req.can_use_tables_prefix
            && let Some(prefix) = &db.prefix
        {
            env.insert(var("PREFIX"), prefix.clone(), false, source)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_path_has_no_leading_and_one_trailing_slash() {
        assert_eq!(base_url_path("/"), "/");
        assert_eq!(base_url_path(""), "/");
        assert_eq!(base_url_path("/blog/"), "blog/");
        assert_eq!(base_url_path("/blog"), "blog/");
        assert_eq!(base_url_path("/a/b/"), "a/b/");
    }

    #[test]
    fn password_names_are_recognised_by_shape() {
        assert!(is_password_name("DB_main_PASSWORD"));
        assert!(is_password_name("DB_my_db_PASSWORD"));
        assert!(is_password_name("MAIL_account_PASSWORD"));
        assert!(!is_password_name("DB__PASSWORD"));
        assert!(!is_password_name("DB_main_LOGIN"));
        assert!(!is_password_name("SETTINGS_PASSWORD"));
    }

    #[test]
    fn names_with_equals_or_nul_are_refused_and_named() {
        let mut env = ScriptEnvironment::default();
        let err = env
            .insert("SETTINGS_a=b".into(), "x".into(), false, || {
                "setting id \"a=b\"".into()
            })
            .unwrap_err();
        assert_eq!(
            err,
            EnvironmentError::InvalidName {
                name: "SETTINGS_a=b".into(),
                what: "`=`",
                source_desc: "setting id \"a=b\"".into(),
            }
        );
        assert!(err.to_string().contains("SETTINGS_a=b"));
        let err = env
            .insert("DB_a\0_NAME".into(), "x".into(), false, String::new)
            .unwrap_err();
        assert!(matches!(
            err,
            EnvironmentError::InvalidName {
                what: "a NUL byte",
                ..
            }
        ));
        let err = env
            .insert("SETTINGS_ok".into(), "a\0b".into(), false, String::new)
            .unwrap_err();
        assert_eq!(
            err,
            EnvironmentError::NulInValue {
                name: "SETTINGS_ok".into()
            }
        );
        // Dots and hyphens are legal in names: they go to execve as they are.
        env.insert(
            "WEB__wp-config.php_DIR".into(),
            "/x".into(),
            false,
            String::new,
        )
        .unwrap();
        assert_eq!(env.get("WEB__wp-config.php_DIR"), Some("/x"));
    }

    #[test]
    fn display_and_debug_mask_secrets_but_iter_does_not() {
        let mut env = ScriptEnvironment::default();
        env.insert(
            "SETTINGS_admin_password".into(),
            "s3cret".into(),
            true,
            String::new,
        )
        .unwrap();
        env.insert("DB_main_PASSWORD".into(), "dbpw".into(), false, String::new)
            .unwrap();
        env.insert("SETTINGS_title".into(), "Blog".into(), false, String::new)
            .unwrap();
        let shown = format!("{env}\n{env:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("dbpw"),
            "{shown}"
        );
        assert!(shown.contains("SETTINGS_title=Blog"));
        assert_eq!(
            env.to_string(),
            "DB_main_PASSWORD=***\nSETTINGS_admin_password=***\nSETTINGS_title=Blog\n"
        );
        let clear: Vec<_> = env.iter().collect();
        assert!(clear.contains(&("SETTINGS_admin_password", "s3cret")));
        assert!(clear.contains(&("DB_main_PASSWORD", "dbpw")));
    }
}
