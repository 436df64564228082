//! A package's requirements against what this host offers, checked before an install makes
//! anything: the scripts' interpreters, PHP version and extensions, a database server for each
//! `db` requirement, free space for `installed-size`, and `choice` alternatives. What the
//! controller cannot provide is refused; what it cannot verify is a warning.

use std::collections::BTreeMap;
use std::fmt;

use aps_meta::model::{AppMeta, DbRequirement, PhpRequirement, Requirements};
use aps_meta::version_match::compare_versions;

use camino::Utf8Path;

use crate::config::ControllerConfig;
use crate::interpreter::{InterpreterTable, ResolvedInterpreter};

/// One database server the controller may create databases on (a `[database-servers.NAME]`
/// of controller.toml, reduced to what matching needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseServerFact {
    /// The server's name in controller.toml.
    pub name: String,
    /// `mysql`, `mariadb` or `postgresql`.
    pub kind: String,
    /// The server's version (`10.11.6`, `15.4`).
    pub version: String,
}

/// What a person chose for one `db` requirement (`--database ID=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseChoice {
    /// Create it on this server (a name of [`HostOffer::database_servers`]).
    Server(String),
    /// Use an existing database: the person vouches for its server; it is not checked here.
    Existing,
}

/// What this host offers a package.
#[derive(Debug, Clone, Default)]
pub struct HostOffer {
    pub interpreters: InterpreterTable,
    /// controller.toml `php-version`.
    pub php_version: Option<String>,
    /// controller.toml `php-extensions`.
    pub php_extensions: Vec<String>,
    pub database_servers: Vec<DatabaseServerFact>,
    /// db requirement id → the person's choice; an id not here takes the first suitable server.
    pub database_choices: BTreeMap<String, DatabaseChoice>,
    /// Bytes free on the web root's file system (`None`: not measured).
    pub free_bytes: Option<u64>,
}

impl HostOffer {
    /// What controller.toml declares (interpreters, `php-version`, `php-extensions`), the
    /// database servers given, and the free space where `web_root` is or will be (`None` when
    /// it cannot be measured: then `installed-size` is a warning, not a check).
    pub fn from_config(
        config: &ControllerConfig,
        database_servers: Vec<DatabaseServerFact>,
        web_root: &Utf8Path,
    ) -> Self {
        HostOffer {
            interpreters: config.interpreters.clone(),
            php_version: config.host.php_version.clone(),
            php_extensions: config.php_extensions.clone(),
            database_servers,
            database_choices: BTreeMap::new(),
            free_bytes: crate::estimate::free_space(web_root).ok(),
        }
    }
}

/// Requirements met, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequirementReport {
    /// The interpreter of each script install runs (configuration, then verification script),
    /// by script name.
    pub interpreters: Vec<(String, ResolvedInterpreter)>,
    /// db requirement id → the server name its database goes on (`None`: an existing one).
    pub databases: BTreeMap<String, Option<String>>,
    /// The id of the alternative taken in each `choice` (its position when it has no id).
    pub alternatives: Vec<String>,
    /// What the controller could not verify and lets pass.
    pub warnings: Vec<RequirementWarning>,
}

/// A requirement the controller lets pass without verifying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequirementWarning {
    /// The element, as the package writes it (`apache:required-module mod_rewrite`).
    pub requirement: String,
    /// Why it is not verified.
    pub note: &'static str,
}

impl fmt::Display for RequirementWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.requirement, self.note)
    }
}

/// One requirement this host does not meet; each says what would meet it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnmetRequirement {
    /// A script's language has no interpreter here.
    Interpreter {
        script: String,
        message: String,
    },
    /// The package asks for a PHP version and controller.toml declares none.
    PhpVersionUnknown {
        wanted: String,
    },
    PhpVersion {
        wanted: String,
        offered: String,
    },
    PhpExtensions {
        missing: Vec<String>,
    },
    /// No configured server is of the type and version a `db` requirement asks for.
    NoDatabaseServer {
        id: String,
        wanted: String,
        offered: String,
    },
    /// The server the person chose does not suit the requirement, or does not exist.
    ChosenServer {
        id: String,
        server: String,
        why: String,
    },
    FreeSpace {
        needed: u64,
        free: u64,
    },
    /// A mailbox the scripts would get `MAIL_<id>_*` for: the controller makes none.
    Mailbox {
        id: String,
    },
    /// A licence the controller would have to obtain.
    License {
        id: String,
    },
    /// No alternative of a `choice` is met: each one's unmet requirements.
    Choice {
        alternatives: Vec<(String, Vec<UnmetRequirement>)>,
    },
}

