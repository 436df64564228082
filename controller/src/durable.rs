//! Writes that survive a crash: a file replaced whole (temporary file, fsync, rename, fsync of
//! the folder), and the folder fsync itself. One rule for the journal, the instance store and
//! the backup records.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;

use camino::{Utf8Path, Utf8PathBuf};

/// Fsyncs a folder so a rename or creation in it survives a crash.
pub fn sync_dir(dir: &Utf8Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A [`write_atomic`] step failed on `path`.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct WriteError {
    /// The file or folder the failing step touched.
    pub path: Utf8PathBuf,
    #[source]
    pub source: io::Error,
}

/// How the temporary file of [`write_atomic`] is named, `<prefix><random><suffix>` in the
/// destination's folder: a caller that cleans up after a crash recognises its own leftovers.
#[derive(Debug, Clone, Copy)]
pub struct TempName<'a> {
    pub prefix: &'a str,
    pub suffix: &'a str,
}

/// Replaces `dest` with `bytes` so that it holds either the old or the new content: temporary
/// file beside it (created with `mode`, so secrets are never readable by others, not even
/// briefly) → write → fsync → rename onto `dest` → fsync the folder.
pub fn write_atomic(
    dest: &Utf8Path,
    bytes: &[u8],
    mode: u32,
    temp: TempName<'_>,
) -> Result<(), WriteError> {
    let err = |path: &Utf8Path| {
        let path = path.to_owned();
        move |source| WriteError { path, source }
    };
    let dir = dest.parent().unwrap_or(Utf8Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(temp.prefix)
        .suffix(temp.suffix)
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(err(dir))?;
    tmp.write_all(bytes).map_err(err(dest))?;
    tmp.as_file().sync_all().map_err(err(dest))?;
    // umask may have narrowed the mode; a record must stay readable to the panel's users.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode)).map_err(err(dest))?;
    tmp.persist(dest).map_err(|e| err(dest)(e.error))?;
    sync_dir(dir).map_err(err(dir))
}
