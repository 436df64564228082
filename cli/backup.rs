//! `aps-controller backup|restore|migrate`: one operation on one instance.

use std::process::ExitCode;
use std::time::Duration;

use aps_controller::Controller;
use aps_controller::archive::check_recipients;
use aps_controller::error::ErrorKind;
use aps_controller::error::human_bytes;
use aps_controller::operation::{BackupRequest, MigrateRequest, RestoreRequest};
use aps_panel::manual::{self, ManualRequest};
use aps_panel::{Compression, Panel};
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{Map, Value, json};

use crate::common::{
    Failure, Out, StateArgs, check_instance_name, open_controller, open_panel, print_rolled_back,
    success_json,
};

#[derive(clap::Subcommand)]
pub enum OperationCommand {
    /// Back up an instance into the backup store, or into FILE (complete, or nothing at all);
    /// `backup import FILE` accepts a backup made elsewhere.
    #[command(after_help = BACKUP_EXAMPLES)]
    Backup(BackupCommand),
    /// Restore an instance from a backup file, or from its newest good backup; on failure the
    /// instance is put back as it was.
    #[command(after_help = RESTORE_EXAMPLES)]
    Restore(RestoreArgs),
    /// Back up NAME and restore it into another registered instance (or restore one of
    /// NAME's snapshots of the repository store into it).
    #[command(after_help = MIGRATE_EXAMPLES)]
    Migrate(MigrateArgs),
}

const BACKUP_EXAMPLES: &str = "\
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

const RESTORE_EXAMPLES: &str = "\
EXAMPLES:
  # The newest good backup of the store (what `aps-controller backups blog` lists first):
  aps-controller restore blog --latest

  # With the repository store ([store] kind = \"repository\"): a snapshot `backups blog` lists:
  aps-controller restore blog --snapshot 3f0c9a1e

  # A given file, encrypted, with the age identity that decrypts it:
  aps-controller restore blog --from /srv/backups/blog.aps.tar.zst.age --identity key.txt";

const MIGRATE_EXAMPLES: &str = "\
EXAMPLES:
  # Copy blog into the registered instance blog-staging (its own URL, folders, databases):
  aps-controller migrate blog --to-instance blog-staging --keep /tmp/blog-migrate.aps.tar.zst

  # With the repository store: blog's newest snapshot, or one `backups blog` lists, into
  # blog-staging (blog itself is not read):
  aps-controller migrate blog --to-instance blog-staging --latest
  aps-controller migrate blog --to-instance blog-staging --snapshot 3f0c9a1e --json";

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
    sub: Option<crate::import::BackupSubcommand>,
    #[command(flatten)]
    args: BackupArgs,
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

/// `zstd`, `gzip` or `none` as the CLI and HTTP name them.
pub fn compression_named(name: &str) -> Result<Compression, String> {
    match name {
        "zstd" => Ok(Compression::Zstd),
        "gzip" => Ok(Compression::Gzip),
        "none" => Ok(Compression::None),
        other => Err(format!(
            "unknown compression {other:?}: expected zstd, gzip or none"
        )),
    }
}

/// A manual backup's request, as the CLI and `serve` both describe it; the field names are the
/// interface's own (`--to` or `"to"`), for messages.
pub struct BackupInput {
    pub instance: String,
    pub to: Option<Utf8PathBuf>,
    pub force: bool,
    pub timeout_secs: Option<u64>,
    pub compression: Option<String>,
    pub recipients: Vec<String>,
    /// `true` for HTTP: messages name JSON fields.
    pub http: bool,
    /// Only check and estimate (`backup --dry-run`): the plan is the answer.
    pub dry_run: bool,
}

