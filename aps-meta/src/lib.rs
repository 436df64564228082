//! `aps-meta`: the package side of the Application Packaging Standard (APS 1.0–1.2).
//!
//! It reads `APP-META.xml` into a typed [`model`], verifies `APP-LIST.xml`, and reads packages
//! from folders and `.app.zip` archives, safely (no entity expansion, bounded sizes, no path
//! escapes). It spawns no processes and keeps no state: running scripts and keeping instances is
//! the controller's job.
//!
//! Entry points: [`Package::open_dir`], [`parse_app_meta`], [`verify_listing`], [`unpack_zip`],
//! [`check_package`], [`setting_value::validate_setting_value`],
//! [`setting_generate::generate_setting_value`], [`version_match`].
//! Diagnostic codes are listed in `DIAGNOSTICS.md` and in [`diagnostic::codes`].

pub mod check;
pub mod diagnostic;
pub mod digest;
pub mod limits;
pub mod listing;
pub mod listing_verify;
pub mod meta_parse;
pub mod model;
pub mod package;
pub mod setting_generate;
pub mod setting_value;
pub mod version_match;
mod xml;
pub mod zip;

pub use check::{CheckError, CheckReport, check_package};
pub use compact_str::CompactString;
pub use diagnostic::{Diagnostic, Location, Severity};
pub use limits::Limits;
pub use listing::{ListEntry, ListingError, parse_app_list};
pub use listing_verify::{ListingReport, SizeMismatch, verify_listing};
pub use meta_parse::{
    IMPLICIT_SERVICE_ID, MetaError, parse_app_meta, parse_app_meta_bytes,
    parse_app_meta_with_limits,
};
pub use model::*;
pub use package::{Package, PackageError};
pub use setting_generate::{GenerateError, generate_setting_value};
pub use setting_value::{SettingValueError, validate_setting_value};
pub use zip::unpack_zip;
