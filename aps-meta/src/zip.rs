//! Unpacking a `.app.zip` safely: no absolute paths, no `..`, no symlinks, bounded member count
//! and bounded bytes counted while decompressing (header sizes are never trusted). Extraction
//! goes to a temporary sibling folder renamed onto the destination at the end, so the
//! destination never holds a half-unpacked package.

use crate::limits::Limits;
use crate::listing::unsafe_relative;
use crate::package::{PackageError, io_err};
use camino::{Utf8Path, Utf8PathBuf};
use std::io::{Read, Write};

/// Unpacks `zip` into `dest`, which must not exist or be an empty folder.
pub fn unpack_zip(zip: &Utf8Path, dest: &Utf8Path, limits: &Limits) -> Result<(), PackageError> {
    let dest_existed = match std::fs::symlink_metadata(dest) {
        Ok(md) => {
            let empty_dir = md.is_dir()
                && std::fs::read_dir(dest)
                    .map_err(io_err(dest))?
                    .next()
                    .is_none();
            if !empty_dir {
                return Err(PackageError::DestNotEmpty {
                    dest: dest.to_path_buf(),
                });
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_err(dest)(e)),
    };
    let file = std::fs::File::open(zip).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            PackageError::NotFound {
                path: zip.to_path_buf(),
            }
        } else {
            io_err(zip)(e)
        }
    })?;
    let tmp = temp_sibling(dest);
    std::fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    let result = extract(zip, file, &tmp, limits).and_then(|()| {
        if dest_existed {
            std::fs::remove_dir(dest).map_err(io_err(dest))?;
        }
        std::fs::rename(&tmp, dest).map_err(io_err(dest))
    });
    if result.is_err() {
        // Best effort: the temp folder is ours alone.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn temp_sibling(dest: &Utf8Path) -> Utf8PathBuf {
    let name = dest.file_name().unwrap_or("package");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp_name = format!(".{name}.unpacking-{}-{nanos}", std::process::id());
    match dest.parent() {
        Some(p) if !p.as_str().is_empty() => p.join(tmp_name),
        _ => Utf8PathBuf::from(tmp_name),
    }
}

const S_IFMT: u32 = 0o170000;
const S_IFLNK: u32 = 0o120000;

fn extract(
    zip_path: &Utf8Path,
    file: std::fs::File,
    out: &Utf8Path,
    limits: &Limits,
) -> Result<(), PackageError> {
    let invalid = |e: zip::result::ZipError| PackageError::ZipInvalid {
        zip: zip_path.to_path_buf(),
        message: e.to_string(),
    };
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(invalid)?;
    let count = archive.len() as u64;
    if count > limits.max_zip_members {
        return Err(PackageError::ZipTooManyMembers {
            zip: zip_path.to_path_buf(),
            count,
            limit: limits.max_zip_members,
        });
    }
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(invalid)?;
        let name = entry
            .name()
            .map_err(|e| PackageError::ZipInvalid {
                zip: zip_path.to_path_buf(),
                message: format!("member {i}: {e}"),
            })?
            .to_string();
        if let Some(reason) = unsafe_relative(&name) {
            return Err(PackageError::ZipUnsafePath {
                zip: zip_path.to_path_buf(),
                member: name,
                reason,
            });
        }
        if entry.is_symlink() || entry.unix_mode().is_some_and(|m| m & S_IFMT == S_IFLNK) {
            return Err(PackageError::ZipSymlink {
                zip: zip_path.to_path_buf(),
                member: name,
            });
        }
        let rel: Utf8PathBuf = name
            .split(['/', '\\'])
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if rel.as_str().is_empty() {
            continue;
        }
        let target = out.join(&rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(io_err(&target))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    PackageError::ZipInvalid {
                        zip: zip_path.to_path_buf(),
                        message: format!("member {name:?} appears twice"),
                    }
                } else {
                    io_err(&target)(e)
                }
            })?;
        // Count real decompressed bytes; stop one byte past the allowance.
        let remaining_total = limits.max_unpacked_bytes.saturating_sub(total);
        let allowance = limits.max_member_bytes.min(remaining_total);
        let mut buf = vec![0u8; 64 * 1024];
        let mut written: u64 = 0;
        loop {
            let n = entry.read(&mut buf).map_err(|e| PackageError::ZipInvalid {
                zip: zip_path.to_path_buf(),
                message: format!("member {name:?}: {e}"),
            })?;
            if n == 0 {
                break;
            }
            written += n as u64;
            if written > allowance {
                let (limit, which) = if allowance == limits.max_member_bytes {
                    (limits.max_member_bytes, "Limits::max_member_bytes")
                } else {
                    (
                        limits.max_unpacked_bytes,
                        "Limits::max_unpacked_bytes, whole archive",
                    )
                };
                return Err(PackageError::ZipTooLarge {
                    zip: zip_path.to_path_buf(),
                    member: name,
                    limit,
                    which,
                });
            }
            f.write_all(&buf[..n]).map_err(io_err(&target))?;
        }
        total += written;
        #[cfg(unix)]
        if let Some(mode) = entry.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            // Keep the execute bits, drop setuid/setgid/sticky and world-write.
            let perm = std::fs::Permissions::from_mode(mode & 0o755);
            std::fs::set_permissions(&target, perm).map_err(io_err(&target))?;
        }
    }
    Ok(())
}