impl fmt::Display for UnmetRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnmetRequirement::Interpreter { script, message } => {
                write!(f, "script {script}: {message}")
            }
            UnmetRequirement::PhpVersionUnknown { wanted } => write!(
                f,
                "PHP {wanted} is required and controller.toml declares no php-version; declare \
                 the PHP that runs the sites"
            ),
            UnmetRequirement::PhpVersion { wanted, offered } => write!(
                f,
                "PHP {wanted} is required; this host declares PHP {offered} (php-version in \
                 controller.toml)"
            ),
            UnmetRequirement::PhpExtensions { missing } => write!(
                f,
                "PHP extensions {} are required and not declared by php-extensions in \
                 controller.toml",
                missing.join(", ")
            ),
            UnmetRequirement::NoDatabaseServer {
                id,
                wanted,
                offered,
            } => write!(
                f,
                "database `{id}` needs {wanted}; the configured servers are {offered}: add one \
                 to [database-servers] in controller.toml"
            ),
            UnmetRequirement::ChosenServer { id, server, why } => {
                write!(f, "database `{id}` on server {server}: {why}")
            }
            UnmetRequirement::FreeSpace { needed, free } => write!(
                f,
                "the package needs {needed} bytes (installed-size) and the web root's file \
                 system has {free} bytes free"
            ),
            UnmetRequirement::Mailbox { id } => write!(
                f,
                "mailbox `{id}`: this controller provides no mailboxes; the package cannot be \
                 installed here"
            ),
            UnmetRequirement::License { id } => write!(
                f,
                "licence `{id}`: this controller obtains no licences; the package cannot be \
                 installed here"
            ),
            UnmetRequirement::Choice { alternatives } => {
                write!(f, "no alternative of a requirement choice is met:")?;
                for (id, unmet) in alternatives {
                    let why: Vec<String> = unmet.iter().map(ToString::to_string).collect();
                    write!(f, " [{id}: {}]", why.join("; "))?;
                }
                Ok(())
            }
        }
    }
}

/// Every unmet requirement, in the package's order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RequirementsRefused {
    pub unmet: Vec<UnmetRequirement>,
}

impl fmt::Display for RequirementsRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.unmet.len();
        write!(f, "requirements not met ({n}):")?;
        for u in &self.unmet {
            write!(f, "\n  - {u}")?;
        }
        Ok(())
    }
}

/// Checks the root service's requirements of `meta` against `host`.
pub fn check_requirements(
    meta: &AppMeta,
    host: &HostOffer,
) -> Result<RequirementReport, RequirementsRefused> {
    let mut report = RequirementReport {
        interpreters: Vec::new(),
        databases: BTreeMap::new(),
        alternatives: Vec::new(),
        warnings: Vec::new(),
    };
    let mut unmet = Vec::new();
    let provision = &meta.service.provision;
    if provision.configuration_script.is_none() {
        report.warnings.push(RequirementWarning {
            requirement: "configuration-script".into(),
            note: "the package declares none: install runs no script",
        });
    }
    for script in [
        &provision.configuration_script,
        &provision.verification_script,
    ]
    .into_iter()
    .flatten()
    {
        match host.interpreters.resolve(&script.language) {
            Ok(found) => report.interpreters.push((script.name.clone(), found)),
            Err(e) => unmet.push(UnmetRequirement::Interpreter {
                script: script.name.clone(),
                message: e.to_string(),
            }),
        }
    }
    if let Some(text) = provision
        .url_mapping
        .as_ref()
        .and_then(|m| m.installed_size.as_deref())
    {
        match (text.trim().parse::<u64>(), host.free_bytes) {
            (Ok(needed), Some(free)) if free < needed => {
                unmet.push(UnmetRequirement::FreeSpace { needed, free })
            }
            (Ok(_), Some(_)) => {}
            (Ok(_), None) => report.warnings.push(RequirementWarning {
                requirement: format!("installed-size {text}"),
                note: "free space was not measured",
            }),
            (Err(_), _) => report.warnings.push(RequirementWarning {
                requirement: format!("installed-size {text:?}"),
                note: "not a number of bytes: free space is not checked",
            }),
        }
    }
    check_set(&meta.service.requirements, host, &mut report, &mut unmet);
    if unmet.is_empty() {
        Ok(report)
    } else {
        Err(RequirementsRefused { unmet })
    }
}

