//! What a restore reads from: the backup file verified (the controller's archive, or a
//! `sufficient` script's file known by its record) and checked against the instance.

use aps_meta::model::{AppMeta, Script};
use camino::Utf8Path;

use crate::archive::{ArchiveError, ArchiveReader};
use crate::controller::Controller;
use crate::error::{OperationError, Step};
use crate::operation::RestoreRequest;
use crate::operation::record::BackupRecord;

use crate::registry::Instance;

/// What the backup file turned out to be, once verified.
pub(super) enum Source {
    /// The controller's archive, verified: resources (and the script's part, if any) inside.
    Archive(ArchiveReader),
    /// Exactly what a `sufficient` script wrote, known by its recorded SHA-256.
    ScriptFile {
        record: BackupRecord,
        /// Encrypted whole by the controller (age recipients at backup time).
        encrypted: bool,
        /// The very file that was hashed, held open: the script gets a private copy of it
        /// (checked against the record again), never the path, which the tenant may swap.
        file: std::fs::File,
    },
}

impl Source {
    /// (package id, if the package has one; package name; version; release) of the backup.
    pub(super) fn package(&self) -> (Option<String>, String, String, String) {
        match self {
            Source::Archive(r) => {
                let h = &r.manifest().header;
                (
                    Some(h.package_id.clone()).filter(|id| !id.is_empty()),
                    h.package_name.clone(),
                    h.version.clone(),
                    h.release.clone(),
                )
            }
            Source::ScriptFile { record: r, .. } => (
                r.package_id.clone(),
                r.package_name.clone(),
                r.version.clone(),
                r.release.clone(),
            ),
        }
    }

    pub(super) fn version(&self) -> (String, String) {
        let (_, _, version, release) = self.package();
        (version, release)
    }

    /// The instance the backup was made of, and when.
    pub(super) fn origin(&self) -> (String, Option<jiff::Timestamp>) {
        match self {
            Source::Archive(r) => {
                let h = &r.manifest().header;
                (h.instance.clone(), Some(h.created))
            }
            Source::ScriptFile { record: r, .. } => (r.instance.clone(), r.created.parse().ok()),
        }
    }
}

/// Reads the whole file and decides what it is: our archive (every part's SHA-256 checked
/// against its manifest), or a `sufficient` script's file whose SHA-256 we recorded.
pub(super) fn verify_source(
    ctl: &Controller,
    instance: &Instance,
    meta: &AppMeta,
    file: &Utf8Path,
    request: &RestoreRequest,
) -> Result<Source, OperationError> {
    // A missing, unreadable or non-regular file is the control panel's mistake about the
    // backup, not an internal failure: reported as an invalid backup, naming the file.
    let unusable = |reason: String| OperationError::BackupMismatch {
        step: Step::CheckDestination,
        file: file.to_owned(),
        instance: instance.name.clone(),
        reason,
    };
    let metadata =
        std::fs::metadata(file).map_err(|e| unusable(format!("it cannot be read: {e}")))?;
    if !metadata.is_file() {
        return Err(unusable("it is not a regular file".into()));
    }
    let held =
        std::fs::File::open(file).map_err(|e| unusable(format!("it cannot be read: {e}")))?;
    let records = ctl.records_dir();
    let records_err = OperationError::io(
        Step::VerifyBackup,
        "cannot read backup records in",
        records.clone(),
    );
    // A recorded `sufficient` file first: such a script may itself write a tar or a zstd
    // file. Hashing costs a whole extra read, so only a file whose size some record has is
    // hashed (records are few and small; backups may be large).
    let mut sha256 = None;
    if BackupRecord::any_with_size(&records, metadata.len()).map_err(records_err)? {
        let (_, hash) = crate::digest::sha256_reader(&mut &held)
            .map_err(|e| unusable(format!("it cannot be read: {e}")))?;
        if let Some(record) = BackupRecord::find(&records, &hash).map_err(OperationError::io(
            Step::VerifyBackup,
            "cannot read backup records in",
            records.clone(),
        ))? {
            // A record is believed only with this controller's tag: anyone who could drop a
            // record file could otherwise vouch for any file.
            if !record.is_authentic(&ctl.backup_key(Step::VerifyBackup)?) {
                return Err(OperationError::Archive {
                    step: Step::VerifyBackup,
                    source: ArchiveError::Untrusted {
                        archive: file.to_owned(),
                        reason: format!(
                            "its record {records}/{hash}.json carries no valid tag of this controller's key"
                        ),
                    },
                });
            }
            let encrypted =
                crate::archive::is_encrypted(file).map_err(|source| OperationError::Archive {
                    step: Step::VerifyBackup,
                    source,
                })?;
            // Without the identity an encrypted one cannot be given to the script: refused
            // now, before the safety snapshot and any change.
            if encrypted && request.identity.is_none() {
                return Err(OperationError::Archive {
                    step: Step::VerifyBackup,
                    source: ArchiveError::IdentityRequired {
                        archive: file.to_owned(),
                    },
                });
            }
            return Ok(Source::ScriptFile {
                record,
                encrypted,
                file: held,
            });
        }
        sha256 = Some(hash);
    }
    // Made (tagged) by this controller, or imported: anything else is refused here, before
    // the safety snapshot and any change.
    let key = ctl.backup_key(Step::VerifyBackup)?;
    let imported =
        |seal: &crate::archive::ManifestSeal| crate::operation::import::is_imported(ctl, seal);
    match ArchiveReader::open_trusted(file, request.identity.as_deref(), &key, &imported) {
        Ok(reader) => Ok(Source::Archive(reader)),
        Err(ArchiveError::NotAnArchive { .. }) => Err(OperationError::BackupMismatch {
            step: Step::VerifyBackup,
            file: file.to_owned(),
            instance: instance.name.clone(),
            reason: format!(
                "it is neither a backup archive of this controller nor a recorded backup of a `sufficient` backup-script of package {} ({}: altered, truncated, or made elsewhere)",
                display_package(meta),
                match &sha256 {
                    Some(h) => format!("SHA-256 {h} unknown"),
                    None => "no record of a file of its size".to_owned(),
                }
            ),
        }),
        Err(source) => Err(OperationError::Archive {
            step: Step::VerifyBackup,
            source,
        }),
    }
}

