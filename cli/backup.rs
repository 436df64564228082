//! `aps-controller backup|restore|migrate`: one operation on one instance.

use std::process::ExitCode;
use std::time::Duration;

use aps_controller::archive::{ArchiveOptions, Compression};
use aps_controller::operation::{BackupRequest, MigrateRequest, RestoreRequest};
use camino::Utf8PathBuf;

use crate::common::{StateArgs, open_controller, print_failure, print_success};

#[derive(clap::Subcommand)]
pub enum OperationCommand {
    /// Back up an instance into FILE (complete, or nothing at all); `backup import FILE`
    /// accepts a backup made elsewhere.
    Backup(BackupCommand),
    /// Restore an instance from a backup file; on failure the instance is put back as it was.
    Restore(RestoreArgs),
    /// Back up NAME and restore it into another registered instance.
    Migrate(MigrateArgs),
}

/// `backup NAME --to FILE`, or `backup import FILE`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackupCommand {
    #[command(subcommand)]
    sub: Option<crate::import::BackupSubcommand>,
    #[command(flatten)]
    args: BackupArgs,
}

#[derive(clap::Args)]
pub struct BackupArgs {
    /// The registered instance.
    // Options only so that `backup import FILE` parses: required otherwise.
    #[arg(required = true)]
    name: Option<String>,
    /// Destination file (its folder must exist).
    #[arg(long, value_name = "FILE", required = true)]
    to: Option<Utf8PathBuf>,
    /// Script timeout in seconds (default 3600, or `timeout-secs` of controller.toml).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Replace an existing destination file.
    #[arg(long)]
    force: bool,
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
        OperationCommand::Backup(BackupCommand { sub: Some(s), .. }) => crate::import::run(s),
        OperationCommand::Backup(BackupCommand { args, .. }) => backup(args),
        OperationCommand::Restore(a) => restore(a),
        OperationCommand::Migrate(a) => migrate(a),
    }
}

fn backup(args: BackupArgs) -> ExitCode {
    let archive = match args.archive.options() {
        Ok(o) => o,
        Err(code) => return code,
    };
    let ctl = match open_controller(&args.state) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (Some(instance), Some(destination)) = (args.name, args.to) else {
        eprintln!("error: give NAME --to FILE, or `import FILE` (see --help)");
        return ExitCode::from(crate::common::EXIT_USAGE);
    };
    let request = BackupRequest {
        instance,
        destination,
        force: args.force,
        timeout: args.timeout.map(Duration::from_secs),
        archive,
    };
    match ctl.backup(&request) {
        Ok(r) => print_success(args.json, &r, || {
            format!(
                "backed up {} to {} ({} bytes, sha256 {}) in {} ms",
                r.instance, r.file, r.size, r.sha256, r.duration_ms
            )
        }),
        Err(e) => print_failure(args.json, &e),
    }
}

fn restore(args: RestoreArgs) -> ExitCode {
    let ctl = match open_controller(&args.state) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let request = RestoreRequest {
        instance: args.name,
        source: args.from,
        timeout: args.timeout.map(Duration::from_secs),
        no_safety_snapshot: args.no_safety_snapshot,
        identity: args.identity,
    };
    match ctl.restore(&request) {
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
        Err(e) => print_failure(args.json, &e),
    }
}

fn migrate(args: MigrateArgs) -> ExitCode {
    let ctl = match open_controller(&args.state) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut request = MigrateRequest::new(args.name, args.to_instance);
    request.keep = args.keep;
    request.timeout = args.timeout.map(Duration::from_secs);
    request.no_safety_snapshot = args.no_safety_snapshot;
    match ctl.migrate(&request) {
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
        Err(e) => print_failure(args.json, &e),
    }
}
