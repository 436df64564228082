//! `package check`: every check on a package, for its author. Metadata parse, semantic checks
//! (scripts present, languages known, settings coherent, databases identified) and the
//! listing; all findings returned as [`Diagnostic`]s, nothing stops at the first.

use crate::diagnostic::{Diagnostic, Location, codes};
use crate::limits::Limits;
use crate::listing::ListingError;
use crate::listing_verify::verify_listing;
use crate::model::{AppMeta, ApsVersion, Script, Service, Setting, SettingType};
use crate::package::{Package, PackageError};
use crate::setting_value::{compile_regex, validate_setting_value};
use crate::xml;
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;
use std::collections::HashMap;

/// Script languages a controller of ours can run (docs/scripts.md).
pub const KNOWN_SCRIPT_LANGUAGES: &[&str] = &["php", "perl", "python", "sh", "bash"];

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub path: Utf8PathBuf,
    /// `None` when the metadata could not be read.
    pub aps_version: Option<ApsVersion>,
    pub diagnostics: Vec<Diagnostic>,
}

impl CheckReport {
    /// No diagnostic of severity error (warnings allowed).
    pub fn ok(&self) -> bool {
        !self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// The check could not run at all (as opposed to: the package has errors).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{path}: no such file or folder; expected a package folder or a .app.zip")]
    NotFound { path: Utf8PathBuf },
    #[error("{path}: neither a folder nor a file; expected a package folder or a .app.zip")]
    NotAPackage { path: Utf8PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: Utf8PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs every check on a package folder or `.app.zip`.
pub fn check_package(path: &Utf8Path, limits: &Limits) -> Result<CheckReport, CheckError> {
    let md = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CheckError::NotFound {
            path: path.to_path_buf(),
        },
        _ => CheckError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    if md.is_dir() {
        let mut report = check_dir(path, limits);
        report.path = path.to_path_buf();
        return Ok(report);
    }
    if !md.is_file() {
        return Err(CheckError::NotAPackage {
            path: path.to_path_buf(),
        });
    }
    // A .app.zip: unpack (with every safety check) into a private temporary folder.
    let tmp = TempDir::new().map_err(|source| CheckError::Io {
        path: std::env::temp_dir().try_into().unwrap_or_default(),
        source,
    })?;
    let dest = tmp.0.join("package");
    let mut report = match crate::zip::unpack_zip(path, &dest, limits) {
        Ok(()) => check_dir(&dest, limits),
        Err(e) => CheckReport {
            path: path.to_path_buf(),
            aps_version: None,
            diagnostics: vec![package_error_diagnostic(
                &e,
                path,
                path.file_name().unwrap_or("package.app.zip"),
            )],
        },
    };
    report.path = path.to_path_buf();
    Ok(report)
}

struct TempDir(Utf8PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let base = Utf8PathBuf::try_from(std::env::temp_dir())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        for n in 0..1000u32 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let p = base.join(format!("aps-check-{}-{nanos}-{n}", std::process::id()));
            match std::fs::create_dir(&p) {
                Ok(()) => return Ok(TempDir(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("no free temporary folder name"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `path` is the package (folder or zip) as given; messages name files relative to it so a
/// report reads the same wherever the package lies.
fn package_error_diagnostic(e: &PackageError, path: &Utf8Path, file: &str) -> Diagnostic {
    match e {
        PackageError::Meta { source, .. } => source.to_diagnostic(),
        PackageError::Listing { source, .. } => source.to_diagnostic(),
        other => {
            let message = other
                .to_string()
                .replace(&format!("{path}: "), "")
                .replace(&format!("{path}/"), "")
                .replace(path.as_str(), file);
            // The location already names the file; keep the message free of it.
            let message = message
                .strip_prefix(&format!("{file}: "))
                .map(str::to_string)
                .unwrap_or(message);
            Diagnostic::error(other.code(), Location::file(file), message)
        }
    }
}

fn check_dir(root: &Utf8Path, limits: &Limits) -> CheckReport {
    let mut diags = Vec::new();
    let mut aps_version = None;
    match Package::open_dir(root, limits) {
        Ok(pkg) => {
            aps_version = Some(pkg.meta.aps_version);
            diags.extend(pkg.warnings.iter().cloned());
            let text = std::fs::read_to_string(root.join("APP-META.xml")).unwrap_or_default();
            let mut s = Semantic {
                root,
                locator: Locator::new(&text, limits),
                diags: Vec::new(),
            };
            s.check(&pkg.meta);
            diags.extend(s.diags);
        }
        Err(e) => diags.push(package_error_diagnostic(&e, root, "APP-META.xml")),
    }
    match verify_listing(root, limits) {
        Ok(r) => diags.extend(r.diagnostics),
        Err(PackageError::Listing {
            source: ListingError::Absent { .. },
            ..
        }) => {
            if aps_version == Some(ApsVersion::V1_2) {
                diags.push(Diagnostic::warning(
                    codes::LISTING_ABSENT,
                    Location::file("APP-LIST.xml"),
                    "an APS 1.2 package without APP-LIST.xml; expected a listing of every file with its size and SHA-256",
                ));
            }
        }
        Err(e) => diags.push(package_error_diagnostic(&e, root, "APP-LIST.xml")),
    }
    CheckReport {
        path: root.to_path_buf(),
        aps_version,
        diagnostics: diags,
    }
}

/// Finds elements again in the source text, to give semantic findings a line and a path.
struct Locator<'t> {
    doc: Option<roxmltree::Document<'t>>,
}

impl<'t> Locator<'t> {
    fn new(text: &'t str, limits: &Limits) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Locator {
            doc: xml::parse(text, limits).ok(),
        }
    }

    /// The first element named `name`, wherever it is.
    fn first(&self, name: &str) -> Location {
        self.doc
            .as_ref()
            .and_then(|d| {
                d.descendants()
                    .find(|n| n.is_element() && n.tag_name().name() == name)
            })
            .map(|n| xml::location("APP-META.xml", n))
            .unwrap_or_else(|| Location::file("APP-META.xml"))
    }

    /// The `nth` (0-based) element named `name` whose attribute or child text `key` is `value`.
    fn find(&self, name: &str, key: &str, value: &str, nth: usize) -> Location {
        let Some(doc) = &self.doc else {
            return Location::file("APP-META.xml");
        };
        doc.descendants()
            .filter(|n| n.is_element() && n.tag_name().name() == name)
            .filter(|n| {
                n.attribute(key) == Some(value)
                    || n.children().any(|c| {
                        c.is_element() && c.tag_name().name() == key && xml::text(c) == value
                    })
            })
            .nth(nth)
            .map(|n| xml::location("APP-META.xml", n))
            .unwrap_or_else(|| Location::file("APP-META.xml"))
    }
}

struct Semantic<'a, 't> {
    root: &'a Utf8Path,
    locator: Locator<'t>,
    diags: Vec<Diagnostic>,
}

impl Semantic<'_, '_> {
    fn check(&mut self, meta: &AppMeta) {
        let globals = meta.all_global_settings();
        self.settings(&globals, &[]);
        self.service(&meta.service, &globals);
    }

    fn service(&mut self, svc: &Service, globals: &[&Setting]) {
        let p = &svc.provision;
        for (elem, script) in [
            ("configuration-script", &p.configuration_script),
            ("verification-script", &p.verification_script),
            ("resource-script", &p.resource_script),
            ("backup-script", &p.backup_script),
        ] {
            if let Some(s) = script {
                self.script(elem, s);
            }
        }
        self.settings(&svc.all_settings(), globals);
        let mut db_ids: HashMap<&str, usize> = HashMap::new();
        for db in &svc.requirements.databases {
            if db.id.is_empty() {
                continue;
            }
            let n = db_ids.entry(db.id.as_str()).or_insert(0);
            *n += 1;
            if *n == 2 {
                let loc = self.locator.find("db", "id", &db.id, 1);
                self.diags.push(Diagnostic::error(
                    codes::DUPLICATE_DB_ID,
                    loc,
                    format!("database id `{}` is declared twice in service `{}`; expected unique ids (they name the DB_<id>_* variables)", db.id, svc.id),
                ));
            }
        }
        for child in &svc.children {
            self.service(child, globals);
        }
    }

    fn script(&mut self, elem: &str, s: &Script) {
        let loc = || {
            let found = self.locator.find(elem, "name", &s.name, 0);
            if found.line.is_none() && elem == "configuration-script" {
                // APS 1.0 declares no script element, only its language; point at that.
                self.locator.first("configuration-script-language")
            } else {
                found
            }
        };
        let path = self.root.join("scripts").join(&s.name);
        let safe = crate::listing::unsafe_relative(&s.name).is_none();
        if !safe || !path.is_file() {
            self.diags.push(Diagnostic::error(
                codes::SCRIPT_MISSING,
                loc(),
                format!(
                    "{elem} `{}` is declared but scripts/{} is not a file in the package",
                    s.name, s.name
                ),
            ));
        }
        if !s.language.is_empty() && !KNOWN_SCRIPT_LANGUAGES.contains(&s.language.as_str()) {
            self.diags.push(Diagnostic::warning(
                codes::UNKNOWN_SCRIPT_LANGUAGE,
                loc(),
                format!(
                    "{elem} `{}` has script-language `{}`; expected one of {} (a controller refuses to run it)",
                    s.name,
                    s.language,
                    KNOWN_SCRIPT_LANGUAGES.join(", ")
                ),
            ));
        }
    }

    fn settings(&mut self, settings: &[&Setting], globals: &[&Setting]) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for g in globals {
            seen.insert(g.id.as_str(), 1);
        }
        for s in settings {
            let n = seen.entry(s.id.as_str()).or_insert(0);
            *n += 1;
            let loc = self
                .locator
                .find("setting", "id", &s.id, (*n).saturating_sub(1));
            if *n > 1 {
                self.diags.push(Diagnostic::error(
                    codes::DUPLICATE_SETTING_ID,
                    loc.clone(),
                    format!("setting id `{}` is declared more than once; expected unique ids (they name SETTINGS_<id>)", s.id),
                ));
            }
            let is_enum = s.kind == SettingType::Enum;
            if is_enum && s.choices.is_empty() {
                self.diags.push(Diagnostic::error(
                    codes::ENUM_WITHOUT_CHOICES,
                    loc.clone(),
                    format!(
                        "enum setting `{}` has no <choice>; expected at least one",
                        s.id
                    ),
                ));
            }
            if let Some(re) = &s.regex
                && let Err(e) = compile_regex(re)
            {
                let first = e.to_string().lines().last().unwrap_or_default().to_string();
                self.diags.push(Diagnostic::error(
                    codes::BAD_REGEX,
                    loc.clone(),
                    format!("setting `{}` has regex {re:?} that does not compile ({first}); expected a valid regular expression", s.id),
                ));
            }
            if let Some(d) = &s.default_value
                && xml::find_placeholder(d).is_none()
            {
                if is_enum {
                    if !s.choices.is_empty() && !s.choices.iter().any(|c| c.id == *d) {
                        self.diags.push(Diagnostic::error(
                            codes::ENUM_DEFAULT_NOT_CHOICE,
                            loc.clone(),
                            format!(
                                "enum setting `{}` has default-value {d:?}, which is not a choice; expected one of {}",
                                s.id,
                                s.choices.iter().map(|c| c.id.as_str()).collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                } else if !d.is_empty()
                    && let Err(e) = validate_setting_value(s, d)
                {
                    self.diags.push(Diagnostic::warning(
                        codes::DEFAULT_VALUE_INVALID,
                        loc.clone(),
                        format!("default-value does not pass the setting's own validation: {e}"),
                    ));
                }
            }
        }
    }
}