impl BackupInput {
    fn field(&self, cli: &'static str, http: &'static str) -> &'static str {
        if self.http { http } else { cli }
    }

    /// Whether the backup is a snapshot the store makes itself: no `--to` (`"to"`) and
    /// panel.toml's store keeps snapshots (the repository).
    pub fn goes_to_repository(&self, panel: &Panel) -> bool {
        self.to.is_none() && panel.store.keeps_snapshots()
    }

    /// Everything that can be checked without touching anything.
    fn check(&self) -> Result<(Option<Compression>, Option<Vec<String>>), Failure> {
        check_instance_name(self.field("NAME", "the instance"), &self.instance)?;
        if self.timeout_secs == Some(0) {
            return Err(Failure::usage(format!(
                "{} must be at least 1 second",
                self.field("--timeout", "\"timeout_secs\"")
            )));
        }
        let compression = self
            .compression
            .as_deref()
            .map(compression_named)
            .transpose()
            .map_err(|m| {
                Failure::usage(format!(
                    "{}: {m}",
                    self.field("--compression", "\"compression\"")
                ))
            })?;
        if let Err(e) = check_recipients(&self.recipients) {
            return Err(Failure::usage(format!(
                "{}: {e}; an age public key starts with age1 (`aps-controller key generate` makes one)",
                self.field("--recipient", "\"recipients\"")
            )));
        }
        // The CLI's parser refuses --force without --to; the same mistake over HTTP too.
        if self.force && self.to.is_none() {
            return Err(Failure::usage(format!(
                "{} replaces an existing {} file; without it nothing is replaced",
                self.field("--force", "\"force\": true"),
                self.field("--to", "\"to\"")
            )));
        }
        if let Some(to) = &self.to
            && self.http
            && !to.is_absolute()
        {
            return Err(Failure::usage(format!(
                "\"to\" is {to:?}; expected an absolute path"
            )));
        }
        let recipients = (!self.recipients.is_empty()).then(|| self.recipients.clone());
        Ok((compression, recipients))
    }
}

/// A manual backup, for the CLI and `serve`: checks, plans (store name or `--to`), backs up,
/// records. The report is the controller's, with `stored_as` (the store's name for it),
/// `record` (for `--to`) and `warnings`.
pub fn manual_backup(
    ctl: &Controller,
    panel: &Panel,
    input: &BackupInput,
) -> Result<Value, Failure> {
    let (plan, warnings, request) = prepare(ctl, panel, input)?;
    finish_backup(ctl, panel, input, plan, warnings, request)
}

/// Where a manual backup goes and how, checked, with the store's name held for it.
fn prepare(
    ctl: &Controller,
    panel: &Panel,
    input: &BackupInput,
) -> Result<(manual::ManualPlan, Vec<String>, BackupRequest), Failure> {
    let (compression, recipients) = input.check()?;
    let instance = ctl.store().get(&input.instance).map_err(|e| {
        Failure::new(
            ErrorKind::InstanceNotFound,
            format!("{e}; `aps-controller instance list` shows the registered instances"),
        )
        .at("find-instance")
    })?;
    match &input.to {
        Some(to) => refuse_inside_web_dirs(to, &instance.web_dirs, input.field("--to", "\"to\""))?,
        None => refuse_inside_web_dirs(
            &panel.local.instance_dir(&input.instance),
            &instance.web_dirs,
            "the backup store (panel.toml `store`)",
        )?,
    }
    let plan = manual::plan(
        panel,
        &ManualRequest {
            instance: input.instance.clone(),
            to: input.to.clone(),
            compression,
            recipients,
        },
        jiff::Timestamp::now(),
    )
    .map_err(|e| Failure::from_panel(&e))?;
    let mut warnings = plan.warnings.clone();
    if input.http {
        warnings = warnings
            .iter()
            .map(|w| crate::common::for_http(w))
            .collect();
    }
    let request = BackupRequest {
        instance: input.instance.clone(),
        destination: plan.destination.clone(),
        force: input.force,
        timeout: input.timeout_secs.map(Duration::from_secs),
        archive: plan.archive.options(0),
    };
    Ok((plan, warnings, request))
}

fn finish_backup(
    ctl: &Controller,
    panel: &Panel,
    input: &BackupInput,
    plan: manual::ManualPlan,
    warnings: Vec<String>,
    request: BackupRequest,
) -> Result<Value, Failure> {
    let report = ctl.backup(&request).map_err(|e| {
        let f = Failure::from_operation(&e);
        if input.http { f.for_http() } else { f }
    })?;
    let stored_as = plan.name().file_name();
    let record = plan.finish(panel).map_err(|e| {
        Failure::new(
            ErrorKind::Internal,
            format!(
                "the backup was written to {} but could not be recorded in the store: {e}",
                report.file
            ),
        )
    })?;
    let mut v = success_json(&report);
    v["stored_as"] = stored_as.into();
    if let Some(record) = record {
        v["record"] = record.as_str().into();
    }
    if !warnings.is_empty() {
        v["warnings"] = json!(warnings);
    }
    Ok(v)
}

