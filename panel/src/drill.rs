//! `drill`: prove a backup restores — restore the newest good backup of an instance into a
//! registered staging instance and check the result. With `remote`, the backup is the newest
//! good one of the off-machine copy, downloaded first: what a host that lost its disk would
//! restore from.

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::context::{Panel, PanelError};
use crate::engine::{Engine, Verification};
use crate::problem::Problem;
use crate::progress::{Event, Progress};
use crate::store::files::newest_good;
use crate::store::{DrillBackup, Found};
use aps_controller::ErrorKind;

#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub instance: String,
    pub staging: String,
    pub identity: Option<Utf8PathBuf>,
    /// Drill from the remote store (panel.toml `[remote]`) instead of the local one.
    pub remote: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub instance: String,
    pub staging: String,
    /// The backup drilled: a local path, `<remote store>/<key>` with `remote`, or
    /// `<repository> snapshot <id>` with the repository store.
    pub backup: String,
    /// `local`, `remote` or `repository`.
    pub store: &'static str,
    pub passed: bool,
    /// Whether the backup was restored and checked; `false` for an encrypted archive drilled
    /// without its identity, of which only what `unchecked` does not list was checked.
    pub complete: bool,
    /// What a drill without the identity could not check.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unchecked: Vec<&'static str>,
    /// The step that failed: `restore` or `check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<&'static str>,
    /// Why the drill failed: the restore's error, or a check that could not run or said no.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

impl DrillReport {
    /// A drill of `shown` that has not passed yet, nor failed.
    fn begun(o: &DrillOptions, shown: String, store: &'static str) -> Self {
        DrillReport {
            instance: o.instance.clone(),
            staging: o.staging.clone(),
            backup: shown,
            store,
            passed: false,
            complete: true,
            unchecked: Vec::new(),
            failed_step: None,
            error: None,
            verification: None,
        }
    }
}

pub fn drill(
    panel: &Panel,
    engine: &Engine,
    o: &DrillOptions,
    progress: &dyn Progress,
) -> Result<DrillReport, PanelError> {
    if o.instance == o.staging {
        return Err(PanelError::Usage(format!(
            "the staging instance must differ from {:?}: a drill overwrites it",
            o.instance
        )));
    }
    // `--identity`, else panel.toml's `identity-file` (checked when panel.toml was read).
    let resolved = DrillOptions {
        identity: o
            .identity
            .clone()
            .or_else(|| panel.config.identity_file(&panel.state_dir)),
        ..o.clone()
    };
    let o = &resolved;
    if !o.remote {
        return drill_store(panel, engine, o, progress);
    }
    let store = panel.files(true)?;
    let newest = newest_good(store, &o.instance)?.ok_or_else(|| PanelError::NoBackup {
        instance: o.instance.clone(),
        store: store.describe(),
    })?;
    // The remote backup is restored from a download in a scratch folder of the state folder,
    // deleted when the drill ends (whatever its outcome).
    let scratch = tempfile::Builder::new()
        .prefix(".drill-download-")
        .tempdir_in(&panel.state_dir)
        .map_err(|source| PanelError::Scratch {
            path: panel.state_dir.clone(),
            source,
        })?;
    let dir = Utf8Path::from_path(scratch.path())
        .expect("a folder made in a UTF-8 folder is UTF-8")
        .to_owned();
    let backup = dir.join(&newest.file_name);
    let remote = panel.remote.as_ref().expect("files(true) is the remote");
    remote.download(&newest.key, &backup)?;
    let shown = format!("{}/{}", store.describe().trim_end_matches('/'), newest.key);
    Ok(drill_file(engine, o, &backup, shown, "remote", progress))
}

/// A drill of the newest good backup of the store panel.toml chose.
fn drill_store(
    panel: &Panel,
    engine: &Engine,
    o: &DrillOptions,
    progress: &dyn Progress,
) -> Result<DrillReport, PanelError> {
    let cx = panel.cx();
    let DrillBackup {
        found,
        shown,
        store,
    } = panel
        .store
        .drill_backup(&cx, &o.instance)?
        .ok_or_else(|| PanelError::NoBackup {
            instance: o.instance.clone(),
            store: panel.store.describe(&cx),
        })?;
    if let Found::File(path) = &found {
        return Ok(drill_file(engine, o, path, shown, store, progress));
    }
    match panel
        .store
        .stage(&cx, engine.controller(), &o.instance, &found)
    {
        Ok(staged) => Ok(restore_and_check(
            engine,
            o,
            &staged.archive,
            shown,
            store,
            progress,
        )),
        // A snapshot that cannot be staged (untrusted, damaged, unreadable) does not restore:
        // the drill failed at its restore.
        Err(problem) => Ok(DrillReport {
            failed_step: Some("restore"),
            error: Some(problem),
            ..DrillReport::begun(o, shown, store)
        }),
    }
}

