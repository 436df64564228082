//! Paths of the controller's own making: absolute against the current folder, lexically
//! normalised, the private state folder, and programs found on a search path. One place, so
//! that the registry, the operations and the backup key agree on what a relative path means,
//! and interpreters and database tools are found by the same rule.

use std::ffi::OsStr;

use camino::{Utf8Component, Utf8Path, Utf8PathBuf};

/// `path` made absolute against the current folder (the CLI's paths are relative to it); left
/// as it is when the current folder cannot be read or is not UTF-8.
pub fn absolute(path: &Utf8Path) -> Utf8PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    match std::env::current_dir()
        .ok()
        .and_then(|d| Utf8PathBuf::from_path_buf(d).ok())
    {
        Some(cwd) => cwd.join(path),
        None => path.to_owned(),
    }
}

/// `path` with symlinks and `..` resolved as far as it exists, the rest appended. A `..` in the
/// part that does not exist gives `None`: it cannot be placed without the folders existing (a
/// `.` there is dropped, as `Utf8Path` reads it). One rule for the registry's system-folder check and the
/// HTTP adapter's allowed folders.
pub fn resolve_existing(path: &Utf8Path) -> Option<Utf8PathBuf> {
    let mut existing = path.to_owned();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize_utf8() {
            let mut out = real;
            for c in rest.iter().rev() {
                out.push(c);
            }
            return Some(out);
        }
        rest.push(existing.file_name()?.to_owned());
        existing = existing.parent()?.to_owned();
    }
}

/// `path` made absolute against the current folder and [`normalize`]d; an error when the
/// current folder cannot be read or is not UTF-8 (a stored path must be exact).
pub fn absolute_normalized(path: &Utf8Path) -> std::io::Result<Utf8PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    let cwd = std::env::current_dir()?;
    let cwd = Utf8PathBuf::from_path_buf(cwd).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "current folder is not UTF-8",
        )
    })?;
    Ok(normalize(&cwd.join(path)))
}

/// Lexical normalisation (`.` dropped, `..` pops): web folders may not exist yet, so the
/// filesystem cannot be asked, and the stored path should not carry `..` noise.
pub fn normalize(p: &Utf8Path) -> Utf8PathBuf {
    let mut out = Utf8PathBuf::new();
    for c in p.components() {
        match c {
            Utf8Component::CurDir => {}
            Utf8Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_str()),
        }
    }
    out
}

/// Everything the controller creates from now on is private to it (umask 077: folders 0700,
/// files 0600): records, secrets, journal, locks, work folders, safety snapshots and backups
/// hold passwords and whole databases. Its children set their own umask (022) before exec.
/// The state folder itself is created, or tightened, to 0700.
pub fn make_private(state_root: &Utf8Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    std::fs::create_dir_all(state_root)?;
    let meta = std::fs::metadata(state_root)?;
    if meta.permissions().mode() & 0o077 != 0
        && std::os::unix::fs::MetadataExt::uid(&meta) == rustix::process::geteuid().as_raw()
    {
        std::fs::set_permissions(state_root, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The first executable regular file called `name` (a bare name) in the folders of `search`, a
/// `PATH`-style list, in order. Only absolute folders are searched: an empty or relative entry
/// would mean the current folder, never a place to take a program from. Non-UTF-8 paths are
/// skipped.
pub fn find_program(name: &str, search: &OsStr) -> Option<Utf8PathBuf> {
    let absolute: Vec<_> = std::env::split_paths(search)
        .filter(|dir| dir.is_absolute())
        .collect();
    if absolute.is_empty() {
        return None;
    }
    let search = std::env::join_paths(absolute).ok()?;
    which::which_in_global(name, Some(search))
        .ok()?
        .find_map(|found| Utf8PathBuf::from_path_buf(found).ok())
}

/// Whether `path` (absolute) is an executable regular file, as [`find_program`] judges the
/// files it finds: `access(X_OK)`, which for root needs one x bit set.
pub fn is_program(path: &Utf8Path) -> bool {
    path.is_absolute() && which::which_global(path.as_std_path()).is_ok()
}
