//! A package on disk: a folder holding `APP-META.xml`, `scripts/`, … (a `.app.zip` is unpacked
//! first with [`crate::unpack_zip`]).

use crate::diagnostic::{Diagnostic, codes};
use crate::limits::Limits;
use crate::listing::ListingError;
use crate::meta_parse::{MetaError, parse_app_meta_bytes};
use crate::model::AppMeta;
use camino::{Utf8Path, Utf8PathBuf};
use std::io::Read;

/// An opened package: its folder and its parsed metadata.
#[derive(Debug, Clone)]
pub struct Package {
    pub root: Utf8PathBuf,
    pub meta: AppMeta,
    /// Non-fatal findings of the metadata parse (placeholders, legacy elements, …). Some may
    /// have severity error (e.g. a script without `script-language`): they only matter to the
    /// operations that use that part; `package check` reports them all.
    pub warnings: Vec<Diagnostic>,
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}: no such file or folder")]
    NotFound { path: Utf8PathBuf },
    #[error("{path}: not a folder; expected an unpacked package folder (unpack a .app.zip first)")]
    NotADirectory { path: Utf8PathBuf },
    #[error("{root}: no APP-META.xml at the package root; expected {root}/APP-META.xml")]
    MetaMissing { root: Utf8PathBuf },
    #[error("{path}: {what} is a symlink; packages may not contain symlinks")]
    Symlink {
        path: Utf8PathBuf,
        what: &'static str,
    },
    #[error("{path}: not a regular file; expected a readable file")]
    NotAFile { path: Utf8PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: Utf8PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Shown as `ROOT/APP-META.xml:LINE:COL: …` (the source's file label is the root-relative name).
    #[error("{root}/{source}")]
    Meta {
        root: Utf8PathBuf,
        #[source]
        source: MetaError,
    },
    #[error("{root}/{source}")]
    Listing {
        root: Utf8PathBuf,
        #[source]
        source: ListingError,
    },
    #[error("{zip}: not a readable ZIP archive: {message}")]
    ZipInvalid { zip: Utf8PathBuf, message: String },
    #[error("{zip}: member {member:?} {reason}; expected a relative path inside the package")]
    ZipUnsafePath {
        zip: Utf8PathBuf,
        member: String,
        reason: &'static str,
    },
    #[error("{zip}: member {member:?} is a symlink; packages may not contain symlinks")]
    ZipSymlink { zip: Utf8PathBuf, member: String },
    #[error("{zip}: {count} members, more than the limit of {limit} (Limits::max_zip_members)")]
    ZipTooManyMembers {
        zip: Utf8PathBuf,
        count: u64,
        limit: u64,
    },
    #[error(
        "{zip}: member {member:?} unpacks to more than {limit} bytes ({which}); refused before filling the disk"
    )]
    ZipTooLarge {
        zip: Utf8PathBuf,
        member: String,
        limit: u64,
        which: &'static str,
    },
    #[error(
        "{dest}: destination exists and is not an empty folder; expected a new or empty folder"
    )]
    DestNotEmpty { dest: Utf8PathBuf },
}

impl PackageError {
    /// The diagnostic code this error is reported under by `package check`.
    pub fn code(&self) -> &'static str {
        match self {
            PackageError::NotFound { .. }
            | PackageError::NotADirectory { .. }
            | PackageError::NotAFile { .. }
            | PackageError::Io { .. }
            | PackageError::DestNotEmpty { .. } => codes::PACKAGE_UNREADABLE,
            PackageError::MetaMissing { .. } => codes::META_MISSING,
            PackageError::Symlink { .. } => codes::PACKAGE_SYMLINK,
            PackageError::Meta { source, .. } => source.code(),
            PackageError::Listing { source, .. } => source.code(),
            PackageError::ZipInvalid { .. } => codes::ZIP_INVALID,
            PackageError::ZipUnsafePath { .. } => codes::ZIP_UNSAFE_PATH,
            PackageError::ZipSymlink { .. } => codes::ZIP_SYMLINK,
            PackageError::ZipTooManyMembers { .. } => codes::ZIP_TOO_MANY_MEMBERS,
            PackageError::ZipTooLarge { .. } => codes::ZIP_TOO_LARGE,
        }
    }
}

pub(crate) fn io_err(path: &Utf8Path) -> impl FnOnce(std::io::Error) -> PackageError + '_ {
    move |source| PackageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a regular file of at most `limit` bytes (never more is read, whatever the metadata
/// claimed). `Ok(None)` when the file does not exist.
pub(crate) fn read_bounded(
    path: &Utf8Path,
    limit: u64,
) -> Result<Option<Result<Vec<u8>, u64>>, PackageError> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    if md.file_type().is_symlink() {
        return Err(PackageError::Symlink {
            path: path.to_path_buf(),
            what: "the file",
        });
    }
    // A folder or a device by the expected name: refused before open (a FIFO would block).
    if !md.is_file() {
        return Err(PackageError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if md.len() > limit {
        return Ok(Some(Err(md.len())));
    }
    let f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut buf = Vec::with_capacity(md.len() as usize);
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    if buf.len() as u64 > limit {
        return Ok(Some(Err(buf.len() as u64)));
    }
    Ok(Some(Ok(buf)))
}

impl Package {
    /// Opens an unpacked package folder and parses its `APP-META.xml`. Does not verify
    /// `APP-LIST.xml` (see [`crate::verify_listing`]).
    pub fn open_dir(dir: &Utf8Path, limits: &Limits) -> Result<Package, PackageError> {
        let md = std::fs::metadata(dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                PackageError::NotFound {
                    path: dir.to_path_buf(),
                }
            } else {
                io_err(dir)(e)
            }
        })?;
        if !md.is_dir() {
            return Err(PackageError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        let meta_path = dir.join("APP-META.xml");
        let bytes = match read_bounded(&meta_path, limits.max_meta_bytes)? {
            None => {
                return Err(PackageError::MetaMissing {
                    root: dir.to_path_buf(),
                });
            }
            Some(Err(size)) => {
                return Err(PackageError::Meta {
                    root: dir.to_path_buf(),
                    source: MetaError::TooLarge {
                        file: "APP-META.xml".into(),
                        size,
                        limit: limits.max_meta_bytes,
                    },
                });
            }
            Some(Ok(b)) => b,
        };
        let (meta, warnings) =
            parse_app_meta_bytes(&bytes, "APP-META.xml", limits).map_err(|source| {
                PackageError::Meta {
                    root: dir.to_path_buf(),
                    source,
                }
            })?;
        Ok(Package {
            root: dir.to_path_buf(),
            meta,
            warnings,
        })
    }

    /// `ROOT/scripts`: where the scripts live and where they run.
    pub fn scripts_dir(&self) -> Utf8PathBuf {
        self.root.join("scripts")
    }
}