/// A drill of an archive file.
fn drill_file(
    engine: &Engine,
    o: &DrillOptions,
    backup: &Utf8Path,
    shown: String,
    store: &'static str,
    progress: &dyn Progress,
) -> DrillReport {
    // An encrypted archive without its identity: what can be checked without decrypting,
    // and the staging instance left alone.
    if o.identity.is_none() {
        match aps_controller::archive::check_age_header(backup) {
            Ok(false) => {}
            checked => return header_only(o, shown, store, checked),
        }
    }
    restore_and_check(engine, o, backup, shown, store, progress)
}

/// What cannot be known of an encrypted archive without its identity: its authentication
/// tag is `manifest.tag` inside the encryption (docs/backup-format.md), and so are the
/// manifest and every part.
pub const UNCHECKED_WITHOUT_IDENTITY: [&str; 4] = [
    "the authentication tag (inside the encryption)",
    "the manifest and every part's SHA-256",
    "the restore into the staging instance",
    "the file and row counts of the restored instance",
];

/// The drill of an encrypted archive without its identity: only its age header is read.
/// A damaged header fails the drill at `check`; a sound one passes what was checked, marked
/// incomplete with what was not.
fn header_only(
    o: &DrillOptions,
    shown: String,
    store: &'static str,
    checked: Result<bool, aps_controller::archive::ArchiveError>,
) -> DrillReport {
    let mut report = DrillReport {
        complete: false,
        unchecked: UNCHECKED_WITHOUT_IDENTITY.to_vec(),
        ..DrillReport::begun(o, shown, store)
    };
    match checked {
        Ok(_) => {
            report.passed = true;
            report.verification = Some(Verification {
                passed: true,
                method: "age-header",
                detail: format!(
                    "an age file with a well-formed header for X25519 recipients; the rest is \
                     encrypted: a full drill needs {} or identity-file in panel.toml",
                    aps_controller::error::Override::IdentityFile
                ),
            });
        }
        Err(e) => {
            report.failed_step = Some("check");
            report.error = Some(Problem::new(
                ErrorKind::InvalidBackup,
                Some("check"),
                e.to_string(),
            ));
        }
    }
    report
}

/// Restores `backup` into the staging instance and checks the result.
fn restore_and_check(
    engine: &Engine,
    o: &DrillOptions,
    backup: &Utf8Path,
    shown: String,
    store: &'static str,
    progress: &dyn Progress,
) -> DrillReport {
    progress.emit(Event::Start {
        operation: "drill",
        total: 2,
    });
    let mut report = DrillReport::begun(o, shown, store);
    progress.emit(Event::ItemStart { item: "restore" });
    let restored = engine.restore(&o.staging, backup, o.identity.as_deref());
    progress.emit(Event::ItemDone {
        item: "restore",
        ok: restored.is_ok(),
        error: restored.as_ref().err().map(|e| e.to_string()).as_deref(),
    });
    let restored = match restored {
        Ok(r) => r,
        Err(e) => {
            report.failed_step = Some("restore");
            report.error = Some(e.problem());
            progress.finish();
            return report;
        }
    };
    progress.emit(Event::ItemStart { item: "check" });
    let checked = engine.check_restored(&o.staging, &restored);
    progress.emit(Event::ItemDone {
        item: "check",
        ok: matches!(&checked, Ok(v) if v.passed),
        error: checked.as_ref().err().map(|e| e.to_string()).as_deref(),
    });
    progress.finish();
    match checked {
        Ok(v) => {
            report.passed = v.passed;
            if !v.passed {
                report.failed_step = Some("check");
                // The restored instance does not match: the script said no, or the counts
                // differ from the backup's manifest.
                let kind = if v.method == "verification-script" {
                    ErrorKind::ScriptFailed
                } else {
                    ErrorKind::InvalidBackup
                };
                report.error = Some(Problem::new(kind, Some("check"), v.detail.clone()));
            }
            report.verification = Some(v);
        }
        Err(e) => {
            report.failed_step = Some("check");
            report.error = Some(e.problem());
        }
    }
    report
}
