//! What a migration or a restore onto a new instance needs besides the install and the
//! restore themselves ([`crate::controller::Controller::install_then`] joins those): the
//! settings a copy of an instance starts from, the backup's manifest, and the package a
//! backup was made with among those of the registered instances.

use camino::{Utf8Path, Utf8PathBuf};

use crate::archive::ManifestHeader;
use crate::controller::Controller;
use crate::error::OperationError;
use crate::lifecycle::GivenSettings;

/// The package of instance `source` and its settings as the given values of a copy: every
/// setting the package declares and the source holds, except `uniq` ones (the copy must not
/// hold the same value; the package's default or a value the person gives is used) and those
/// nobody may give (hidden, static text: the package sets them, its `configure install` anew).
/// `installation-only` settings are kept: the copy is the same site.
pub fn copy_settings(
    ctl: &Controller,
    source: &str,
) -> Result<(Utf8PathBuf, GivenSettings), OperationError> {
    let instance = ctl.find_instance(source)?;
    let meta = ctl.open_package(&instance)?.meta;
    let mut given = GivenSettings::new();
    let declared = meta
        .service
        .all_settings()
        .into_iter()
        .chain(meta.all_global_settings());
    for setting in declared {
        // A hidden one the package computes anew (`configure install` returns it).
        if setting.uniq.is_some() || crate::lifecycle::settings::not_settable(setting).is_some() {
            continue;
        }
        if let Some(value) = instance.settings.get(setting.id.as_str()) {
            given.insert(setting.id.as_str(), value.clone());
        }
    }
    Ok((instance.package.clone(), given))
}

/// The header of the backup at `file`, after the whole file is verified and found to be this
/// controller's (or imported): nothing is installed from a file that would not restore.
pub fn backup_header(
    ctl: &Controller,
    file: &Utf8Path,
    identity: Option<&Utf8Path>,
) -> Result<ManifestHeader, OperationError> {
    ctl.verify_archive(file, identity).map(|m| m.header)
}

/// The package, among those registered instances run, whose id (else name), version and
/// release are the backup's; `None` when no instance runs it.
pub fn registered_package(
    ctl: &Controller,
    header: &ManifestHeader,
) -> Result<Option<Utf8PathBuf>, OperationError> {
    for instance in ctl.instances()? {
        // An instance whose package is gone or broken cannot lend it.
        let Ok(package) = ctl.open_package(&instance) else {
            continue;
        };
        let meta = package.meta;
        let same = match meta.id.as_deref() {
            Some(id) if !header.package_id.is_empty() => id == header.package_id,
            _ => meta.name == header.package_name,
        };
        if same && meta.version == header.version && meta.release == header.release {
            return Ok(Some(instance.package.clone()));
        }
    }
    Ok(None)
}
