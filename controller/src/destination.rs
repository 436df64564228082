//! Where a backup goes, checked before any script runs, and committed atomically
//! (docs/scripts.md, "Destination and rollback").
//!
//! [`Destination::prepare`] refuses a destination whose parent folder is missing or not
//! writable, that is a folder or a symlink (even a dangling one), or that exists without
//! `force`. It then creates the temporary file `<dir>/.<name>.aps-partial-<operation id>` in
//! the destination's own folder — that is `BACKUP_FILE` — so the final rename never crosses a file
//! system. [`PreparedDestination::commit`] fsyncs the file, renames it onto the destination
//! and fsyncs the folder; dropping a prepared destination without committing deletes the
//! temporary file. The destination path therefore never holds a partial backup.
//!
//! Writability is tested by really creating the temporary file: permission bits, read-only
//! mounts, ACLs and quotas all answer through that one call, for whatever user we run as.

use std::fs::File;
use std::io;

use camino::{Utf8Path, Utf8PathBuf};

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
        Self::check(path, force)?.create_temp("", 8)
    }

    /// Checks `path` as a backup destination without creating anything. Writability is only
    /// known when [`CheckedDestination::create`] makes the temporary file.
    pub fn check(
        path: impl Into<Utf8PathBuf>,
        force: bool,
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

        match std::fs::metadata(&parent) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(DestinationError::ParentNotAFolder { path, parent }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(DestinationError::MissingParent { path, parent });
            }
            Err(source) => {
                return Err(DestinationError::Io {
                    path: parent,
                    source,
                });
            }
        }

        // symlink_metadata: a symlink is refused as such, dangling or not, whatever it points at.
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&path)
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                return Err(DestinationError::Symlink { path, target });
            }
            Ok(meta) if meta.is_dir() => return Err(DestinationError::IsAFolder { path }),
            Ok(meta) if !meta.is_file() => return Err(DestinationError::NotARegularFile { path }),
            Ok(_) if !force => return Err(DestinationError::Exists { path }),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(DestinationError::Io { path, source }),
        }
        Ok(CheckedDestination {
            path,
            name,
            parent,
            force,
        })
    }
}

/// A destination that passed [`Destination::check`]; nothing is created yet.
#[derive(Debug)]
pub struct CheckedDestination {
    path: Utf8PathBuf,
    name: String,
    parent: Utf8PathBuf,
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
        self.create_temp(operation_id, 0)
    }

    fn temp_prefix(&self, tag: &str) -> String {
        format!(".{}{PARTIAL_MARKER}{tag}", self.name)
    }

    // Creating the file *is* the writability test (see the module documentation).
    fn create_temp(
        self,
        tag: &str,
        rand_bytes: usize,
    ) -> Result<PreparedDestination, DestinationError> {
        let CheckedDestination {
            path,
            parent,
            force,
            ..
        } = &self;
        let temp = tempfile::Builder::new()
            .prefix(&self.temp_prefix(tag))
            .rand_bytes(rand_bytes)
            .tempfile_in(parent)
            .map_err(|source| match source.kind() {
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                    DestinationError::ParentNotWritable {
                        path: path.clone(),
                        parent: parent.clone(),
                        source,
                    }
                }
                _ => DestinationError::Io {
                    path: parent.clone(),
                    source,
                },
            })?;
        let temp_path = Utf8PathBuf::from_path_buf(temp.path().to_path_buf())
            .expect("a UTF-8 folder joined with a UTF-8 name is UTF-8");
        Ok(PreparedDestination {
            destination: path.clone(),
            parent: parent.clone(),
            temp_path,
            temp,
            force: *force,
        })
    }
}

/// A checked destination with its temporary file (`BACKUP_FILE`). Dropping it without
/// [`commit`](Self::commit) deletes the temporary file.
#[derive(Debug)]
pub struct PreparedDestination {
    destination: Utf8PathBuf,
    parent: Utf8PathBuf,
    temp_path: Utf8PathBuf,
    temp: tempfile::NamedTempFile,
    force: bool,
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

    /// The temporary file, open for writing (for the controller's own archive writer).
    pub fn file(&self) -> &File {
        self.temp.as_file()
    }

    /// Fsyncs the temporary file, renames it onto the destination and fsyncs the folder.
    ///
    /// Without `force`, a destination that appeared since [`Destination::prepare`] is not
    /// overwritten (hard-link-then-unlink would be atomic too, but the check-then-rename window
    /// is only the length of a backup and `--force` is the escape).
    pub fn commit(self) -> Result<CommittedFile, DestinationError> {
        let io_err = |path: &Utf8Path| {
            let path = path.to_owned();
            move |source| DestinationError::Io { path, source }
        };
        // Reopen by path: the script may have replaced the file rather than writing into it.
        let mut file = File::open(&self.temp_path).map_err(io_err(&self.temp_path))?;
        let meta = file.metadata().map_err(io_err(&self.temp_path))?;
        if !meta.is_file() {
            return Err(DestinationError::NotARegularFile {
                path: self.temp_path.clone(),
            });
        }
        let (size, sha256) =
            crate::digest::sha256_reader(&mut file).map_err(io_err(&self.temp_path))?;
        file.sync_all().map_err(io_err(&self.temp_path))?;
        drop(file);

        if !self.force && std::fs::symlink_metadata(&self.destination).is_ok() {
            return Err(DestinationError::Exists {
                path: self.destination.clone(),
            });
        }
        // From here the temp file is ours to rename: stop the drop-time deletion first.
        let (_, temp_path) = self.temp.into_parts();
        temp_path
            .persist(&self.destination)
            .map_err(|e| DestinationError::Io {
                path: self.destination.clone(),
                source: e.error,
            })?;
        sync_dir(&self.parent).map_err(io_err(&self.parent))?;
        Ok(CommittedFile {
            path: self.destination,
            size,
            sha256,
        })
    }
}

/// Fsyncs a folder so a rename or creation in it survives a crash.
pub fn sync_dir(dir: &Utf8Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

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
    #[error("backup destination {path} already exists; use --force to replace it")]
    Exists { path: Utf8PathBuf },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: Utf8PathBuf,
        #[source]
        source: io::Error,
    },
}
