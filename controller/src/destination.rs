//! Where a backup goes, checked before any script runs, and committed atomically
//! (docs/scripts.md, "Destination and rollback").
//!
//! [`Destination::check`] refuses a destination whose parent folder is missing, lies under a
//! symlink a tenant could have placed, or may be written by someone other than the
//! controller's user (unless it is the instance account's own folder, see
//! [`Destination::check_for`]); and a destination that is a folder or a symlink (even a
//! dangling one), or that exists without `force`. The folder is opened once and held.
//!
//! [`CheckedDestination::create`] then creates the temporary file
//! `<dir>/.<name>.aps-partial-<operation id>` relative to the held folder with
//! `O_CREAT|O_EXCL|O_NOFOLLOW` — that is `BACKUP_FILE` — and holds it open, so the final rename
//! never crosses a file system. [`PreparedDestination::commit`] checks that the temporary name
//! still is that very file (same device and inode, a regular file: a script or tenant that
//! replaced it, by a symlink or anything else, fails the backup), hashes and fsyncs it through
//! the held descriptor, renames it relative to the held folder, checks the destination is that
//! file, and fsyncs the folder. Dropping a prepared destination without committing deletes the
//! temporary file. The destination path therefore never holds a partial backup, nor anything
//! but the file the controller created.
//!
//! Writability is tested by really creating the temporary file: permission bits, read-only
//! mounts, ACLs and quotas all answer through that one call, for whatever user we run as.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};

use crate::account::Account;

/// Marker in the temporary file's name, so leftovers can be recognised (and cleaned up).
pub const PARTIAL_MARKER: &str = ".aps-partial-";

/// Entry point for destination checks.
pub struct Destination;

impl Destination {
    /// Checks `path` as a backup destination and creates its temporary file (with a random
    /// name). An operation that journals the temporary file first uses [`Destination::check`]
    /// and [`CheckedDestination::create`] instead.
    pub fn prepare(
        path: impl Into<Utf8PathBuf>,
        force: bool,
    ) -> Result<PreparedDestination, DestinationError> {
        Self::check(path, force)?.create_temp("", true)
    }

    /// Checks `path` as a backup destination without creating anything. Writability is only
    /// known when [`CheckedDestination::create`] makes the temporary file.
    pub fn check(
        path: impl Into<Utf8PathBuf>,
        force: bool,
    ) -> Result<CheckedDestination, DestinationError> {
        Self::check_for(path, force, None)
    }

    /// [`Destination::check`] for a backup of an instance running as `account`: a folder that
    /// account owns is accepted too (its owner can write there, but gains nothing: the file is
    /// created, checked and renamed through descriptors).
    pub fn check_for(
        path: impl Into<Utf8PathBuf>,
        force: bool,
        account: Option<&Account>,
    ) -> Result<CheckedDestination, DestinationError> {
        let path: Utf8PathBuf = path.into();
        let name = match path.file_name() {
            Some(name) if name != "." && name != ".." => name.to_owned(),
            _ => return Err(DestinationError::NoFileName { path }),
        };
        let parent = match path.parent() {
            Some(p) if !p.as_str().is_empty() => p.to_owned(),
            _ => Utf8PathBuf::from("."),
        };

        let dir = match crate::archive::open_dir_nofollow(parent.as_std_path()) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(DestinationError::MissingParent { path, parent });
            }
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(DestinationError::ParentNotAFolder { path, parent });
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                return Err(DestinationError::UnsafeFolder {
                    path,
                    parent,
                    reason: e.to_string(),
                });
            }
            Err(source) => {
                return Err(DestinationError::Io {
                    path: parent,
                    source,
                });
            }
        };
        let st = rustix::fs::fstat(&dir).map_err(|e| DestinationError::Io {
            path: parent.clone(),
            source: e.into(),
        })?;
        // Not followed: a symlink is refused as such, dangling or not, whatever it points at.
        let found = rustix::fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW);
        // A folder given where a file is meant is the person's mistake to hear about first,
        // not the mode of the folder above it.
        if let Ok(st) = &found
            && FileType::from_raw_mode(st.st_mode as _) == FileType::Directory
        {
            return Err(DestinationError::IsAFolder { path });
        }
        if let Some(reason) = foreign_writers(&st, account) {
            return Err(DestinationError::UnsafeFolder {
                path,
                parent,
                reason,
            });
        }
        match found {
            Ok(st) => match FileType::from_raw_mode(st.st_mode as _) {
                FileType::Symlink => {
                    let target = rustix::fs::readlinkat(&dir, name.as_str(), Vec::new())
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    return Err(DestinationError::Symlink { path, target });
                }
                FileType::Directory => return Err(DestinationError::IsAFolder { path }),
                FileType::RegularFile if !force => return Err(DestinationError::Exists { path }),
                FileType::RegularFile => {}
                _ => return Err(DestinationError::NotARegularFile { path }),
            },
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => {
                return Err(DestinationError::Io {
                    path,
                    source: e.into(),
                });
            }
        }
        Ok(CheckedDestination {
            path,
            name,
            parent,
            dir,
            force,
        })
    }
}

