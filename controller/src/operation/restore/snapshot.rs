//! The safety snapshot: taken before a restore changes anything, put back when it fails (and
//! by the journal's recovery after a crash). A restore keeps its web folders aside by rename
//! where it can (`aside.rs`) and archives the rest; an upgrade archives everything.

use aps_meta::model::AppMeta;
use camino::{Utf8Path, Utf8PathBuf};

use crate::account::Account;
use crate::archive::{ArchiveOptions, ArchiveReader, ArchiveWriter, Compression, PartKind};
use crate::controller::{Controller, ControllerConfig};
use crate::error::{OperationError, Step};

use super::apply::*;
use super::aside::AsidePlan;
use crate::controller::Operation;
use crate::journal::UndoAction;
use crate::registry::{Instance, InstanceStore};

/// The safety snapshot: a compressed archive of the instance as it is now.
pub(crate) fn take_snapshot(
    ctl: &Controller,
    instance: &Instance,
    meta: &AppMeta,
    path: &Utf8Path,
) -> Result<(), OperationError> {
    let account = ctl.instance_account(instance)?;
    write_snapshot(ctl.config(), instance, meta, path, account.as_ref(), &[]).map_err(|e| match e {
        OperationError::Archive { source, .. } => OperationError::Archive {
            step: Step::SafetySnapshot,
            source,
        },
        OperationError::Database { db_id, source, .. } => OperationError::Database {
            step: Step::SafetySnapshot,
            db_id,
            source,
        },
        other => other,
    })
}

/// A restore's safety snapshot: the web folders the restore replaces (`replaced` names their
/// URLs) kept aside where they can be, the databases and every other web folder archived at
/// `path`. Journaled before the first web folder is moved. `Err` says whether the snapshot
/// was journaled (then the instance may have changed and is put back like after any later
/// failure).
pub(super) fn take_restore_snapshot(
    ctl: &Controller,
    operation: &mut Operation,
    instance: &Instance,
    meta: &AppMeta,
    path: &Utf8Path,
    replaced: &dyn Fn(&str) -> bool,
) -> Result<(), (OperationError, bool)> {
    let work = operation.work().to_owned();
    let account = ctl.instance_account(instance).map_err(|e| (e, false))?;
    // Walk bounds promise that a snapshot crossing them changes nothing: with bounds, every
    // folder is walked into the archive, which checks them.
    let policy = ctl.config().walk_policy(&instance.name, account.as_ref());
    let bounded = policy.max_files.is_some() || policy.max_bytes.is_some();
    let replaced = |url: &str| !bounded && replaced(url);
    let mut plan = AsidePlan::write(instance, &work, &replaced).map_err(|e| (e, false))?;
    operation
        .add_undo(
            UndoAction::RestoreSnapshot {
                snapshot: path.to_owned(),
                instance: instance.name.clone(),
            },
            Step::SafetySnapshot,
        )
        .map_err(|e| (e, false))?;
    let journaled = |e| (e, true);
    plan.move_all(&work).map_err(journaled)?;
    let kept: Vec<&str> = plan.urls().collect();
    write_snapshot(ctl.config(), instance, meta, path, account.as_ref(), &kept)
        .map_err(journaled)?;
    plan.begin_restoring(&work).map_err(journaled)
}