/// One requirement set (the service's, or a `choice` alternative's).
fn check_set(
    reqs: &Requirements,
    host: &HostOffer,
    report: &mut RequirementReport,
    unmet: &mut Vec<UnmetRequirement>,
) {
    if let Some(php) = &reqs.php {
        check_php(php, host, report, unmet);
    }
    for db in &reqs.databases {
        check_database(db, host, report, unmet);
    }
    unmet.extend(
        reqs.mailboxes
            .iter()
            .map(|m| UnmetRequirement::Mailbox { id: m.id.clone() }),
    );
    unmet.extend(
        reqs.licenses
            .iter()
            .map(|l| UnmetRequirement::License { id: l.id.clone() }),
    );
    let warn = |requirement: String, note| RequirementWarning { requirement, note };
    if let Some(apache) = &reqs.apache {
        for module in &apache.required_modules {
            report.warnings.push(warn(
                format!("apache:required-module {module}"),
                "the web server is not this controller's: not verified",
            ));
        }
        if apache.htaccess {
            report.warnings.push(warn(
                "apache:htaccess".into(),
                "the web server is not this controller's: not verified",
            ));
        }
    }
    for (aspect, elements) in [
        ("perl", &reqs.perl),
        ("dns", &reqs.dns_records),
        ("other", &reqs.other),
    ] {
        for e in elements {
            let note = match aspect {
                "dns" => "this controller manages no DNS: the record is not created",
                _ => "an aspect this controller does not verify",
            };
            report.warnings.push(warn(opaque_name(e), note));
        }
    }
    for (n, choice) in reqs.choices.iter().enumerate() {
        let mut failed = Vec::new();
        let mut taken = false;
        for (i, alt) in choice.alternatives.iter().enumerate() {
            let name = alt.id.clone().unwrap_or_else(|| format!("#{}", i + 1));
            let mut trial = report.clone();
            let mut trial_unmet = Vec::new();
            check_set(&alt.requirements, host, &mut trial, &mut trial_unmet);
            if trial_unmet.is_empty() {
                *report = trial;
                report.alternatives.push(name);
                taken = true;
                break;
            }
            failed.push((name, trial_unmet));
        }
        if !taken && !failed.is_empty() {
            unmet.push(UnmetRequirement::Choice {
                alternatives: failed,
            });
        } else if !taken {
            report
                .warnings
                .push(warn(format!("choice #{}", n + 1), "it has no alternatives"));
        }
    }
}

fn check_php(
    php: &PhpRequirement,
    host: &HostOffer,
    report: &mut RequirementReport,
    unmet: &mut Vec<UnmetRequirement>,
) {
    let min = php.version_min.as_deref();
    let below = php.version_max_not_including.as_deref();
    if min.is_some() || below.is_some() {
        let wanted = match (min, below) {
            (Some(a), Some(b)) => format!(">= {a}, < {b}"),
            (Some(a), None) => format!(">= {a}"),
            (None, Some(b)) => format!("< {b}"),
            (None, None) => unreachable!("one bound is set"),
        };
        match &host.php_version {
            None => unmet.push(UnmetRequirement::PhpVersionUnknown { wanted }),
            Some(offered) => {
                let ok = min.is_none_or(|m| compare_versions(offered, m).is_ge())
                    && below.is_none_or(|b| compare_versions(offered, b).is_lt());
                if !ok {
                    unmet.push(UnmetRequirement::PhpVersion {
                        wanted,
                        offered: offered.clone(),
                    });
                }
            }
        }
    }
    let missing: Vec<String> = php
        .extensions
        .iter()
        .filter(|e| {
            !host
                .php_extensions
                .iter()
                .any(|have| have.trim().eq_ignore_ascii_case(e.trim()))
        })
        .cloned()
        .collect();
    if !missing.is_empty() {
        unmet.push(UnmetRequirement::PhpExtensions { missing });
    }
    for f in &php.functions {
        report.warnings.push(RequirementWarning {
            requirement: format!("php:function {f}"),
            note: "PHP functions are not verified",
        });
    }
    for (name, value) in &php.directives {
        report.warnings.push(RequirementWarning {
            requirement: format!("php:{name} {value}"),
            note: "PHP settings are the web server's: not verified",
        });
    }
}

