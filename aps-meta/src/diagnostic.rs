//! Diagnostics: one finding about a package, with a stable code and the place it points at.
//!
//! The codes are kebab-case names, stable across releases (tests and users grep for them);
//! the table with meaning and severity is `aps-meta/DIAGNOSTICS.md`.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// Where a diagnostic points. `line`/`column` are 1-based; `element_path` is like
/// `/application/service/settings/setting[3]` (an index only where siblings share the name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Location {
    pub file: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub element_path: Option<String>,
}

impl Location {
    pub fn file(file: impl Into<String>) -> Self {
        Location {
            file: file.into(),
            ..Default::default()
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if let Some(p) = &self.element_path {
            write!(f, " ({p})")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub code: &'static str,
    pub severity: Severity,
    pub location: Location,
    pub message: String,
}

impl Diagnostic {
    pub fn error(code: &'static str, location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            location,
            message: message.into(),
        }
    }

    pub fn warning(code: &'static str, location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Warning,
            location,
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}: {sev}[{}]: {}",
            self.location, self.code, self.message
        )
    }
}

/// Every diagnostic code, as constants (see DIAGNOSTICS.md for meaning and severity).
pub mod codes {
    // Reading XML.
    pub const XML_NOT_WELL_FORMED: &str = "xml-not-well-formed";
    pub const XML_DTD_REFUSED: &str = "xml-dtd-refused";
    pub const XML_TOO_LARGE: &str = "xml-too-large";
    pub const XML_TOO_DEEP: &str = "xml-too-deep";
    pub const XML_NOT_UTF8: &str = "xml-not-utf8";
    // APP-META.xml structure.
    pub const META_MISSING: &str = "meta-missing";
    pub const NOT_APS_METADATA: &str = "not-aps-metadata";
    pub const APS2_UNSUPPORTED: &str = "aps2-unsupported";
    pub const UNKNOWN_APS_VERSION: &str = "unknown-aps-version";
    pub const MISSING_NAMESPACE: &str = "missing-namespace";
    pub const MISSING_ELEMENT: &str = "missing-element";
    pub const MISSING_ATTRIBUTE: &str = "missing-attribute";
    pub const INVALID_VALUE: &str = "invalid-value";
    pub const PLACEHOLDER_VALUE: &str = "placeholder-value";
    pub const INSTALLED_SIZE_NOT_NUMERIC: &str = "installed-size-not-numeric";
    pub const LEGACY_SCRIPT_LANGUAGE: &str = "legacy-script-language";
    pub const UNKNOWN_SETTING_TYPE: &str = "unknown-setting-type";
    pub const MATCH_UNPARSABLE: &str = "match-unparsable";
    // Semantic checks.
    pub const SCRIPT_MISSING: &str = "script-missing";
    pub const UNKNOWN_SCRIPT_LANGUAGE: &str = "unknown-script-language";
    pub const DUPLICATE_SETTING_ID: &str = "duplicate-setting-id";
    pub const ENUM_WITHOUT_CHOICES: &str = "enum-without-choices";
    pub const ENUM_DEFAULT_NOT_CHOICE: &str = "enum-default-not-choice";
    pub const DEFAULT_VALUE_INVALID: &str = "default-value-invalid";
    pub const BAD_REGEX: &str = "bad-regex";
    pub const DB_WITHOUT_ID: &str = "db-without-id";
    pub const DUPLICATE_DB_ID: &str = "duplicate-db-id";
    // APP-LIST.xml.
    pub const LISTING_ABSENT: &str = "listing-absent";
    pub const LISTING_NOT_WELL_FORMED: &str = "listing-not-well-formed";
    pub const LISTING_INVALID_ENTRY: &str = "listing-invalid-entry";
    pub const LISTING_FILE_MISSING: &str = "listing-file-missing";
    pub const LISTING_FILE_UNLISTED: &str = "listing-file-unlisted";
    pub const LISTING_SIZE_MISMATCH: &str = "listing-size-mismatch";
    pub const LISTING_DIGEST_MISMATCH: &str = "listing-digest-mismatch";
    // Archives and the file system.
    pub const ZIP_INVALID: &str = "zip-invalid";
    pub const ZIP_UNSAFE_PATH: &str = "zip-unsafe-path";
    pub const ZIP_SYMLINK: &str = "zip-symlink";
    pub const ZIP_TOO_MANY_MEMBERS: &str = "zip-too-many-members";
    pub const ZIP_TOO_LARGE: &str = "zip-too-large";
    pub const PACKAGE_UNREADABLE: &str = "package-unreadable";
    pub const PACKAGE_SYMLINK: &str = "package-symlink";

    /// All codes, for the documentation test that keeps DIAGNOSTICS.md complete.
    pub const ALL: &[&str] = &[
        XML_NOT_WELL_FORMED,
        XML_DTD_REFUSED,
        XML_TOO_LARGE,
        XML_TOO_DEEP,
        XML_NOT_UTF8,
        META_MISSING,
        NOT_APS_METADATA,
        APS2_UNSUPPORTED,
        UNKNOWN_APS_VERSION,
        MISSING_NAMESPACE,
        MISSING_ELEMENT,
        MISSING_ATTRIBUTE,
        INVALID_VALUE,
        PLACEHOLDER_VALUE,
        INSTALLED_SIZE_NOT_NUMERIC,
        LEGACY_SCRIPT_LANGUAGE,
        UNKNOWN_SETTING_TYPE,
        MATCH_UNPARSABLE,
        SCRIPT_MISSING,
        UNKNOWN_SCRIPT_LANGUAGE,
        DUPLICATE_SETTING_ID,
        ENUM_WITHOUT_CHOICES,
        ENUM_DEFAULT_NOT_CHOICE,
        DEFAULT_VALUE_INVALID,
        BAD_REGEX,
        DB_WITHOUT_ID,
        DUPLICATE_DB_ID,
        LISTING_ABSENT,
        LISTING_NOT_WELL_FORMED,
        LISTING_INVALID_ENTRY,
        LISTING_FILE_MISSING,
        LISTING_FILE_UNLISTED,
        LISTING_SIZE_MISMATCH,
        LISTING_DIGEST_MISMATCH,
        ZIP_INVALID,
        ZIP_UNSAFE_PATH,
        ZIP_SYMLINK,
        ZIP_TOO_MANY_MEMBERS,
        ZIP_TOO_LARGE,
        PACKAGE_UNREADABLE,
        PACKAGE_SYMLINK,
    ];
}