/// Archives the instance's databases and its web folders but those of `kept_aside` at `path`
/// (written beside it and renamed into place once synced: a crash leaves it whole or absent).
pub(super) fn write_snapshot(
    config: &ControllerConfig,
    instance: &Instance,
    meta: &AppMeta,
    path: &Utf8Path,
    account: Option<&Account>,
    kept_aside: &[&str],
) -> Result<(), OperationError> {
    let arch = |source| OperationError::Archive {
        step: Step::SafetySnapshot,
        source,
    };
    let partial = Utf8PathBuf::from(format!("{path}.partial"));
    let file = std::fs::File::create(&partial).map_err(OperationError::io(
        Step::SafetySnapshot,
        "cannot create",
        &partial,
    ))?;
    // Compressed, and holes kept as holes: a snapshot needs about what the site's data takes,
    // not its apparent size. zstd's fastest level on every core: nothing else runs while it is
    // taken, and a restore should cost about what it did when snapshots were plain copies.
    let options = ArchiveOptions {
        compression: Compression::Zstd { level: -3 },
        ..ArchiveOptions::default()
    };
    let mut writer = ArchiveWriter::create(
        &file,
        &options,
        crate::operation::manifest_header(meta, &instance.name),
    )
    .map_err(arch)?;
    writer.walk_policy(config.walk_policy(&instance.name, account));
    // Every archive the controller writes is tagged, its private snapshots too.
    let key = config.backup_key().map_err(|e| OperationError::Io {
        step: Step::SafetySnapshot,
        what: "cannot use the backup key",
        path: e.path().to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?;
    writer.tag_with(key);
    let dir = path.parent().expect("snapshot path has a folder");
    for (db_id, db) in &instance.databases {
        let dump = dir.join(format!(
            "snapshot-{}.sql",
            crate::operation::file_safe(db_id)
        ));
        let info = crate::database::dump(db, &dump, config.default_timeout).map_err(|source| {
            OperationError::Database {
                step: Step::SafetySnapshot,
                db_id: db_id.clone(),
                source,
            }
        })?;
        writer
            .add_file_part(
                &crate::operation::dump_part_name(db_id),
                PartKind::DatabaseDump {
                    db_id: db_id.clone(),
                    kind: db.kind.as_str().to_owned(),
                    row_counts: Some(info.row_counts),
                },
                &dump,
            )
            .map_err(arch)?;
        let _ = std::fs::remove_file(&dump);
    }
    for (url, dir) in instance.archived_web_dirs() {
        if kept_aside.contains(&url.as_str()) {
            continue;
        }
        // A folder that does not exist yet (a fresh staging instance) has nothing to keep; the
        // rollback removes whatever the restore created there. A symlink is not "missing":
        // it reaches the writer, which refuses it by name.
        if std::fs::symlink_metadata(dir).is_ok() {
            writer.add_web_dir(url, dir).map_err(arch)?;
        }
    }
    writer.finish().map_err(arch)?;
    file.sync_all().map_err(OperationError::io(
        Step::SafetySnapshot,
        "cannot sync",
        &partial,
    ))?;
    std::fs::rename(&partial, path).map_err(OperationError::io(
        Step::SafetySnapshot,
        "cannot rename",
        &partial,
    ))?;
    crate::durable::sync_dir(dir).map_err(OperationError::io(
        Step::SafetySnapshot,
        "cannot sync",
        dir,
    ))
}

/// Puts the instance back exactly as the snapshot holds it: the web folders kept aside, then
/// what the archive holds.
pub(crate) fn put_back(
    config: &ControllerConfig,
    instance: &Instance,
    snapshot: &Utf8Path,
    account: Option<&Account>,
) -> Result<(), OperationError> {
    let work = snapshot.parent().expect("snapshot path has a folder");
    let aside = AsidePlan::read(work)?;
    if let Some(plan) = &aside {
        plan.put_back(work, account)?;
        // Stopped before the archive was whole: the databases were not touched yet.
        if std::fs::symlink_metadata(snapshot).is_err() {
            return Ok(());
        }
    }
    let kept: Vec<&str> = aside.iter().flat_map(AsidePlan::urls).collect();
    let reader = ArchiveReader::open(snapshot, None).map_err(|source| OperationError::Archive {
        step: Step::Rollback,
        source,
    })?;
    apply_archive(
        &reader,
        instance,
        work,
        config.default_timeout,
        Step::Rollback,
        account,
        None,
    )?;
    // Folders absent from the snapshot (and not kept aside) did not exist before the restore.
    let kept_aside = |url: &str| kept.contains(&url);
    for (url, dir) in instance.archived_web_dirs() {
        let kept = reader
            .manifest()
            .parts
            .iter()
            .any(|p| matches!(&p.kind, PartKind::WebDir { mapping_url } if mapping_url == url));
        if !kept && !kept_aside(url) && std::fs::symlink_metadata(dir).is_ok() {
            crate::archive::remove_dir_all_nofollow(dir.as_std_path()).map_err(
                OperationError::io(
                    Step::Rollback,
                    "cannot remove the web folder created by the restore",
                    dir,
                ),
            )?;
        }
    }
    Ok(())
}

/// Journal recovery after a killed controller: put the instance back from its snapshot.
pub(crate) fn put_back_snapshot(
    config: &ControllerConfig,
    store: &dyn InstanceStore,
    snapshot: &Utf8Path,
    instance: &str,
) -> Result<(), String> {
    let instance = store.get(instance).map_err(|e| e.to_string())?;
    // What the snapshot puts back belongs to the instance's account, as after a restore; an
    // account that is refused now (root) leaves the files to the controller.
    let account = config.instance_account(&instance).ok().flatten();
    crate::database::as_account(account.as_ref(), || {
        put_back(config, &instance, snapshot, account.as_ref())
    })
    .map_err(|e| e.to_string())
}