/// Why a destination folder may be written by someone other than the controller's user, if
/// it may: owned by another account (other than root and `account`), or writable by its group
/// or by everyone.
fn foreign_writers(st: &rustix::fs::Stat, account: Option<&Account>) -> Option<String> {
    let me = rustix::process::geteuid().as_raw();
    let mode = st.st_mode & 0o7777;
    let owner_ok = st.st_uid == me || st.st_uid == 0 || account.is_some_and(|a| a.uid == st.st_uid);
    if !owner_ok {
        return Some(format!(
            "it belongs to uid {}, neither the controller's user nor the instance's account",
            st.st_uid
        ));
    }
    if mode & 0o022 != 0 {
        return Some(format!(
            "its mode {mode:o} lets its group or everyone write into it"
        ));
    }
    None
}

/// A destination that passed [`Destination::check`], with its folder held open; nothing is
/// created yet.
#[derive(Debug)]
pub struct CheckedDestination {
    path: Utf8PathBuf,
    name: String,
    parent: Utf8PathBuf,
    dir: OwnedFd,
    force: bool,
}

impl CheckedDestination {
    /// The temporary file [`create`](Self::create) makes for operation `operation_id`:
    /// `<dir>/.<name>.aps-partial-<operation_id>`. Known before it exists, so a journal can
    /// name it before a crash could leave it behind.
    pub fn temp_path(&self, operation_id: &str) -> Utf8PathBuf {
        self.parent.join(self.temp_prefix(operation_id))
    }

    /// Creates [`temp_path`](Self::temp_path) (never an existing file: operation ids are
    /// unique, and a leftover of the same name is refused rather than reused).
    pub fn create(self, operation_id: &str) -> Result<PreparedDestination, DestinationError> {
        self.create_temp(operation_id, false)
    }

    fn temp_prefix(&self, tag: &str) -> String {
        format!(".{}{PARTIAL_MARKER}{tag}", self.name)
    }

    // Creating the file *is* the writability test (see the module documentation).
    fn create_temp(self, tag: &str, random: bool) -> Result<PreparedDestination, DestinationError> {
        let mut attempt = 0u32;
        let (temp_name, fd) = loop {
            let temp_name = if random {
                format!("{}{}", self.temp_prefix(tag), random_suffix(attempt))
            } else {
                self.temp_prefix(tag)
            };
            match rustix::fs::openat(
                &self.dir,
                temp_name.as_str(),
                OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => break (temp_name, fd),
                Err(rustix::io::Errno::EXIST) if random && attempt < 100 => attempt += 1,
                Err(e) => {
                    let source = io::Error::from(e);
                    return Err(match source.kind() {
                        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                            DestinationError::ParentNotWritable {
                                path: self.path,
                                parent: self.parent,
                                source,
                            }
                        }
                        _ => DestinationError::Io {
                            path: self.parent.join(&temp_name),
                            source,
                        },
                    });
                }
            }
        };
        let file = File::from(fd);
        let st = rustix::fs::fstat(&file).map_err(|e| DestinationError::Io {
            path: self.parent.join(&temp_name),
            source: e.into(),
        })?;
        Ok(PreparedDestination {
            temp_path: self.parent.join(&temp_name),
            destination: self.path,
            name: self.name,
            parent: self.parent,
            dir: self.dir,
            temp_name,
            file,
            dev_ino: (st.st_dev, st.st_ino),
            force: self.force,
            committed: false,
        })
    }
}

/// Twelve hex digits that differ between processes, calls and attempts (not secret: the file
/// is created with O_EXCL, so a guessed name only costs an attempt).
fn random_suffix(attempt: u32) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u32(attempt);
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}

/// A checked destination with its temporary file (`BACKUP_FILE`), both held open: the folder
/// and the file the controller created in it. Dropping it without [`commit`](Self::commit)
/// deletes the temporary file.
#[derive(Debug)]
pub struct PreparedDestination {
    destination: Utf8PathBuf,
    name: String,
    parent: Utf8PathBuf,
    dir: OwnedFd,
    temp_name: String,
    temp_path: Utf8PathBuf,
    file: File,
    /// Device and inode of the file created: what the temporary name must still be at commit.
    dev_ino: (u64, u64),
    force: bool,
    committed: bool,
}

/// The backup file in its final place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedFile {
    pub path: Utf8PathBuf,
    pub size: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
}

impl PreparedDestination {
    /// The temporary file to write (`BACKUP_FILE` for the script).
    pub fn temp_path(&self) -> &Utf8Path {
        &self.temp_path
    }

    /// The final destination.
    pub fn destination(&self) -> &Utf8Path {
        &self.destination
    }

