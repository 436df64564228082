//! The controller's backup key: the secret of the HMAC that tags every archive it writes and
//! every record it keeps of a `sufficient` script's file (docs/backup-format.md,
//! "Authentication"). Kept in the state folder as `backup-key` (created on first use, mode
//! 0600, never overwritten), or in the file controller.toml's `backup-key-file` names, so
//! that a fleet of controllers can share one key and restore each other's backups.
//!
//! The file holds the key as 64 lowercase hex digits (and a newline), so it can be copied by
//! hand. It must be a regular file of the controller's user, neither readable nor writable
//! by anyone else: a key others can read lets them forge backups, one they can write lets
//! them swap it.

use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use camino::{Utf8Path, Utf8PathBuf};

use crate::archive::{TAG_KEY_LEN, TagKey};

/// The key's file name inside the state folder, when controller.toml names none.
pub const KEY_FILE_NAME: &str = "backup-key";

#[derive(Debug, thiserror::Error)]
pub enum BackupKeyError {
    #[error("cannot read the backup key {path}: {source}")]
    Read {
        path: Utf8PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the backup key {path}: {source}")]
    Create {
        path: Utf8PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the backup key {path} cannot be used: {reason}")]
    Invalid { path: Utf8PathBuf, reason: String },
}

impl BackupKeyError {
    pub fn path(&self) -> &Utf8Path {
        match self {
            BackupKeyError::Read { path, .. }
            | BackupKeyError::Create { path, .. }
            | BackupKeyError::Invalid { path, .. } => path,
        }
    }
}

/// Reads the key at `path`, refusing a file that is not the controller user's own regular
/// file with mode 0600 (or stricter). A symlink is not followed.
pub fn load(path: &Utf8Path) -> Result<TagKey, BackupKeyError> {
    let read = |source| BackupKeyError::Read {
        path: path.to_owned(),
        source,
    };
    let invalid = |reason: String| BackupKeyError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(read)?;
    let meta = file.metadata().map_err(read)?;
    private_file_problem(path, &meta).map_err(invalid)?;
    let mut text = String::new();
    file.take(1024).read_to_string(&mut text).map_err(read)?;
    let secret = hex::decode(text.trim())
        .map_err(|_| invalid("it does not hold a key in hex digits".into()))?;
    TagKey::new(secret).ok_or_else(|| invalid("the key is shorter than 16 bytes".into()))
}

/// Why `path` (whose metadata, read without following a symlink, is `meta`) cannot hold a
/// secret of the controller's: it must be a regular file of the controller's user that nobody
/// else can read or write, in folders that only that user or root can change (each folder
/// above it, as written and as resolved, checked). Otherwise another user could read the
/// secret, or swap the file or a folder above it for one of its own. A sticky folder such
/// as `/tmp` counts as closed: others cannot rename or delete what is ours in it.
pub fn private_file_problem(path: &Utf8Path, meta: &std::fs::Metadata) -> Result<(), String> {
    let euid = rustix::process::geteuid().as_raw();
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    if meta.uid() != euid {
        return Err(format!(
            "it belongs to {}, not to the controller's user (uid {euid}); `chown` it",
            owner_text(meta.uid())
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "its mode is {:04o}: others could read or change it (chmod 600 it)",
            meta.mode() & 0o7777
        ));
    }
    let absolute = crate::paths::absolute(path);
    let mut folders: Vec<Utf8PathBuf> = absolute
        .ancestors()
        .skip(1)
        .map(Utf8Path::to_owned)
        .collect();
    if let Some(real) = absolute.parent().and_then(|p| p.canonicalize_utf8().ok()) {
        folders.extend(real.ancestors().map(Utf8Path::to_owned));
    }
    for folder in folders {
        let Ok(m) = std::fs::symlink_metadata(&folder) else {
            continue;
        };
        if m.file_type().is_symlink() {
            // Its target is among the resolved folders; the folder holding it is checked too.
            continue;
        }
        if m.uid() != euid && m.uid() != 0 {
            return Err(format!(
                "the folder {folder} above it belongs to {}, who could replace it; keep it in \
                 a folder only the controller's user or root can change",
                owner_text(m.uid())
            ));
        }
        let sticky = m.mode() & 0o1000 != 0;
        if m.mode() & 0o022 != 0 && !sticky {
            return Err(format!(
                "the folder {folder} above it has mode {:04o}: others could replace the file; \
                 `chmod go-w` it",
                m.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

fn owner_text(uid: u32) -> String {
    match crate::account::user_name(uid) {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// Reads the key at `path`, creating it first when it does not exist: 32 random bytes,
/// written to a temporary file (0600) that is then linked into place without replacing
/// anything, so two controllers starting at once end up with the same key and an existing
/// key is never overwritten.
pub fn load_or_create(path: &Utf8Path) -> Result<TagKey, BackupKeyError> {
    match load(path) {
        Err(BackupKeyError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    let create = |source| BackupKeyError::Create {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_str().is_empty())
        .unwrap_or(Utf8Path::new("."));
    std::fs::create_dir_all(dir).map_err(create)?;
    let mut secret = [0u8; TAG_KEY_LEN];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut r| r.read_exact(&mut secret))
        .map_err(create)?;
    // tempfile creates its files with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".backup-key-")
        .tempfile_in(dir)
        .map_err(create)?;
    writeln!(tmp, "{}", hex::encode(secret)).map_err(create)?;
    tmp.as_file().sync_all().map_err(create)?;
    match tmp.persist_noclobber(path) {
        Ok(_) => {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(create)?;
        }
        // Another controller made it meanwhile: theirs is the key.
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(create(e.error)),
    }
    load(path)
}
