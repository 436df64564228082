//! `backup import`: the one explicit way to accept a backup file this controller did not make
//! (another machine with another key, a controller before format version 2, an upload).
//! Restore, migrate, drill and verify refuse such a file (kind `untrusted-backup`); import
//! reads it in full, checks it as verify does, reports what it holds, and records that a
//! person accepted it:
//! - the controller's archive: `<state>/imported-backups/<manifest SHA-256>.json`, tagged
//!   with the backup key. From then on an archive with exactly that manifest (so exactly
//!   those parts, by their SHA-256) is trusted; the file itself is not changed.
//! - a `sufficient` script's file (not an archive): a record of its SHA-256 for the package
//!   of the instance named with it, tagged like the records of backups made here.

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::archive::{ArchiveError, Manifest, ManifestSeal, TagKey};
use crate::controller::Controller;
use crate::error::{OperationError, Step};
use crate::operation::record::BackupRecord;
use crate::paths::absolute;

const IMPORT_DOMAIN: &str = "imported-archive";

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub file: Utf8PathBuf,
    /// age identity file, for an encrypted archive.
    pub identity: Option<Utf8PathBuf>,
    /// For a `sufficient` script's file (which names no package): the instance whose
    /// package's backup it is.
    pub instance: Option<String>,
    /// Only show what the file holds; record nothing.
    pub dry_run: bool,
}

impl ImportRequest {
    pub fn new(file: impl Into<Utf8PathBuf>) -> Self {
        ImportRequest {
            file: file.into(),
            identity: None,
            instance: None,
            dry_run: false,
        }
    }
}

/// What the file turned out to hold, and what was recorded.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub file: Utf8PathBuf,
    /// `archive` or `script-backup`.
    pub kind: &'static str,
    /// The archive's verified manifest: package, instance, creation time, every part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
    /// SHA-256 of the archive's manifest, or of the script's file.
    pub sha256: String,
    /// What its tag said before the import: `valid` (this controller's key), `other-key`,
    /// `wrong`, `none`; `none` for a script's file.
    pub tag: &'static str,
    /// The record written (or that already existed); `None` with `dry_run`, and for an
    /// archive this controller's key tagged (it needs none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<Utf8PathBuf>,
}

/// `<state>/imported-backups/<sha256>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ImportRecord {
    manifest_sha256: String,
    /// Where it was imported from (informative).
    file: String,
    instance: String,
    package_name: String,
    version: String,
    release: String,
    imported: String,
    /// HMAC of `manifest_sha256` under the backup key.
    tag: String,
}

