//! `aps-controller backup NAME [--to FILE]`: one backup on demand (the service's
//! [`aps_panel::service::backup`]); `backup import FILE` is cli/import.rs.

use std::process::ExitCode;

use aps_controller::error::ErrorKind;
use aps_controller::error::human_bytes;
use aps_panel::service::backup::{self, Outcome};
use camino::Utf8PathBuf;

use crate::common::{
    Failure, Out, StateArgs, cli_failure, open_controller, open_panel, with_progress,
};

pub const BACKUP_EXAMPLES: &str = "\
EXAMPLES:
  # Into the backup store (panel.toml `store`, else <state>/backups), named
  # blog_manual_<UTC time>.aps.tar.zst, compressed and encrypted as panel.toml says
  # (with [store] kind = \"repository\": one snapshot in the repository, docs/repository.md):
  aps-controller backup blog

  # Exactly into this file (its folder must exist); `backups blog` lists it too:
  aps-controller backup blog --to /srv/backups/blog.aps.tar.zst --force

  # Encrypted to an age public key (see `aps-controller key generate`), for a program:
  aps-controller backup blog --recipient age1… --json

  # Accept a backup another controller made (shows what it holds, then trusts it):
  aps-controller backup import /srv/incoming/blog.aps.tar.zst";

/// Script timeout in whole seconds, at least 1.
pub fn parse_timeout(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1 second".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a number of seconds")),
    }
}

/// `backup NAME [--to FILE]`, or `backup import FILE`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackupCommand {
    #[command(subcommand)]
    pub sub: Option<crate::import::BackupSubcommand>,
    #[command(flatten)]
    pub args: BackupArgs,
}

#[derive(clap::Args)]
pub struct BackupArgs {
    /// The registered instance (`aps-controller instance list` shows them).
    // An Option only so that `backup import FILE` parses: clap requires it otherwise.
    #[arg(required = true)]
    name: Option<String>,
    /// Write exactly this file (its folder must exist, outside the instance's web folders)
    /// instead of into the backup store; the store records it, so that `backups`,
    /// `verify --instance`, `restore --latest` and `drill` see it.
    #[arg(long, value_name = "FILE")]
    to: Option<Utf8PathBuf>,
    /// Script timeout in seconds, at least 1 (default: `timeout-secs` of controller.toml,
    /// else 3600).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    timeout: Option<u64>,
    /// Replace the --to file when it exists.
    #[arg(long, requires = "to")]
    force: bool,
    /// Check everything, print the size estimate and the plan; run nothing and leave
    /// nothing behind.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    archive: ArchiveArgs,
    /// Print one JSON object (docs/json.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

/// How the controller's own archive is written (not a `sufficient` script's file).
#[derive(clap::Args, Clone)]
pub struct ArchiveArgs {
    /// Compression of the archive [default: panel.toml `compression`, else zstd].
    #[arg(long, value_name = "KIND", value_parser = ["zstd", "gzip", "none"])]
    compression: Option<String>,
    /// Encrypt to this age public key (age1…; repeatable) [default: panel.toml
    /// `age-recipients`]. `aps-controller key generate` makes a key pair.
    #[arg(long = "recipient", value_name = "AGE_PUBLIC_KEY")]
    recipients: Vec<String>,
}

pub fn run(command: BackupCommand) -> ExitCode {
    match command {
        BackupCommand { sub: Some(s), .. } => crate::import::run(s),
        BackupCommand { args, .. } => {
            let out = Out::new(args.json);
            out.finish(run_backup(out, args))
        }
    }
}

fn run_backup(out: Out, args: BackupArgs) -> Result<ExitCode, Failure> {
    let request = backup::Request {
        instance: args.name.unwrap_or_default(),
        to: args.to,
        force: args.force,
        timeout_secs: args.timeout,
        compression: args.archive.compression,
        recipients: args.archive.recipients,
        dry_run: args.dry_run,
        absolute_paths: false,
    };
    request.check().map_err(cli_failure)?;
    // One operation: a signal after its backup is committed keeps it (cli/signals.rs).
    crate::signals::one_operation();
    let panel = open_panel(&args.state)?;
    let mut ctl = open_controller(&args.state)?;
    // Progress of the controller's archive backup (a plan or a snapshot draws none).
    let archive = request.writes_archive(&panel);
    let result = with_progress(out, &mut ctl, archive, |ctl| {
        backup::backup(ctl, &panel, &request).map_err(cli_failure)
    });
    if let Err(f) = &result
        && f.kind == ErrorKind::Interrupted.as_str()
        && !out.json
        && archive
    {
        let dest = request.to.as_ref().map_or_else(
            || "the backup store's new file".to_owned(),
            |d| d.to_string(),
        );
        crate::common::errln!(
            "rolled back: the partial file beside {dest} and the work folder were deleted, {dest} was not touched; the lock is released"
        );
    }
    match result? {
        Outcome::Plan(plan) => Ok(out.success(&plan, || describe_plan(&plan))),
        Outcome::Snapshot(mut done) => {
            // The whole command, as the person waited for it (not only the operation inside).
            done.duration_ms = crate::common::command_ms();
            Ok(out.success(&done, || snapshot_text(&done)))
        }
        Outcome::Archive(mut done) => {
            for w in &done.warnings {
                out.warn(w);
            }
            done.report.duration_ms = crate::common::command_ms();
            let r = &done.report;
            Ok(out.success(&done, || {
                format!(
                    "backed up {} to {} ({}, sha256 {}) in {} ms",
                    r.instance,
                    r.file,
                    human_bytes(r.size),
                    r.sha256,
                    r.duration_ms
                )
            }))
        }
    }
}

/// A snapshot backup in words.
fn snapshot_text(done: &backup::SnapshotBackup) -> String {
    let snap = &done.snapshot;
    format!(
        "backed up {} as snapshot {} in {} ({} files, {} read, {} added) in {} ms",
        done.instance,
        &snap.id[..8],
        done.repository,
        snap.files,
        human_bytes(snap.bytes_read),
        human_bytes(snap.bytes_added),
        done.duration_ms
    )
}

/// `backup --dry-run` in words.
fn describe_plan(plan: &aps_controller::operation::backup::BackupPlan) -> String {
    let mut text = format!(
        "backup of {} to {} ({}{}): nothing written\n",
        plan.instance,
        plan.destination,
        plan.mode,
        plan.script
            .as_ref()
            .map(|s| format!(", script {s}"))
            .unwrap_or_default()
    );
    for w in &plan.estimate.web_dirs {
        text += &format!(
            "  web folder {} ({}): {} files, {}\n",
            w.mapping_url,
            w.dir,
            w.files,
            human_bytes(w.bytes)
        );
    }
    for d in &plan.estimate.databases {
        text += &match (d.bytes, &d.error) {
            (Some(b), _) => format!("  database {}: {}\n", d.db_id, human_bytes(b)),
            (None, e) => format!(
                "  database {}: size unknown ({})\n",
                d.db_id,
                e.as_deref().unwrap_or("")
            ),
        };
    }
    text += &format!(
        "  estimate {} before compression; {} free at the destination, {} required: {}",
        human_bytes(plan.estimate.total),
        plan.free
            .map(human_bytes)
            .unwrap_or_else(|| "unknown".into()),
        human_bytes(plan.required),
        if plan.fits {
            "fits"
        } else {
            "REFUSED, too little space"
        }
    );
    text
}
