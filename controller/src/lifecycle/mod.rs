//! What install and configure check before they change anything: the instance's settings
//! resolved from what a person gave and what the package declares ([`settings`], from
//! [`given`]), and the package's requirements against what this host offers
//! ([`requirements`]). Pure checks: nothing here creates, writes or runs.
//!
//! Each check collects every problem and refuses once with the whole list, so a person fixes
//! everything in one round. The decisions where the standard is silent are in
//! docs/lifecycle.md.

pub mod given;
pub mod requirements;
pub mod settings;

pub use given::{GivenSettings, SettingsFileError};
pub use requirements::{
    DatabaseChoice, DatabaseServerFact, HostOffer, RequirementReport, RequirementWarning,
    RequirementsRefused, UnmetRequirement, check_requirements,
};
pub use settings::{
    ConfiguredSettings, ResolvedSettings, SettingProblem, SettingsRefused, UniqScope,
    generate_missing, is_same_application, resolve_configure, resolve_install,
};