fn imports_dir(ctl: &Controller) -> Utf8PathBuf {
    ctl.config().state.root().join("imported-backups")
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a person imported an archive with this manifest (a record with a valid tag).
pub(crate) fn is_imported(ctl: &Controller, seal: &ManifestSeal) -> bool {
    let Ok(key) = ctl.config().backup_key() else {
        return false;
    };
    is_imported_with(&imports_dir(ctl), &key, &seal.manifest_sha256)
}

fn is_imported_with(dir: &Utf8Path, key: &TagKey, sha256: &str) -> bool {
    if !is_hex64(sha256) {
        return false;
    }
    let Ok(bytes) = std::fs::read(dir.join(format!("{sha256}.json"))) else {
        return false;
    };
    serde_json::from_slice::<ImportRecord>(&bytes).is_ok_and(|r| {
        r.manifest_sha256 == sha256
            && key.check_record_tag(IMPORT_DOMAIN, &[sha256.as_bytes()], &r.tag)
    })
}

/// Imports `request.file` (see the module doc).
pub fn import(ctl: &Controller, request: &ImportRequest) -> Result<ImportReport, OperationError> {
    let file = absolute(&request.file);
    let key = ctl.backup_key(Step::VerifyBackup)?;
    let unusable = |reason: String| OperationError::BackupMismatch {
        step: Step::CheckDestination,
        file: file.clone(),
        instance: request.instance.clone().unwrap_or_default(),
        reason,
    };
    let metadata =
        std::fs::metadata(&file).map_err(|e| unusable(format!("it cannot be read: {e}")))?;
    if !metadata.is_file() {
        return Err(unusable("it is not a regular file".into()));
    }
    match crate::archive::ArchiveReader::open(&file, request.identity.as_deref()) {
        Ok(reader) => import_archive(ctl, request, &file, &key, reader),
        Err(ArchiveError::NotAnArchive { .. }) => import_script_file(ctl, request, &file, &key),
        Err(source) => Err(OperationError::Archive {
            step: Step::VerifyBackup,
            source,
        }),
    }
}

fn import_archive(
    ctl: &Controller,
    request: &ImportRequest,
    file: &Utf8Path,
    key: &TagKey,
    reader: crate::archive::ArchiveReader,
) -> Result<ImportReport, OperationError> {
    let seal = reader.seal().clone();
    let manifest = reader.manifest().clone();
    let tag = match (&seal.tag, seal.check(key)) {
        (_, Ok(())) => "valid",
        (None, _) => "none",
        (Some(t), _) if t.key_id != key.id() => "other-key",
        _ => "wrong",
    };
    let dir = imports_dir(ctl);
    let path = dir.join(format!("{}.json", seal.manifest_sha256));
    // This controller's own archive needs no record.
    let record = if request.dry_run || tag == "valid" {
        None
    } else {
        if !is_imported_with(&dir, key, &seal.manifest_sha256) {
            let h = &manifest.header;
            let record = ImportRecord {
                manifest_sha256: seal.manifest_sha256.clone(),
                file: file.to_string(),
                instance: h.instance.clone(),
                package_name: h.package_name.clone(),
                version: h.version.clone(),
                release: h.release.clone(),
                imported: jiff::Timestamp::now().to_string(),
                tag: key.record_tag(IMPORT_DOMAIN, &[seal.manifest_sha256.as_bytes()]),
            };
            save_json(&dir, &path, &record)?;
        }
        Some(path)
    };
    Ok(ImportReport {
        file: file.to_owned(),
        kind: "archive",
        manifest: Some(manifest),
        sha256: seal.manifest_sha256,
        tag,
        record,
    })
}

fn import_script_file(
    ctl: &Controller,
    request: &ImportRequest,
    file: &Utf8Path,
    key: &TagKey,
) -> Result<ImportReport, OperationError> {
    let Some(instance) = &request.instance else {
        return Err(OperationError::BackupMismatch {
            step: Step::VerifyBackup,
            file: file.to_owned(),
            instance: "(none given)".into(),
            reason: format!(
                "it is not an aps-controller archive; if it is the file of a `sufficient` backup-script, name the instance whose package made it with {}",
                crate::overrides::Override::Instance
            ),
        });
    };
    let instance = ctl.find_instance(instance)?;
    let package = ctl.open_package(&instance)?;
    let (size, sha256) = crate::digest::sha256_file(file).map_err(OperationError::io(
        Step::VerifyBackup,
        "cannot read",
        file,
    ))?;
    let records = ctl.records_dir();
    let record = if request.dry_run {
        None
    } else {
        BackupRecord::for_file(&package.meta, &instance.name, file, size, &sha256)
            .sign(key)
            .save(&records)
            .map_err(OperationError::io(
                Step::Finish,
                "cannot record the backup's checksum in",
                &records,
            ))?;
        Some(records.join(format!("{sha256}.json")))
    };
    Ok(ImportReport {
        file: file.to_owned(),
        kind: "script-backup",
        manifest: None,
        sha256,
        tag: "none",
        record,
    })
}

fn save_json(
    dir: &Utf8Path,
    path: &Utf8Path,
    value: &impl Serialize,
) -> Result<(), OperationError> {
    use std::io::Write;
    let io = |what| OperationError::io(Step::Finish, what, dir);
    std::fs::create_dir_all(dir).map_err(io("cannot create"))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io("cannot write in"))?;
    serde_json::to_writer_pretty(&mut tmp, value)
        .map_err(std::io::Error::from)
        .and_then(|()| tmp.as_file_mut().flush())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io("cannot write in"))?;
    tmp.persist(path)
        .map_err(|e| io("cannot write in")(e.error))?;
    Ok(())
}
