//! Opening an instance's package, as registered: a folder, or a `.app.zip` unpacked once into
//! the state folder (scripts need real files to run, and unpacking on every operation would
//! be slow and would let the archive change under a registered instance unnoticed).

use std::fs;

use aps_meta::{AppMeta, Setting};
use camino::{Utf8Path, Utf8PathBuf};

use super::store::StateDir;

/// A package ready to use: its folder on disk and its metadata.
#[derive(Debug, Clone)]
pub struct OpenedPackage {
    /// The package folder itself, or the unpacked copy of a `.app.zip`.
    pub root: Utf8PathBuf,
    pub meta: AppMeta,
}

/// The package could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("package {path}: {message}")]
pub struct PackageOpenError {
    pub path: Utf8PathBuf,
    pub message: String,
}

/// Whether `path` names an archive (`*.zip`, `*.app.zip`) rather than a folder.
pub fn is_zip(path: &Utf8Path) -> bool {
    path.is_file()
        && path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
}

/// Opens the package at `path`. A `.app.zip` is unpacked into
/// `<state>/packages/<sha256 of the zip>/` the first time and reused afterwards.
pub fn open_package(state: &StateDir, path: &Utf8Path) -> Result<OpenedPackage, PackageOpenError> {
    let fail = |message: String| PackageOpenError {
        path: path.to_owned(),
        message,
    };
    let root = if is_zip(path) {
        unpacked_dir(state, path).map_err(fail)?
    } else if path.is_dir() {
        path.to_owned()
    } else {
        return Err(fail("is neither a folder nor a .zip file".into()));
    };
    let pkg = aps_meta::Package::open_dir(&root, &aps_meta::Limits::default())
        .map_err(|e| fail(e.to_string()))?;
    Ok(OpenedPackage {
        root,
        meta: pkg.meta,
    })
}

fn unpacked_dir(state: &StateDir, zip: &Utf8Path) -> Result<Utf8PathBuf, String> {
    let (_, digest) = crate::digest::sha256_file(zip).map_err(|e| e.to_string())?;
    let packages = state.packages_dir();
    let dest = packages.join(&digest);
    if dest.is_dir() {
        return Ok(dest);
    }
    fs::create_dir_all(&packages).map_err(|e| format!("{packages}: {e}"))?;
    // Unpack beside the final place and rename, so a half-unpacked folder is never reused
    // and two processes unpacking the same zip do not mix their files.
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(&packages)
        .map_err(|e| format!("{packages}: {e}"))?;
    let tmp_path = Utf8Path::from_path(tmp.path()).ok_or("state folder is not UTF-8")?;
    let limits = aps_meta::Limits::default();
    aps_meta::unpack_zip(zip, tmp_path, &limits).map_err(|e| e.to_string())?;
    check_listing(tmp_path, &limits)?;
    match fs::rename(tmp_path, &dest) {
        Ok(()) => {
            // The folder now lives on under its final name; nothing left to clean up.
            let _ = tmp.keep();
            Ok(dest)
        }
        // Another process won the race with the same content.
        Err(_) if dest.is_dir() => Ok(dest),
        Err(e) => Err(format!("{dest}: {e}")),
    }
}

/// A zip whose files differ from its APP-LIST.xml was altered after packaging: refused.
/// Packages without APP-LIST.xml (APS 1.0/1.1) and stale entries (listed but absent, common
/// in real packages) are accepted.
fn check_listing(root: &Utf8Path, limits: &aps_meta::Limits) -> Result<(), String> {
    match aps_meta::verify_listing(root, limits) {
        Ok(r) => {
            let mut bad: Vec<String> = r.digest_mismatches.clone();
            bad.extend(
                r.size_mismatches
                    .iter()
                    .map(|m| format!("{} (listed {} bytes, is {})", m.name, m.listed, m.actual)),
            );
            if bad.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "files differ from APP-LIST.xml (altered after packaging?): {}",
                    bad.join(", ")
                ))
            }
        }
        Err(aps_meta::PackageError::Listing {
            source: aps_meta::ListingError::Absent { .. },
            ..
        }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// `Err(message)` when `value` is not acceptable for `setting`.
pub(crate) fn check_setting_value(setting: &Setting, value: &str) -> Result<(), String> {
    aps_meta::validate_setting_value(setting, value).map_err(|e| e.to_string())
}
