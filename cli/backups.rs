//! `aps-controller backups NAME [--remote]`: the service's
//! [`aps_panel::service::backups`], in words.

use std::process::ExitCode;

use aps_controller::error::human_bytes;
use aps_panel::service::backups::BackupList;

use crate::common::{Failure, Out, StateArgs, check_instance_name, cli_failure};
use crate::policy::{engine, finish, open};

#[derive(clap::Args)]
pub struct BackupsArgs {
    /// The instance (registered, or removed but with backups left in the store).
    name: String,
    /// List the remote copy (panel.toml [remote]) instead of the local store.
    #[arg(long)]
    remote: bool,
    /// Print one JSON object (docs/json.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

pub fn run(args: BackupsArgs) -> ExitCode {
    let out = Out::new(args.json);
    finish(out, backups(out, args))
}

fn backups(out: Out, args: BackupsArgs) -> Result<ExitCode, Failure> {
    let BackupsArgs {
        name,
        remote,
        json: _,
        state,
    } = args;
    check_instance_name("NAME", &name)?;
    let (panel, controller) = open(&state)?;
    let engine = engine(&panel, controller)?;
    let list = aps_panel::service::backups::backups(
        engine.controller(),
        &panel,
        &aps_panel::service::backups::Request {
            instance: name,
            remote,
        },
    )
    .map_err(cli_failure)?;
    Ok(out.success(&list, || backups_text(&list)))
}

/// `backups NAME [--remote]` in words: NAME's backups in the store, newest first, or with the
/// repository store its snapshots, then the archives left from before it.
fn backups_text(list: &BackupList) -> String {
    match list {
        BackupList::Archives {
            instance,
            store,
            backups,
        } => {
            let mut text = format!("{} backups of {instance} in {store}", backups.len());
            text += &archive_lines(backups);
            text
        }
        BackupList::Snapshots {
            instance,
            store,
            snapshots,
            archive_store,
            archives,
        } => snapshots_text(instance, store, snapshots, archive_store, archives),
    }
}

/// One line per backup file: periodicity, time, size, status, full path.
fn archive_lines(entries: &[aps_panel::listing::BackupEntry]) -> String {
    let mut text = String::new();
    for e in entries {
        text += &format!(
            "\n  {:<10} {:<20} {:>10}  {:<12} {}",
            e.periodicity
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            e.time
                .map(|t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
                .unwrap_or_else(|| "-".into()),
            human_bytes(e.size),
            serde_json::to_value(e.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            e.path
        );
    }
    text
}

/// `backups NAME` of the repository store: its snapshots, newest first, then the archives
/// still in the archive store's folder.
fn snapshots_text(
    name: &str,
    repository: &str,
    snapshots: &[aps_panel::store::SnapshotInfo],
    archive_store: &str,
    archives: &[aps_panel::listing::BackupEntry],
) -> String {
    let mut text = format!(
        "{} snapshots of {name} in repository {repository}",
        snapshots.len()
    );
    for s in snapshots {
        text += &format!(
            "\n  {}  {:<10} {:<20} {:<40} {:>10} added",
            &s.id[..8],
            s.periodicity
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            s.time.strftime("%Y-%m-%d %H:%M:%SZ"),
            s.package
                .as_ref()
                .map(|p| format!("{} {}-{}", p.id, p.version, p.release))
                .unwrap_or_else(|| "-".into()),
            human_bytes(s.bytes_added)
        );
    }
    if !archives.is_empty() {
        text += &format!(
            "\n{} archives of {name} in {archive_store} (the archive store, from before the \
             repository; restore one with --from PATH)",
            archives.len()
        );
        text += &archive_lines(archives);
    }
    text
}
