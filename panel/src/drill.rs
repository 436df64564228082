//! `drill`: prove a backup restores — restore the newest good backup of an instance into a
//! registered staging instance and check the result.

use camino::Utf8PathBuf;
use serde::Serialize;

use crate::context::{Panel, PanelError};
use crate::engine::{Engine, Verification};
use crate::listing::newest_good;
use crate::progress::{Event, Progress};

#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub instance: String,
    pub staging: String,
    pub identity: Option<Utf8PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub instance: String,
    pub staging: String,
    pub backup: Utf8PathBuf,
    pub passed: bool,
    /// The step that failed: `restore` or `check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

pub fn drill(
    panel: &Panel,
    engine: &Engine,
    o: &DrillOptions,
    progress: &Progress,
) -> Result<DrillReport, PanelError> {
    if o.instance == o.staging {
        return Err(PanelError::Usage(format!(
            "the staging instance must differ from {:?}: a drill overwrites it",
            o.instance
        )));
    }
    let newest = newest_good(&panel.local, &o.instance)?.ok_or_else(|| PanelError::NoBackup {
        instance: o.instance.clone(),
        store: panel.local.root().to_string(),
    })?;
    let backup = panel.local.path_of(&newest);
    progress.emit(Event::Start {
        operation: "drill",
        total: 2,
    });
    let mut report = DrillReport {
        instance: o.instance.clone(),
        staging: o.staging.clone(),
        backup: backup.clone(),
        passed: false,
        failed_step: None,
        error: None,
        verification: None,
    };
    progress.emit(Event::ItemStart { item: "restore" });
    let restored = engine.restore(&o.staging, &backup, o.identity.as_deref());
    progress.emit(Event::ItemDone {
        item: "restore",
        ok: restored.is_ok(),
        error: restored.as_ref().err().map(|e| e.to_string()).as_deref(),
    });
    let restored = match restored {
        Ok(r) => r,
        Err(e) => {
            report.failed_step = Some("restore");
            report.error = Some(e.to_string());
            progress.finish();
            return Ok(report);
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
            }
            report.verification = Some(v);
        }
        Err(e) => {
            report.failed_step = Some("check");
            report.error = Some(e.to_string());
        }
    }
    Ok(report)
}