fn check_database(
    db: &DbRequirement,
    host: &HostOffer,
    report: &mut RequirementReport,
    unmet: &mut Vec<UnmetRequirement>,
) {
    let suits = |s: &DatabaseServerFact| -> Result<(), String> {
        if let Some(t) = &db.server_type
            && !type_matches(t, &s.kind)
        {
            return Err(format!("it is {}, the package needs {t}", s.kind));
        }
        if let Some(min) = &db.server_min_version
            && compare_versions(&s.version, min).is_lt()
        {
            return Err(format!(
                "it runs version {}, the package needs {min} or later",
                s.version
            ));
        }
        Ok(())
    };
    match host.database_choices.get(&db.id) {
        Some(DatabaseChoice::Existing) => {
            report.databases.insert(db.id.clone(), None);
        }
        Some(DatabaseChoice::Server(name)) => {
            let found = host.database_servers.iter().find(|s| s.name == *name);
            let why = match found {
                None => Err(format!(
                    "no such server in controller.toml (configured: {})",
                    offered(host)
                )),
                Some(s) => suits(s),
            };
            match why {
                Ok(()) => {
                    report.databases.insert(db.id.clone(), Some(name.clone()));
                }
                Err(why) => unmet.push(UnmetRequirement::ChosenServer {
                    id: db.id.clone(),
                    server: name.clone(),
                    why,
                }),
            }
        }
        None => match host.database_servers.iter().find(|s| suits(s).is_ok()) {
            Some(s) => {
                report.databases.insert(db.id.clone(), Some(s.name.clone()));
            }
            None => unmet.push(UnmetRequirement::NoDatabaseServer {
                id: db.id.clone(),
                wanted: wanted_server(db),
                offered: offered(host),
            }),
        },
    }
}

/// MariaDB serves what asks for MySQL (the same tools and variables).
fn type_matches(required: &str, kind: &str) -> bool {
    let family = |t: &str| match t.trim().to_ascii_lowercase().as_str() {
        "mysql" | "mariadb" => Some("mysql"),
        "postgresql" | "postgres" | "pgsql" => Some("postgresql"),
        _ => None,
    };
    family(required).is_some() && family(required) == family(kind)
}

fn wanted_server(db: &DbRequirement) -> String {
    let kind = db.server_type.as_deref().unwrap_or("any server type");
    match &db.server_min_version {
        Some(v) => format!("{kind} {v} or later"),
        None => kind.to_owned(),
    }
}

fn offered(host: &HostOffer) -> String {
    if host.database_servers.is_empty() {
        return "none".into();
    }
    host.database_servers
        .iter()
        .map(|s| format!("{} ({} {})", s.name, s.kind, s.version))
        .collect::<Vec<_>>()
        .join(", ")
}

fn opaque_name(e: &aps_meta::model::OpaqueElement) -> String {
    let short = e
        .namespace
        .as_deref()
        .and_then(|ns| ns.trim_end_matches('/').rsplit('/').next())
        .unwrap_or("");
    let mut out = if short.is_empty() {
        e.name.clone()
    } else {
        format!("{short}:{}", e.name)
    };
    if let Some(t) = e.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        out.push(' ');
        out.push_str(t);
    }
    out
}
