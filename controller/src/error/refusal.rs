//! Why an install, a configure, an enable or a disable was refused before anything was made
//! or run: each refusal lists every problem found at its step and says what to do.

use camino::Utf8PathBuf;

use super::ErrorKind;
use crate::overrides::Override;

/// An install refused at one of its checks; nothing was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallRefusal {
    #[error(
        "instance name {name:?} is invalid: expected [a-z0-9][a-z0-9._-]{{0,62}}; choose another {}",
        Override::Name
    )]
    InvalidName { name: String },
    #[error(
        "an instance named {name:?} is already registered; choose another {}, or remove it first (`aps-controller instance remove {name}`)",
        Override::Name
    )]
    NameTaken { name: String },
    #[error(
        "the package {package} has {} error(s) that `aps-controller package check` reports; fix the package:\n{}",
        problems.len(), bullet(problems)
    )]
    PackageInvalid {
        package: Utf8PathBuf,
        problems: Vec<String>,
    },
    #[error(
        "{} requirement(s) of the package are not met by this host; provide them (controller.toml, the database servers, the disk) or install another package:\n{}",
        problems.len(), bullet(problems)
    )]
    Requirements { problems: Vec<String> },
    #[error(
        "{} problem(s) with the settings; give each with {} ID=VALUE or in {}:\n{}",
        problems.len(), Override::Setting, Override::SettingsFile, bullet(problems)
    )]
    Settings { problems: Vec<String> },
    #[error(
        "database requirement {id:?}: {reason}; give {db} {id}=SERVER with a server of controller.toml's [database-servers], or {db} {id}=existing:FILE", db = Override::Database
    )]
    Database { id: String, reason: String },
    #[error(
        "the web root {dir} already holds {} entr{} ({}); install into an empty or new folder, or give {} to install beside them (the package's names must not be among them)",
        entries.len(), if entries.len() == 1 { "y" } else { "ies" }, sample(entries), Override::Force
    )]
    WebRootOccupied {
        dir: Utf8PathBuf,
        entries: Vec<String>,
    },
    #[error(
        "the web root {dir} already holds {} of the package's own names ({}); {} never overwrites a tenant's files: move them away first",
        names.len(), sample(names), Override::Force
    )]
    WebRootCollision {
        dir: Utf8PathBuf,
        names: Vec<String>,
    },
    #[error("the web root {dir} cannot be used: {reason}")]
    WebRoot { dir: Utf8PathBuf, reason: String },
}

impl InstallRefusal {
    /// The class of the refusal, as the control panel sees it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            InstallRefusal::InvalidName { .. } => ErrorKind::Usage,
            InstallRefusal::NameTaken { .. } => ErrorKind::InstanceExists,
            InstallRefusal::PackageInvalid { .. } => ErrorKind::InvalidPackage,
            InstallRefusal::Requirements { .. } | InstallRefusal::Database { .. } => {
                ErrorKind::RequirementUnmet
            }
            InstallRefusal::Settings { .. } => ErrorKind::InvalidSettings,
            InstallRefusal::WebRootOccupied { .. }
            | InstallRefusal::WebRootCollision { .. }
            | InstallRefusal::WebRoot { .. } => ErrorKind::DestinationRefused,
        }
    }

    /// Each problem on its own, for JSON (`problems`).
    pub fn problems(&self) -> Vec<String> {
        match self {
            InstallRefusal::PackageInvalid { problems, .. }
            | InstallRefusal::Requirements { problems }
            | InstallRefusal::Settings { problems } => problems.clone(),
            InstallRefusal::WebRootOccupied { entries, .. } => entries.clone(),
            InstallRefusal::WebRootCollision { names, .. } => names.clone(),
            other => vec![other.to_string()],
        }
    }
}

/// One problem per line, indented as a list under the refusal's first line.
pub(super) fn bullet(items: &[String]) -> String {
    items
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first few names, then how many more.
fn sample(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

/// A configure, enable or disable refused at its checks: nothing ran and the record is as it
/// was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigureRefusal {
    #[error(
        "{} problem(s) with the settings, nothing was run and the record is unchanged; give each with {} ID=VALUE or in {}:\n{}",
        problems.len(), Override::Setting, Override::SettingsFile, bullet(problems)
    )]
    Settings { problems: Vec<String> },
    #[error(
        "its package {application} ({package}) declares no status-control in its configuration-script: the package has no way to switch the site on or off, so the controller cannot either; the instance stays as it is"
    )]
    NoStatusControl {
        application: String,
        package: Utf8PathBuf,
    },
}

impl ConfigureRefusal {
    /// The class of the refusal, as the control panel sees it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ConfigureRefusal::Settings { .. } => ErrorKind::InvalidSettings,
            // The request asks for what this instance's package does not offer.
            ConfigureRefusal::NoStatusControl { .. } => ErrorKind::Usage,
        }
    }

    /// Each problem on its own, for JSON (`problems`).
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigureRefusal::Settings { problems } => problems.clone(),
            other => vec![other.to_string()],
        }
    }
}

/// A removal refused before `configure remove` ran; nothing was removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoveRefusal {
    /// The record does not say what an install made (registered from INSTANCE.toml, or
    /// installed before records said it): nothing can be taken away safely.
    #[error(
        "the controller did not install it (or its record predates what an install records), so it cannot tell its files and databases from the tenant's; use {} to remove the record only",
        Override::KeepData
    )]
    NotInstalled,
    /// A database the install created lives on a server controller.toml no longer names.
    #[error(
        "its database {id:?} was created on the database server {server:?}, which controller.toml no longer declares ({reason}); declare it again, or use {} to remove the record only",
        Override::KeepData
    )]
    ServerGone {
        id: String,
        server: String,
        reason: String,
    },
}

impl RemoveRefusal {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RemoveRefusal::NotInstalled => ErrorKind::Usage,
            RemoveRefusal::ServerGone { .. } => ErrorKind::RequirementUnmet,
        }
    }
}
