//! `aps-controller backup|restore|migrate`: one operation on one instance.

use std::process::ExitCode;
use std::time::Duration;

use aps_controller::archive::{ArchiveOptions, Compression};
use aps_controller::operation::{BackupRequest, MigrateRequest, RestoreRequest};
use camino::Utf8PathBuf;

use crate::common::{StateArgs, open_controller, print_failure, print_rolled_back, print_success};

#[derive(clap::Subcommand)]
pub enum OperationCommand {
    /// Back up an instance into FILE (complete, or nothing at all).
    Backup(BackupArgs),
    /// Restore an instance from a backup file; on failure the instance is put back as it was.
    Restore(RestoreArgs),
    /// Back up NAME and restore it into another registered instance.
    Migrate(MigrateArgs),
}

#[derive(clap::Args)]
pub struct BackupArgs {
    /// The registered instance.
    name: String,
    /// Destination file (its folder must exist).
    #[arg(long, value_name = "FILE")]
    to: Utf8PathBuf,
    /// Script timeout in seconds (default 3600, or `timeout-secs` of controller.toml).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Replace an existing destination file.
    #[arg(long)]
    force: bool,
    /// Check everything, print the size estimate and the plan; write and run nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    archive: ArchiveArgs,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

/// How the controller's own archive is written (not a `sufficient` script's file).
#[derive(clap::Args, Clone)]
pub struct ArchiveArgs {
    /// zstd (default), gzip or none.
    #[arg(long, value_name = "KIND", default_value = "zstd")]
    compression: String,
    /// Encrypt to this age recipient (age1…); repeatable.
    #[arg(long = "recipient", value_name = "AGE_PUBLIC_KEY")]
    recipients: Vec<String>,
}

impl ArchiveArgs {
    fn options(&self) -> Result<ArchiveOptions, ExitCode> {
        archive_options(&self.compression, &self.recipients).map_err(|message| {
            eprintln!("error: --compression: {message}");
            ExitCode::from(crate::common::EXIT_USAGE)
        })
    }
}

/// The archive options a backup request names: compression `zstd`, `gzip` or `none` (at the
/// levels the CLI documents) and age recipients.
pub fn archive_options(compression: &str, recipients: &[String]) -> Result<ArchiveOptions, String> {
    let compression = match compression {
        "zstd" => Compression::Zstd { level: 3 },
        "gzip" => Compression::Gzip { level: 6 },
        "none" => Compression::None,
        other => {
            return Err(format!(
                "unknown compression {other:?}: expected zstd, gzip or none"
            ));
        }
    };
    Ok(ArchiveOptions {
        compression,
        recipients: recipients.to_vec(),
        ..ArchiveOptions::default()
    })
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The registered instance to restore into.
    name: String,
    /// The backup file.
    #[arg(long, value_name = "FILE")]
    from: Utf8PathBuf,
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Do not take a safety snapshot first (a failed restore then cannot be undone: the
    /// instance stays as the failed restore left it).
    #[arg(long)]
    no_safety_snapshot: bool,
    /// age identity file for an encrypted backup.
    #[arg(long, value_name = "FILE")]
    identity: Option<Utf8PathBuf>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The source instance.
    name: String,
    /// The registered target instance (its own URL, folders and databases).
    #[arg(long, value_name = "OTHER")]
    to_instance: String,
    /// Keep the intermediate backup file here.
    #[arg(long, value_name = "FILE")]
    keep: Option<Utf8PathBuf>,
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    #[arg(long)]
    no_safety_snapshot: bool,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

pub fn run(command: OperationCommand) -> ExitCode {
    match command {
        OperationCommand::Backup(a) => backup(a),
        OperationCommand::Restore(a) => restore(a),
        OperationCommand::Migrate(a) => migrate(a),
    }
}

fn backup(args: BackupArgs) -> ExitCode {
    let archive = match args.archive.options() {
        Ok(o) => o,
        Err(code) => return code,
    };
    let mut ctl = match open_controller(&args.state) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let request = BackupRequest {
        instance: args.name,
        destination: args.to,
        force: args.force,
        timeout: args.timeout.map(Duration::from_secs),
        archive,
    };
    if args.dry_run {
        return match ctl.plan_backup(&request) {
            Ok(plan) => print_success(args.json, &plan, || describe_plan(&plan)),
            Err(e) => print_failure(args.json, &e),
        };
    }
    let progress = crate::progress::for_command(args.json);
    ctl.set_progress(progress.clone());
    let result = ctl.backup(&request);
    if let Some(p) = &progress {
        p.finish();
    }
    let rolled_back = |e: &aps_controller::OperationError| {
        print_rolled_back(args.json, e, || {
            format!(
                "the partial file beside {} and the work folder were deleted, {} was not touched",
                request.destination, request.destination
            )
        });
    };
    match result {
        Ok(r) => print_success(args.json, &r, || {
            format!(
                "backed up {} to {} ({} bytes, sha256 {}) in {} ms",
                r.instance, r.file, r.size, r.sha256, r.duration_ms
            )
        }),
        Err(e) => {
            let code = print_failure(args.json, &e);
            rolled_back(&e);
            code
        }
    }
}

/// `backup --dry-run` in words.
fn describe_plan(plan: &aps_controller::operation::backup::BackupPlan) -> String {
    use aps_controller::error::human_bytes;
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

fn restore(args: RestoreArgs) -> ExitCode {
    let mut ctl = match open_controller(&args.state) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let progress = crate::progress::for_command(args.json);
    ctl.set_progress(progress.clone());
    let request = RestoreRequest {
        instance: args.name,
        source: args.from,
        timeout: args.timeout.map(Duration::from_secs),
        no_safety_snapshot: args.no_safety_snapshot,
        identity: args.identity,
    };
    let result = ctl.restore(&request);
    if let Some(p) = &progress {
        p.finish();
    }
    let rolled_back = |e: &aps_controller::OperationError| {
        print_rolled_back(args.json, e, || {
            if request.no_safety_snapshot {
                format!(
                    "nothing could be put back (--no-safety-snapshot): instance {} is as the stopped restore left it",
                    request.instance
                )
            } else {
                format!(
                    "instance {} is as it was before the restore (web folders and databases put back from the safety snapshot where they had changed)",
                    request.instance
                )
            }
        });
    };
    match result {
        Ok(r) => print_success(args.json, &r, || {
            format!(
                "restored {} from {} (made with version {}-{}) in {} ms{}",
                r.instance,
                r.file,
                r.from_version,
                r.from_release,
                r.duration_ms,
                if r.safety_snapshot {
                    ""
                } else {
                    " without a safety snapshot"
                }
            )
        }),
        Err(e) => {
            let code = print_failure(args.json, &e);
            rolled_back(&e);
            code
        }
    }
}

fn migrate(args: MigrateArgs) -> ExitCode {
    let mut ctl = match open_controller(&args.state) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let progress = crate::progress::for_command(args.json);
    ctl.set_progress(progress.clone());
    let mut request = MigrateRequest::new(args.name, args.to_instance);
    request.keep = args.keep;
    request.timeout = args.timeout.map(Duration::from_secs);
    request.no_safety_snapshot = args.no_safety_snapshot;
    let result = ctl.migrate(&request);
    if let Some(p) = &progress {
        p.finish();
    }
    let rolled_back = |e: &aps_controller::OperationError| {
        print_rolled_back(args.json, e, || {
            format!(
                "{} is as it was before (put back from its safety snapshot where it had changed), {}, {} was not changed",
                request.target,
                match &request.keep {
                    Some(k) => format!("the backup at {k} is kept if it was complete"),
                    None => "the intermediate backup was deleted".to_owned(),
                },
                request.source
            )
        });
    };
    match result {
        Ok(r) => print_success(args.json, &r, || {
            format!(
                "migrated {} into {} ({} bytes) in {} ms{}",
                r.source,
                r.target,
                r.backup.size,
                r.duration_ms,
                r.kept
                    .as_ref()
                    .map(|k| format!("; backup kept at {k}"))
                    .unwrap_or_default()
            )
        }),
        Err(e) => {
            let code = print_failure(args.json, &e);
            rolled_back(&e);
            code
        }
    }
}