    /// The temporary file, open for reading and writing (for the controller's own archive
    /// writer, and to change its owner through the descriptor).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The destination's folder, held open since the check.
    pub fn folder(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Whether `name` in the held folder is, right now, the file this destination created.
    fn is_ours(&self, name: &str) -> Result<(), String> {
        match rustix::fs::statat(&self.dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let kind = FileType::from_raw_mode(st.st_mode as _);
                if kind == FileType::Symlink {
                    let target = rustix::fs::readlinkat(&self.dir, name, Vec::new())
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    Err(format!("it was replaced by a symlink to {target:?}"))
                } else if kind != FileType::RegularFile {
                    Err(format!("it was replaced by a {kind:?}"))
                } else if (st.st_dev, st.st_ino) != self.dev_ino {
                    Err("it was replaced by another file".into())
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(format!("it is gone ({e})")),
        }
    }

    /// Checks the temporary name still is the file created, hashes and fsyncs it through the
    /// held descriptor, renames it onto the destination relative to the held folder, checks
    /// the destination is that file, and fsyncs the folder. Any mismatch fails the backup:
    /// nothing is put in place (an impostor renamed into place meanwhile is removed again).
    ///
    /// Without `force`, a destination that appeared since [`Destination::prepare`] is not
    /// overwritten (`RENAME_NOREPLACE`).
    pub fn commit(mut self) -> Result<CommittedFile, DestinationError> {
        let io_err = |path: &Utf8Path| {
            let path = path.to_owned();
            move |source| DestinationError::Io { path, source }
        };
        if let Err(reason) = self.is_ours(&self.temp_name) {
            return Err(DestinationError::TempReplaced {
                path: self.temp_path.clone(),
                reason,
            });
        }
        let mut file = &self.file;
        file.seek(SeekFrom::Start(0))
            .map_err(io_err(&self.temp_path))?;
        let (size, sha256) =
            crate::digest::sha256_reader(&mut file).map_err(io_err(&self.temp_path))?;
        self.file.sync_all().map_err(io_err(&self.temp_path))?;

        let flags = if self.force {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        match rustix::fs::renameat_with(
            &self.dir,
            self.temp_name.as_str(),
            &self.dir,
            self.name.as_str(),
            flags,
        ) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => {
                return Err(DestinationError::Exists {
                    path: self.destination.clone(),
                });
            }
            Err(e) => {
                return Err(DestinationError::Io {
                    path: self.destination.clone(),
                    source: e.into(),
                });
            }
        }
        self.committed = true;
        // The name could have been swapped between the check and the rename: then what was
        // renamed is not ours, and must not stay as the backup.
        if let Err(reason) = self.is_ours(&self.name) {
            let _ = rustix::fs::unlinkat(&self.dir, self.name.as_str(), AtFlags::empty());
            let _ = rustix::fs::unlinkat(&self.dir, self.temp_name.as_str(), AtFlags::empty());
            return Err(DestinationError::TempReplaced {
                path: self.temp_path.clone(),
                reason,
            });
        }
        rustix::fs::fsync(&self.dir).map_err(|e| io_err(&self.parent)(e.into()))?;
        Ok(CommittedFile {
            path: self.destination.clone(),
            size,
            sha256,
        })
    }
}

impl Drop for PreparedDestination {
    fn drop(&mut self) {
        if !self.committed {
            // Relative to the held folder; unlink never follows a symlink.
            let _ = rustix::fs::unlinkat(&self.dir, OsStr::new(&self.temp_name), AtFlags::empty());
        }
    }
}

pub use crate::durable::sync_dir;

/// Why a destination is refused, or could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("backup destination {path} names no file")]
    NoFileName { path: Utf8PathBuf },
    #[error("the folder {parent} of backup destination {path} does not exist; create it first")]
    MissingParent {
        path: Utf8PathBuf,
        parent: Utf8PathBuf,
    },
    #[error("the parent {parent} of backup destination {path} is not a folder")]
    ParentNotAFolder {
        path: Utf8PathBuf,
        parent: Utf8PathBuf,
    },
    #[error("cannot write into {parent}, the folder of backup destination {path}: {source}")]
    ParentNotWritable {
        path: Utf8PathBuf,
        parent: Utf8PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("backup destination {path} is a folder; give a file name")]
    IsAFolder { path: Utf8PathBuf },
    #[error("backup destination {path} is a symlink (to {target:?}); give the real path")]
    Symlink { path: Utf8PathBuf, target: String },
    #[error("backup destination {path} exists and is not a regular file")]
    NotARegularFile { path: Utf8PathBuf },
    #[error(
        "backup destination {path} already exists; use {} to replace it",
        crate::overrides::Override::Force
    )]
    Exists { path: Utf8PathBuf },
    #[error("cannot put a backup in {parent} (for {path}): {reason}")]
    UnsafeFolder {
        path: Utf8PathBuf,
        parent: Utf8PathBuf,
        reason: String,
    },
    #[error(
        "the temporary backup file {path} is no longer the file the controller created: {reason}; nothing was put in place"
    )]
    TempReplaced { path: Utf8PathBuf, reason: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: Utf8PathBuf,
        #[source]
        source: io::Error,
    },
}