fn refuse_inside_web_dirs(
    path: &Utf8Path,
    web_dirs: &std::collections::BTreeMap<String, Utf8PathBuf>,
    what: &str,
) -> Result<(), Failure> {
    match manual::web_dir_containing(path, web_dirs) {
        None => Ok(()),
        Some((mapping, dir)) => Err(Failure::new(
            ErrorKind::DestinationRefused,
            manual::inside_web_dir_message(what, path, &mapping, &dir),
        )
        .at("3.1-check-destination")),
    }
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from", "latest", "snapshot"])))]
pub struct RestoreArgs {
    /// The registered instance to restore into.
    name: String,
    /// The backup file (`aps-controller backups NAME` prints their full paths).
    #[arg(long, value_name = "FILE")]
    from: Option<Utf8PathBuf>,
    /// The newest good backup of NAME in the backup store (including those made with --to);
    /// with the repository store, its newest snapshot.
    #[arg(long)]
    latest: bool,
    /// A snapshot of NAME in the repository store (panel.toml [store] kind = "repository"):
    /// its id or a unique prefix, as `aps-controller backups NAME` lists them.
    #[arg(long, value_name = "ID")]
    snapshot: Option<String>,
    /// Script timeout in seconds, at least 1 (default: controller.toml, else 3600).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    timeout: Option<u64>,
    /// Do not take a safety snapshot first (a failed restore then cannot be undone: the
    /// instance stays as the failed restore left it).
    #[arg(long)]
    no_safety_snapshot: bool,
    /// age identity file (AGE-SECRET-KEY-…) for an encrypted backup.
    #[arg(long, value_name = "FILE")]
    identity: Option<Utf8PathBuf>,
    /// The --from file may be a backup of another instance: NAME is then overwritten with
    /// that instance's web folders and databases (without it, such a file is refused).
    #[arg(long)]
    from_other_instance: bool,
    /// Print one JSON object (docs/json.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The source instance.
    name: String,
    /// The registered target instance (its own URL, folders and databases); it is
    /// overwritten, and must differ from NAME.
    #[arg(long, value_name = "OTHER")]
    to_instance: String,
    /// Keep the intermediate backup file here (else it is deleted); not with --snapshot or
    /// --latest, which make none.
    #[arg(long, value_name = "FILE")]
    keep: Option<Utf8PathBuf>,
    /// Restore this snapshot of NAME in the repository store (panel.toml [store] kind =
    /// "repository") instead of a live backup: its id or a unique prefix, as `aps-controller
    /// backups NAME` lists them. NAME is not touched.
    #[arg(long, value_name = "ID", conflicts_with_all = ["latest", "keep"])]
    snapshot: Option<String>,
    /// Restore NAME's newest snapshot in the repository store instead of a live backup.
    #[arg(long, conflicts_with = "keep")]
    latest: bool,
    /// Script timeout in seconds, at least 1 (default: controller.toml, else 3600).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    timeout: Option<u64>,
    /// Do not take a safety snapshot of the target first.
    #[arg(long)]
    no_safety_snapshot: bool,
    /// Print one JSON object (docs/json.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

pub fn run(command: OperationCommand) -> ExitCode {
    match command {
        OperationCommand::Backup(BackupCommand { sub: Some(s), .. }) => crate::import::run(s),
        OperationCommand::Backup(BackupCommand { args, .. }) => {
            let out = Out::new(args.json);
            out.finish(backup(out, args))
        }
        OperationCommand::Restore(a) => {
            let out = Out::new(a.json);
            out.finish(restore(out, a))
        }
        OperationCommand::Migrate(a) => {
            let out = Out::new(a.json);
            out.finish(migrate(out, a))
        }
    }
}

fn backup(out: Out, args: BackupArgs) -> Result<ExitCode, Failure> {
    let input = BackupInput {
        instance: args.name.unwrap_or_default(),
        to: args.to,
        force: args.force,
        timeout_secs: args.timeout,
        compression: args.archive.compression,
        recipients: args.archive.recipients,
        http: false,
        dry_run: args.dry_run,
    };
    input.check()?;
    // One operation: a signal after its backup is committed keeps it (cli/signals.rs).
    crate::signals::one_operation();
    let panel = open_panel(&args.state)?;
    let mut ctl = open_controller(&args.state)?;
    if input.goes_to_repository(&panel) {
        let mut done = repository_backup(&ctl, &panel, &input).map_err(interrupted_exit)?;
        done.duration_ms = crate::common::command_ms();
        return Ok(out.success(&done, || done.text()));
    }
    if input.dry_run {
        let plan = manual_backup_plan(&ctl, &panel, &input)?;
        return Ok(out.success(&plan, || describe_plan(&plan)));
    }
    let progress = crate::progress::for_command(out.json);
    ctl.set_progress(progress.clone());
    let result = manual_backup(&ctl, &panel, &input);
    if let Some(p) = &progress {
        p.finish();
    }
    if let Err(f) = &result
        && f.kind == ErrorKind::Interrupted.as_str()
        && !out.json
    {
        let dest = input.to.as_ref().map_or_else(
            || "the backup store's new file".to_owned(),
            |d| d.to_string(),
        );
        crate::common::errln!(
            "rolled back: the partial file beside {dest} and the work folder were deleted, {dest} was not touched; the lock is released"
        );
    }
    let v = result?;
    if let Some(Value::Array(warnings)) = v.get("warnings") {
        for w in warnings.iter().filter_map(Value::as_str) {
            out.warn(w);
        }
    }
    let mut fields: Map<String, Value> = v.as_object().cloned().unwrap_or_default();
    // The whole command, as the person waited for it (not only the operation inside).
    fields.insert("duration_ms".to_owned(), crate::common::command_ms().into());
    let v = Value::Object(fields.clone());
    Ok(out.success(&fields, || {
        format!(
            "backed up {} to {} ({}, sha256 {}) in {} ms",
            v["instance"].as_str().unwrap_or_default(),
            v["file"].as_str().unwrap_or_default(),
            human_bytes(v["size"].as_u64().unwrap_or_default()),
            v["sha256"].as_str().unwrap_or_default(),
            v["duration_ms"]
        )
    }))
}

/// `backup NAME` into the repository store, as [`repository_backup`] answers it.
#[derive(serde::Serialize)]
pub struct SnapshotBackup {
    pub instance: String,
    /// The repository's folder, or `s3://bucket/prefix/`.
    pub repository: String,
    pub snapshot: aps_panel::store::repository::SnapshotInfo,
    pub duration_ms: u64,
}

impl SnapshotBackup {
    pub fn text(&self) -> String {
        let snap = &self.snapshot;
        format!(
            "backed up {} as snapshot {} in {} ({} files, {} read, {} added) in {} ms",
            self.instance,
            &snap.id[..8],
            self.repository,
            snap.files,
            human_bytes(snap.bytes_read),
            human_bytes(snap.bytes_added),
            self.duration_ms
        )
    }
}

/// `backup NAME` (the CLI) and `POST …/backup` without "to" (`serve`) into the repository
/// store: the archive-only options refused before any work, then one snapshot, periodicity
/// manual (docs/repository.md).
pub fn repository_backup(
    ctl: &Controller,
    panel: &Panel,
    input: &BackupInput,
) -> Result<SnapshotBackup, Failure> {
    input.check()?;
    let refuse = |what: &str| {
        Err(Failure::usage(format!(
            "{what} applies to archive files; panel.toml's store is a repository, which \
             compresses and encrypts by itself (give {} for an archive)",
            input.field("--to FILE", "\"to\"")
        )))
    };
    if input.dry_run {
        return refuse("--dry-run");
    }
    if input.compression.is_some() || !input.recipients.is_empty() {
        return refuse(input.field(
            "--compression/--recipient",
            "\"compression\"/\"recipients\"",
        ));
    }
    let started = std::time::Instant::now();
    let cx = panel.cx();
    panel
        .store
        .open(&cx)
        .map_err(|p| Failure::from_problem(&p))?;
    let made = panel
        .store
        .backup(
            &cx,
            ctl,
            &input.instance,
            aps_panel::Periodicity::Manual,
            &aps_panel::SystemClock,
        )
        .map_err(|p| Failure::from_problem(&p))?;
    let aps_panel::store::Made::Snapshot(snapshot) = made else {
        return Err(Failure::new(
            ErrorKind::Internal,
            "the store made a file, not a snapshot",
        ));
    };
    Ok(SnapshotBackup {
        instance: input.instance.clone(),
        repository: panel.store.describe(&cx),
        snapshot,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// An interrupted failure exits 128 + the signal (130 SIGINT, 143 SIGTERM).
fn interrupted_exit(f: Failure) -> Failure {
    if f.kind != ErrorKind::Interrupted.as_str() {
        return f;
    }
    match aps_controller::cancel::Cancel::process()
        .signal()
        .and_then(|s| crate::signals::interrupted_exit_status(Some(s)))
    {
        Some(code) => f.exit_with(code),
        None => f,
    }
}

fn restore(out: Out, args: RestoreArgs) -> Result<ExitCode, Failure> {
    let input = RestoreInput {
        instance: args.name,
        from: args.from,
        latest: args.latest,
        snapshot: args.snapshot,
        timeout_secs: args.timeout,
        no_safety_snapshot: args.no_safety_snapshot,
        identity: args.identity,
        from_other_instance: args.from_other_instance,
        http: false,
    };
    input.check()?;
    let panel = match input.from {
        Some(_) => None,
        None => Some(open_panel(&args.state)?),
    };
    input.check_store(panel.as_ref())?;
    let mut ctl = open_controller(&args.state)?;
    let progress = crate::progress::for_command(out.json);
    ctl.set_progress(progress.clone());
    let result = restore_instance(&ctl, panel.as_ref(), &input, out);
    if let Some(p) = &progress {
        p.finish();
    }
    let done = result?;
    Ok(out.success(&done.json, || done.text))
}

/// What a restore or a migration answers: the JSON fields of `--json` (and of `serve`), and
/// the text line.
pub struct Done {
    pub json: Value,
    pub text: String,
}

/// A restore's request, as the CLI and `serve` both describe it: exactly one of a file, the
/// newest backup, or a repository snapshot.
pub struct RestoreInput {
    pub instance: String,
    pub from: Option<Utf8PathBuf>,
    pub latest: bool,
    pub snapshot: Option<String>,
    pub timeout_secs: Option<u64>,
    pub no_safety_snapshot: bool,
    pub identity: Option<Utf8PathBuf>,
    /// The backup may be another instance's (`--from-other-instance`).
    pub from_other_instance: bool,
    /// `true` for HTTP: messages name JSON fields.
    pub http: bool,
}

impl RestoreInput {
    fn field(&self, cli: &'static str, http: &'static str) -> &'static str {
        if self.http { http } else { cli }
    }

    /// Everything that can be checked without opening anything.
    pub fn check(&self) -> Result<(), Failure> {
        check_instance_name(self.field("NAME", "the instance"), &self.instance)?;
        let sources = usize::from(self.from.is_some())
            + usize::from(self.latest)
            + usize::from(self.snapshot.is_some());
        if sources != 1 {
            return Err(Failure::usage(format!(
                "give exactly one of {}",
                self.field(
                    "--from FILE, --latest and --snapshot ID",
                    "\"from\", \"latest\": true and \"snapshot\""
                )
            )));
        }
        if self.timeout_secs == Some(0) {
            return Err(Failure::usage(format!(
                "{} must be at least 1 second",
                self.field("--timeout", "\"timeout_secs\"")
            )));
        }
        Ok(())
    }

    /// The mistakes panel.toml's store kind shows: a snapshot of the archive store, an age
    /// identity for a repository snapshot. `panel` is `None` only with a file.
    pub fn check_store(&self, panel: Option<&Panel>) -> Result<(), Failure> {
        let repository = panel.is_some_and(|p| p.store.keeps_snapshots());
        if self.snapshot.is_some() && !repository {
            return Err(Failure::usage(format!(
                "{} names a snapshot of the repository store, but panel.toml's store is the \
                 archive store: give {}",
                self.field("--snapshot", "\"snapshot\""),
                self.field("--from FILE or --latest", "\"from\" or \"latest\": true")
            )));
        }
        if repository && self.from.is_none() && self.identity.is_some() {
            return Err(Failure::usage(format!(
                "{} decrypts archive files; a repository snapshot needs none",
                self.field("--identity", "\"identity\"")
            )));
        }
        Ok(())
    }
}

/// A restore (the CLI and `serve`): from a file, from the archive store's newest good
/// backup, or from a snapshot of the repository store, which is made into a tagged archive
/// in a private folder of the state folder (its manifest's tag checked first) that the
/// controller's own restore then takes, with its safety snapshot and rollback; the folder is
/// removed in every case. Every mistake is refused before anything is staged or restored.
/// `panel` is `None` only with a file. With `out` in text mode, an interrupted restore says
/// what was put back.
pub fn restore_instance(
    ctl: &Controller,
    panel: Option<&Panel>,
    input: &RestoreInput,
    out: Out,
) -> Result<Done, Failure> {
    input.check()?;
    input.check_store(panel)?;
    if let Some(panel) = panel
        && input.from.is_none()
        && panel.store.keeps_snapshots()
    {
        return snapshot_restore(ctl, panel, input, out);
    }
    // An unknown instance is named as such (exit 4), before its backups are looked for.
    require_instance(ctl, &input.instance)?;
    let source = match (&input.from, panel) {
        (Some(from), _) => {
            // A file that is not there is a wrong argument, not a damaged backup.
            if let Err(e) = from.symlink_metadata()
                && e.kind() == std::io::ErrorKind::NotFound
            {
                return Err(Failure::usage(format!(
                    "{} {from}: no such file",
                    input.field("--from", "\"from\"")
                ))
                .with(
                    "hint",
                    format!(
                        "`aps-controller backups {}` lists its backups with their paths",
                        input.instance
                    ),
                ));
            }
            from.clone()
        }
        (None, Some(panel)) => manual::latest(panel, &input.instance).map_err(|e| {
            Failure::from_panel(&e).with(
                "hint",
                format!(
                    "`aps-controller backups {}` lists its backups",
                    input.instance
                ),
            )
        })?,
        (None, None) => {
            return Err(Failure::new(
                ErrorKind::Internal,
                "a restore without a file needs panel.toml's store, which was not opened",
            ));
        }
    };
    let request = RestoreRequest {
        instance: input.instance.clone(),
        source,
        timeout: input.timeout_secs.map(Duration::from_secs),
        no_safety_snapshot: input.no_safety_snapshot,
        identity: input.identity.clone(),
        from_other_instance: input.from_other_instance,
    };
    let r = ctl.restore(&request).map_err(|e| {
        print_rolled_back(out, &e, || rolled_back_text(&request));
        other_instance_failure(&e, input.http)
    })?;
    let text = restored_text(&r, r.file.as_ref());
    Ok(Done {
        json: success_json(&r),
        text,
    })
}

/// A failed restore as the CLI (or, with `http`, `serve`) reports it: a refused backup of
/// another instance names the flag (or the JSON field) that allows it.
fn other_instance_failure(e: &aps_controller::error::OperationError, http: bool) -> Failure {
    let f = Failure::from_operation(e);
    if !matches!(
        e,
        aps_controller::error::OperationError::OtherInstanceBackup { .. }
    ) {
        return f;
    }
    let (flag, field) = ("--from-other-instance", "\"from_other_instance\": true");
    if http {
        Failure {
            message: f.message.replace(flag, field),
            ..f
        }
    } else {
        f
    }
}

/// The instance must be registered before a snapshot is looked for.
fn require_instance(ctl: &Controller, name: &str) -> Result<(), Failure> {
    ctl.store().get(name).map(drop).map_err(|e| {
        Failure::new(
            ErrorKind::InstanceNotFound,
            format!("{e}; `aps-controller instance list` shows the registered instances"),
        )
        .at("find-instance")
    })
}

/// Snapshot `id` of `instance` (`None`: its newest) staged as a tagged archive; a snapshot
/// that is not there says how to list them.
fn stage_snapshot(
    ctl: &Controller,
    panel: &Panel,
    instance: &str,
    id: Option<&str>,
) -> Result<aps_panel::store::Staged, Failure> {
    let cx = panel.cx();
    panel
        .store
        .open(&cx)
        .map_err(|p| Failure::from_problem(&p))?;
    let found = panel.store.find(&cx, instance, id);
    found
        .and_then(|found| panel.store.stage(&cx, ctl, instance, &found))
        .map_err(|p| {
            let f = Failure::from_problem(&p);
            if p.kind == ErrorKind::Usage.as_str() {
                f.with(
                    "hint",
                    format!("`aps-controller backups {instance}` lists its snapshots"),
                )
            } else {
                interrupted_exit(f)
            }
        })
}

/// `restore NAME --latest|--snapshot ID` from the repository store.
/// Snapshot `id` of instance `from` (`None`: its newest) staged from the repository store and
/// restored into instance `into` through the controller's restore (`timeout_secs`,
/// `no_safety_snapshot`); on failure `rolled_back` says what was put back. Returns the
/// repository, the snapshot and the restore's report; the staging folder is gone by then.
fn restore_snapshot_into(
    ctl: &Controller,
    panel: &Panel,
    (from, id): (&str, Option<&str>),
    into: &str,
    (timeout_secs, no_safety_snapshot): (Option<u64>, bool),
    out: Out,
    rolled_back: impl FnOnce(&RestoreRequest) -> String,
) -> Result<
    (
        String,
        aps_panel::store::repository::SnapshotInfo,
        aps_controller::operation::RestoreReport,
    ),
    Failure,
> {
    let mut staged = stage_snapshot(ctl, panel, from, id)?;
    let request = RestoreRequest {
        instance: into.to_owned(),
        source: staged.archive.clone(),
        timeout: timeout_secs.map(Duration::from_secs),
        no_safety_snapshot,
        identity: None,
        // A migration's (`from` is the source); a restore stages only its own snapshots.
        from_other_instance: from != into,
    };
    let report = staged.restore(ctl, &request).map_err(|e| {
        print_rolled_back(out, &e, || rolled_back(&request));
        Failure::from_operation(&e)
    })?;
    let snapshot = staged.snapshot.clone().ok_or_else(|| {
        Failure::new(
            ErrorKind::Internal,
            "the store staged a file, not a snapshot",
        )
    })?;
    Ok((panel.store.describe(&panel.cx()), snapshot, report))
}

fn snapshot_restore(
    ctl: &Controller,
    panel: &Panel,
    input: &RestoreInput,
    out: Out,
) -> Result<Done, Failure> {
    require_instance(ctl, &input.instance)?;
    let (repository, snapshot, r) = restore_snapshot_into(
        ctl,
        panel,
        (&input.instance, input.snapshot.as_deref()),
        &input.instance,
        (input.timeout_secs, input.no_safety_snapshot),
        out,
        rolled_back_text,
    )?;
    let mut v = success_json(&r);
    v["snapshot"] = serde_json::to_value(&snapshot).expect("a snapshot serialises");
    // The staged archive is gone: the snapshot is what was restored.
    v["file"] = repository.clone().into();
    let from = format!("snapshot {} of {repository}", &snapshot.id[..8]);
    Ok(Done {
        json: v,
        text: restored_text(&r, &from),
    })
}

/// The text line of a successful restore from `from` (a file, or a repository's snapshot).
fn restored_text(r: &aps_controller::operation::RestoreReport, from: &str) -> String {
    format!(
        "restored {} from {from}: the backup of {} made {} (package version {}-{}), in {} ms{}",
        r.instance,
        r.source_instance,
        r.backup_created
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "at an unknown time".into()),
        r.from_version,
        r.from_release,
        r.duration_ms,
        if r.safety_snapshot {
            ""
        } else {
            " without a safety snapshot"
        }
    )
}

fn rolled_back_text(request: &RestoreRequest) -> String {
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
}

fn migrate(out: Out, args: MigrateArgs) -> Result<ExitCode, Failure> {
    let input = MigrateInput {
        source: args.name,
        target: args.to_instance,
        keep: args.keep,
        timeout_secs: args.timeout,
        no_safety_snapshot: args.no_safety_snapshot,
        snapshot: args.snapshot,
        latest: args.latest,
        http: false,
    };
    input.check()?;
    let panel = if input.uses_snapshot() {
        Some(open_panel(&args.state)?)
    } else {
        None
    };
    let mut ctl = open_controller(&args.state)?;
    let progress = crate::progress::for_command(out.json);
    ctl.set_progress(progress.clone());
    let result = migrate_instance(&ctl, panel.as_ref(), &input, out);
    if let Some(p) = &progress {
        p.finish();
    }
    let done = result?;
    Ok(out.success(&done.json, || done.text))
}

/// A migration's request, as the CLI and `serve` both describe it: from a live backup of
/// the source (the default), or from one of its snapshots in the repository store.
pub struct MigrateInput {
    pub source: String,
    pub target: String,
    pub keep: Option<Utf8PathBuf>,
    pub timeout_secs: Option<u64>,
    pub no_safety_snapshot: bool,
    /// A snapshot of the source (id or unique prefix) instead of a live backup.
    pub snapshot: Option<String>,
    /// The source's newest snapshot instead of a live backup.
    pub latest: bool,
    /// `true` for HTTP: messages name JSON fields.
    pub http: bool,
}

impl MigrateInput {
    fn field(&self, cli: &'static str, http: &'static str) -> &'static str {
        if self.http { http } else { cli }
    }

    /// From a snapshot of the repository store rather than a live backup.
    pub fn uses_snapshot(&self) -> bool {
        self.snapshot.is_some() || self.latest
    }

    /// Everything that can be checked without opening anything.
    pub fn check(&self) -> Result<(), Failure> {
        check_instance_name(self.field("NAME", "the instance"), &self.source)?;
        let target = self.field("--to-instance", "\"to_instance\"");
        check_instance_name(target, &self.target)?;
        if self.source == self.target {
            return Err(Failure::usage(format!(
                "{target} is {0:?}, the instance being migrated: name another registered \
                 instance (register one with `aps-controller instance register --file …`)",
                self.source
            )));
        }
        if self.timeout_secs == Some(0) {
            return Err(Failure::usage(format!(
                "{} must be at least 1 second",
                self.field("--timeout", "\"timeout_secs\"")
            )));
        }
        if self.snapshot.is_some() && self.latest {
            return Err(Failure::usage(format!(
                "give one of {}",
                self.field(
                    "--snapshot ID and --latest",
                    "\"snapshot\" and \"latest\": true"
                )
            )));
        }
        if self.uses_snapshot() && self.keep.is_some() {
            return Err(Failure::usage(format!(
                "{} keeps the intermediate backup of a live migration; a migration from a \
                 snapshot makes none (the snapshot stays in the repository)",
                self.field("--keep", "\"keep\"")
            )));
        }
        Ok(())
    }
}

/// `migrate NAME --to-instance OTHER` (the CLI and `serve`): a live backup of NAME restored
/// into OTHER by the controller, or with a snapshot, that snapshot of NAME staged from the
/// repository store and restored into OTHER through the controller's restore (safety
/// snapshot, rollback). Every mistake — a snapshot with the archive store, an unknown
/// instance, the same instance twice, another package, an unknown snapshot — is refused before
/// anything is staged. `panel` is needed only with a snapshot.
pub fn migrate_instance(
    ctl: &Controller,
    panel: Option<&Panel>,
    input: &MigrateInput,
    out: Out,
) -> Result<Done, Failure> {
    input.check()?;
    if input.uses_snapshot() {
        return snapshot_migrate(ctl, panel, input, out);
    }
    let mut request = MigrateRequest::new(input.source.clone(), input.target.clone());
    request.keep = input.keep.clone();
    request.timeout = input.timeout_secs.map(Duration::from_secs);
    request.no_safety_snapshot = input.no_safety_snapshot;
    let r = ctl.migrate(&request).map_err(|e| {
        print_rolled_back(out, &e, || {
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
        Failure::from_operation(&e)
    })?;
    let text = format!(
        "migrated {} into {} ({}) in {} ms{}",
        r.source,
        r.target,
        human_bytes(r.backup.size),
        r.duration_ms,
        r.kept
            .as_ref()
            .map(|k| format!("; backup kept at {k}"))
            .unwrap_or_default()
    );
    Ok(Done {
        json: success_json(&r),
        text,
    })
}

/// A migration from a snapshot of the repository store, as [`migrate_instance`] answers it.
#[derive(serde::Serialize)]
struct SnapshotMigration {
    source: String,
    target: String,
    repository: String,
    snapshot: aps_panel::store::repository::SnapshotInfo,
    restore: aps_controller::operation::RestoreReport,
    duration_ms: u64,
}

fn snapshot_migrate(
    ctl: &Controller,
    panel: Option<&Panel>,
    input: &MigrateInput,
    out: Out,
) -> Result<Done, Failure> {
    let started = std::time::Instant::now();
    let Some(panel) = panel.filter(|p| p.store.keeps_snapshots()) else {
        return Err(Failure::usage(format!(
            "{} names a snapshot of the repository store, but panel.toml's store is the \
             archive store: without it, migrate makes a live backup of {}",
            snapshot_field(input),
            input.source
        )));
    };
    // The checks of a live migration, before anything is staged.
    ctl.check_migration(&input.source, &input.target)
        .map_err(|e| Failure::from_operation(&e))?;
    let (repository, snapshot, restore) = restore_snapshot_into(
        ctl,
        panel,
        (&input.source, input.snapshot.as_deref()),
        &input.target,
        (input.timeout_secs, input.no_safety_snapshot),
        out,
        |_| {
            format!(
                "{} is as it was before (put back from its safety snapshot where it had changed), {} was not changed",
                input.target, input.source
            )
        },
    )?;
    let report = SnapshotMigration {
        source: input.source.clone(),
        target: input.target.clone(),
        repository,
        snapshot,
        restore,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    let text = format!(
        "migrated {} into {} from snapshot {} of {} in {} ms",
        report.source,
        report.target,
        &report.snapshot.id[..8],
        report.repository,
        report.duration_ms
    );
    Ok(Done {
        json: success_json(&report),
        text,
    })
}

/// How the snapshot was named: `--snapshot` or `--latest` (or their JSON fields).
fn snapshot_field(input: &MigrateInput) -> &'static str {
    match (input.snapshot.is_some(), input.http) {
        (true, false) => "--snapshot",
        (true, true) => "\"snapshot\"",
        (false, false) => "--latest",
        (false, true) => "\"latest\": true",
    }
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

/// `backup --dry-run`: steps 1 to 3.1 and the size estimate, nothing run or left behind.
fn manual_backup_plan(
    ctl: &Controller,
    panel: &Panel,
    input: &BackupInput,
) -> Result<aps_controller::operation::backup::BackupPlan, Failure> {
    // The store's name is held only for this answer: dropping the plan releases it.
    let (_plan, _warnings, request) = prepare(ctl, panel, input)?;
    ctl.plan_backup(&request)
        .map_err(|e| Failure::from_operation(&e))
}