/// The backup must be of this package, and of a version this package can take data from.
pub(super) fn check_restorable(
    instance: &Instance,
    meta: &AppMeta,
    script: Option<&Script>,
    file: &Utf8Path,
    source: &Source,
) -> Result<(), OperationError> {
    let refuse = |reason: String| OperationError::BackupMismatch {
        step: Step::VerifyBackup,
        file: file.to_owned(),
        instance: instance.name.clone(),
        reason,
    };
    let (id, name, version, release) = source.package();
    // Identity: `id` (1.2), else the name for packages without one.
    let same_package = match (&id, &meta.id) {
        (Some(a), Some(b)) => a == b,
        _ => name == meta.name,
    };
    if !same_package {
        return Err(refuse(format!(
            "it is a backup of package {} but the instance runs {}",
            id.as_deref().unwrap_or(&name),
            display_package(meta)
        )));
    }
    if !version_allowed(meta, &version, &release) {
        return Err(refuse(format!(
            "it was made with version {version}-{release}; the instance runs {}-{}, which neither equals it nor is newer and declares (upgrade/patch match, upgradable-from) that it can update from it",
            meta.version, meta.release
        )));
    }
    if matches!(source, Source::ScriptFile { .. }) && !script.is_some_and(|s| s.sufficient) {
        return Err(refuse(
            "it was written by a `sufficient` backup-script, but this package's backup-script is not `sufficient` (or absent), so nothing could restore the resources".into(),
        ));
    }
    Ok(())
}

/// The version rule (docs/restore.md): the same version and release; or
/// an older one that this package's own update rules accept — an `upgrade` or `patch` whose
/// `match` holds for the backup's version and release, or APS 1.0's `upgradable-from`. Those
/// rules say which data this package can take over, which is what a restore hands it. A newer
/// backup is never accepted, whatever a loosely written rule matches: older code cannot be
/// trusted with newer data.
pub(crate) fn version_allowed(meta: &AppMeta, version: &str, release: &str) -> bool {
    use aps_meta::version_match::compare_versions;
    use std::cmp::Ordering;
    if version == meta.version && release == meta.release {
        return true;
    }
    let older = match compare_versions(version, &meta.version) {
        Ordering::Less => true,
        Ordering::Equal => compare_versions(release, &meta.release) == Ordering::Less,
        Ordering::Greater => false,
    };
    if !older {
        return false;
    }
    let by_rule = meta.patches.iter().chain(&meta.upgrades).any(|r| {
        aps_meta::version_match::matches(&r.match_expr, version, release).unwrap_or(false)
    });
    let by_1_0 = meta
        .upgradable_from
        .iter()
        .any(|u| u.version == version && u.release.as_deref().is_none_or(|r| r == release));
    by_rule || by_1_0
}

pub(super) fn display_package(meta: &AppMeta) -> String {
    format!(
        "{} {}-{}",
        meta.id.as_deref().unwrap_or(&meta.name),
        meta.version,
        meta.release
    )
}

/// Copies the open file `held` (from its start) to the new file `dest` (0600, never through a
/// symlink), checking that what was copied has SHA-256 `sha256`: the file may have been
/// rewritten in place since it was checked.
pub(super) fn private_copy(
    held: &std::fs::File,
    dest: &Utf8Path,
    sha256: &str,
) -> std::io::Result<()> {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut src = held;
    src.seek(std::io::SeekFrom::Start(0))?;
    let mut out = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dest)?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sha.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    out.sync_all()?;
    let actual = hex::encode(sha.finalize());
    if actual != sha256 {
        drop(out);
        let _ = std::fs::remove_file(dest);
        return Err(std::io::Error::other(format!(
            "it changed after it was checked (SHA-256 now {actual}, recorded {sha256})"
        )));
    }
    Ok(())
}
