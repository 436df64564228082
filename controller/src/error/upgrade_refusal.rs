//! Why an upgrade was refused at one of its checks, before anything of the instance changed.

use camino::Utf8PathBuf;

use super::refusal::bullet;
use super::{ErrorKind, Override};

/// An upgrade's refusal: each names what is wrong and what a person can do about it.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeRefusal {
    #[error(
        "the package {package} is {new}, another application than the instance's {installed}; an upgrade keeps the application (same package id, or the same name for packages without one)"
    )]
    OtherApplication {
        package: Utf8PathBuf,
        installed: String,
        new: String,
    },
    #[error(
        "the package {package} ({new}) cannot upgrade the installed {installed}: {}",
        if rules.is_empty() { "it declares no upgrade or patch rule".to_owned() } else { format!("none of its rules matches:\n{}", bullet(rules)) }
    )]
    NoRuleMatches {
        package: Utf8PathBuf,
        installed: String,
        new: String,
        /// Each rule as the package writes it, with why it does not hold.
        rules: Vec<String>,
    },
    #[error(
        "the package {package} has {} error(s) that `aps-controller package check` reports; fix the package:\n{}",
        problems.len(), bullet(problems)
    )]
    PackageInvalid {
        package: Utf8PathBuf,
        problems: Vec<String>,
    },
    #[error(
        "{} requirement(s) of the new package are not met; provide them (controller.toml, the database servers, the disk) or keep the installed version:\n{}",
        problems.len(), bullet(problems)
    )]
    Requirements { problems: Vec<String> },
    #[error(
        "{} problem(s) with the settings of the new version; give each with {} ID=VALUE:\n{}",
        problems.len(), Override::Setting, bullet(problems)
    )]
    Settings { problems: Vec<String> },
    #[error("the web root {dir} cannot be upgraded: {reason}")]
    WebRoot { dir: Utf8PathBuf, reason: String },
}

impl UpgradeRefusal {
    /// The class of the refusal, as the control panel sees it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            UpgradeRefusal::OtherApplication { .. }
            | UpgradeRefusal::NoRuleMatches { .. }
            | UpgradeRefusal::PackageInvalid { .. } => ErrorKind::InvalidPackage,
            UpgradeRefusal::Requirements { .. } => ErrorKind::RequirementUnmet,
            UpgradeRefusal::Settings { .. } => ErrorKind::InvalidSettings,
            UpgradeRefusal::WebRoot { .. } => ErrorKind::DestinationRefused,
        }
    }

    /// Each problem on its own, for JSON (`problems`).
    pub fn problems(&self) -> Vec<String> {
        match self {
            UpgradeRefusal::NoRuleMatches { rules, .. } => rules.clone(),
            UpgradeRefusal::PackageInvalid { problems, .. }
            | UpgradeRefusal::Requirements { problems }
            | UpgradeRefusal::Settings { problems } => problems.clone(),
            other => vec![other.to_string()],
        }
    }
}
