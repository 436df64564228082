//! What a request must pass before a handler runs: the bearer token, and the folders the
//! paths it names may lie in.

use aps_controller::paths::resolve_existing as resolve;
use camino::{Utf8Path, Utf8PathBuf};
use subtle::ConstantTimeEq;

use super::App;
use super::answer::{Answer, problem};
use super::http::Request;

/// Whether `path`, with symlinks and `..` resolved, lies inside one of `dirs`.
pub(super) fn resolved_inside(path: &Utf8Path, dirs: &[Utf8PathBuf]) -> bool {
    resolve(path).is_some_and(|real| dirs.iter().any(|d| real.starts_with(d)))
}

/// `dirs` as a message names them.
pub(super) fn listed(dirs: &[Utf8PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// An INSTANCE.toml, package or folder holding them that someone other than root or the
/// controller's user could change would let them choose what the controller registers and
/// runs: refused.
pub(super) fn owned_by_us(field: &str, path: &Utf8Path) -> Result<(), Answer> {
    use std::os::unix::fs::MetadataExt;
    let me = aps_controller::account::Account::current().uid;
    let mut checked = vec![path.to_owned()];
    if let Some(parent) = path.parent() {
        checked.push(parent.to_owned());
    }
    if path.is_dir() {
        checked.push(path.join("scripts"));
        checked.push(path.join("APP-META.xml"));
    }
    for p in checked {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let others_write = meta.mode() & 0o022 != 0 && !meta.file_type().is_symlink();
        if (meta.uid() != 0 && meta.uid() != me) || others_write {
            return Err(problem(
                403,
                "path-not-allowed",
                format!(
                    "`{field}`: {p} can be changed by a user other than root or the controller's (owner uid {}, mode {:o}); only files the control panel owns are registered",
                    meta.uid(),
                    meta.mode() & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

impl App {
    pub(super) fn authorized(&self, request: &Request) -> bool {
        request
            .headers_named("Authorization")
            .filter_map(|v| v.strip_prefix("Bearer "))
            // Equal without an early exit, so response times do not reveal how much of a
            // guess was right.
            .any(|given| bool::from(given.trim().as_bytes().ct_eq(self.token.as_bytes())))
    }

    /// `path` must be absolute and, resolved, lie inside one of the allowed folders.
    pub(super) fn allowed(&self, field: &str, path: &Utf8PathBuf) -> Result<(), Answer> {
        absolute(field, path)?;
        if resolved_inside(path, &self.allowed) {
            return Ok(());
        }
        Err(problem(
            403,
            "path-not-allowed",
            format!(
                "`{field}` is {path}, which (with symlinks and `..` resolved) is not inside a folder the adapter may touch ({}); start `serve` with `--allow-dir` for it",
                listed(&self.allowed)
            ),
        ))
    }

    /// An INSTANCE.toml may be registered over HTTP only from a `--register-dir`: a file
    /// anywhere else may have been written by root on a tenant's behalf (a backup's `to`).
    pub(super) fn registrable(&self, file: &Utf8PathBuf) -> Result<(), Answer> {
        if self.register_dirs.is_empty() {
            return Err(problem(
                403,
                "path-not-allowed",
                "registration over HTTP is off: start `serve` with `--register-dir DIR` and put the INSTANCE.toml files to register there (or register with the CLI)",
            ));
        }
        if resolved_inside(file, &self.register_dirs) {
            return Ok(());
        }
        Err(problem(
            403,
            "path-not-allowed",
            format!(
                "`file` is {file}, which (with symlinks and `..` resolved) is not inside a folder of `--register-dir` ({})",
                listed(&self.register_dirs)
            ),
        ))
    }

    /// A backup written at a path the controller reads as configuration would let a tenant
    /// (whose `sufficient` script writes the file's content) choose that configuration: no
    /// backup goes into a `--register-dir`, nor under a name the controller reads as an
    /// instance file or a package.
    pub(super) fn never_configuration(
        &self,
        field: &str,
        path: &Utf8PathBuf,
    ) -> Result<(), Answer> {
        let name = path.file_name().unwrap_or("").to_ascii_lowercase();
        let read_as = [".toml", ".zip", ".xml"]
            .into_iter()
            .find(|suffix| name.ends_with(suffix));
        if let Some(suffix) = read_as {
            return Err(problem(
                403,
                "path-not-allowed",
                format!(
                    "`{field}` is {path}: a backup is never written under a {suffix} name, which the controller would read as an instance file or a package; choose another name (e.g. .aps.tar.zst)"
                ),
            ));
        }
        let real = resolve(path).unwrap_or_else(|| path.clone());
        if let Some(dir) = self.register_dirs.iter().find(|d| real.starts_with(d)) {
            return Err(problem(
                403,
                "path-not-allowed",
                format!(
                    "`{field}` is {path}, inside the --register-dir {dir}: a backup is never written where INSTANCE.toml files are registered from"
                ),
            ));
        }
        Ok(())
    }
}

/// Paths in requests are the server's paths; a relative one would depend on its working folder.
pub(super) fn absolute(field: &str, path: &Utf8PathBuf) -> Result<(), Answer> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(problem(
            400,
            "bad-request",
            format!("`{field}` is {path:?}; expected an absolute path"),
        ))
    }
}
