//! `aps-controller backup|restore|migrate`: one operation on one instance.

use std::process::ExitCode;
use std::time::Duration;

use aps_controller::Controller;
use aps_controller::archive::check_recipients;
use aps_controller::error::ErrorKind;
use aps_controller::operation::{BackupRequest, MigrateRequest, RestoreRequest};
use aps_panel::config::StoreKind;
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
    /// Back up NAME and restore it into another registered instance.
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
  aps-controller migrate blog --to-instance blog-staging --keep /tmp/blog-migrate.aps.tar.zst";

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
    /// Keep the intermediate backup file here (else it is deleted).
    #[arg(long, value_name = "FILE")]
    keep: Option<Utf8PathBuf>,
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
    let panel = open_panel(&args.state)?;
    let mut ctl = open_controller(&args.state)?;
    if input.to.is_none() && panel.config.store_kind() == StoreKind::Repository {
        return repository_backup(out, &ctl, &panel, &input);
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
        eprintln!(
            "rolled back: the partial file beside {dest} and the work folder were deleted, {dest} was not touched; the lock is released"
        );
    }
    let v = result?;
    if let Some(Value::Array(warnings)) = v.get("warnings") {
        for w in warnings.iter().filter_map(Value::as_str) {
            out.warn(w);
        }
    }
    let fields: Map<String, Value> = v.as_object().cloned().unwrap_or_default();
    Ok(out.success(&fields, || {
        format!(
            "backed up {} to {} ({} bytes, sha256 {}) in {} ms",
            v["instance"].as_str().unwrap_or_default(),
            v["file"].as_str().unwrap_or_default(),
            v["size"],
            v["sha256"].as_str().unwrap_or_default(),
            v["duration_ms"]
        )
    }))
}

/// `backup NAME` into the repository store: one snapshot (docs/repository.md).
fn repository_backup(
    out: Out,
    ctl: &Controller,
    panel: &Panel,
    input: &BackupInput,
) -> Result<ExitCode, Failure> {
    let refuse = |what: &str| {
        Err(Failure::usage(format!(
            "{what} applies to archive files; panel.toml's store is a repository, which \
             compresses and encrypts by itself (give --to FILE for an archive)"
        )))
    };
    if input.dry_run {
        return refuse("--dry-run");
    }
    if input.compression.is_some() || !input.recipients.is_empty() {
        return refuse("--compression/--recipient");
    }
    let started = std::time::Instant::now();
    let store = aps_panel::repository::open(panel)
        .map_err(|p| Failure::from_problem(&p))?
        .expect("the store kind is repository");
    let snap = aps_panel::repository::backup(
        panel,
        ctl,
        &store,
        &input.instance,
        aps_panel::Periodicity::Manual,
    )
    .map_err(|p| interrupted_exit(Failure::from_problem(&p)))?;
    let duration_ms = started.elapsed().as_millis() as u64;
    Ok(out.success(
        &json!({
            "instance": input.instance,
            "repository": store.describe(),
            "snapshot": snap,
            "duration_ms": duration_ms,
        }),
        || {
            format!(
                "backed up {} as snapshot {} in {} ({} files, {} bytes read, {} bytes added) in {} ms",
                input.instance,
                &snap.id[..8],
                store.describe(),
                snap.files,
                snap.bytes_read,
                snap.bytes_added,
                duration_ms
            )
        },
    ))
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
    check_instance_name("NAME", &args.name)?;
    let panel = match args.from {
        Some(_) => None,
        None => Some(open_panel(&args.state)?),
    };
    let repository = panel
        .as_ref()
        .is_some_and(|p| p.config.store_kind() == StoreKind::Repository);
    if args.snapshot.is_some() && !repository {
        return Err(Failure::usage(
            "--snapshot names a snapshot of the repository store, but panel.toml's store is the \
             archive store: give --from FILE or --latest",
        ));
    }
    if repository && args.identity.is_some() {
        return Err(Failure::usage(
            "--identity decrypts archive files; a repository snapshot needs none",
        ));
    }
    if let (true, Some(panel)) = (repository, &panel) {
        return repository_restore(out, args, panel);
    }
    let source = match args.from {
        Some(from) => from,
        None => {
            let panel = panel.expect("opened without --from");
            manual::latest(&panel, &args.name).map_err(|e| {
                Failure::from_panel(&e).with(
                    "hint",
                    format!("`aps-controller backups {}` lists its backups", args.name),
                )
            })?
        }
    };
    let mut ctl = open_controller(&args.state)?;
    let progress = crate::progress::for_command(out.json);
    ctl.set_progress(progress.clone());
    let request = RestoreRequest {
        instance: args.name,
        source,
        timeout: args.timeout.map(Duration::from_secs),
        no_safety_snapshot: args.no_safety_snapshot,
        identity: args.identity,
    };
    let result = ctl.restore(&request);
    if let Some(p) = &progress {
        p.finish();
    }
    let r = result.map_err(|e| {
        print_rolled_back(out, &e, || rolled_back_text(&request));
        Failure::from_operation(&e)
    })?;
    Ok(out.success(&r, || restored_text(&r, r.file.as_ref())))
}

/// `restore NAME --latest|--snapshot ID` from the repository store: every mistake is refused
/// before anything is staged; the snapshot is made into a tagged archive in a private folder
/// of the state folder (its manifest's tag checked first), which the controller's own restore
/// then takes, with its safety snapshot and rollback. The folder is removed in every case.
fn repository_restore(out: Out, args: RestoreArgs, panel: &Panel) -> Result<ExitCode, Failure> {
    let mut ctl = open_controller(&args.state)?;
    ctl.store().get(&args.name).map_err(|e| {
        Failure::new(
            ErrorKind::InstanceNotFound,
            format!("{e}; `aps-controller instance list` shows the registered instances"),
        )
        .at("find-instance")
    })?;
    let store = aps_panel::repository::open(panel)
        .map_err(|p| Failure::from_problem(&p))?
        .expect("the store kind is repository");
    let mut staged =
        aps_panel::repository::stage(panel, &ctl, &store, &args.name, args.snapshot.as_deref())
            .map_err(|p| {
                let f = Failure::from_problem(&p);
                if p.kind == ErrorKind::Usage.as_str() {
                    f.with(
                        "hint",
                        format!("`aps-controller backups {}` lists its snapshots", args.name),
                    )
                } else {
                    interrupted_exit(f)
                }
            })?;
    let progress = crate::progress::for_command(out.json);
    ctl.set_progress(progress.clone());
    let request = RestoreRequest {
        instance: args.name,
        source: staged.archive.clone(),
        timeout: args.timeout.map(Duration::from_secs),
        no_safety_snapshot: args.no_safety_snapshot,
        identity: None,
    };
    let result = aps_panel::repository::restore_staged(&ctl, &mut staged, &request);
    if let Some(p) = &progress {
        p.finish();
    }
    let r = result.map_err(|e| {
        print_rolled_back(out, &e, || rolled_back_text(&request));
        Failure::from_operation(&e)
    })?;
    let snapshot = staged.snapshot.clone();
    drop(staged);
    let mut v = success_json(&r);
    v["snapshot"] = serde_json::to_value(&snapshot).expect("a snapshot serialises");
    // The staged archive is gone: the snapshot is what was restored.
    v["file"] = store.describe().into();
    let fields: Map<String, Value> = v.as_object().cloned().unwrap_or_default();
    Ok(out.success(&fields, || {
        let from = format!("snapshot {} of {}", &snapshot.id[..8], store.describe());
        restored_text(&r, &from)
    }))
}

/// The text line of a successful restore from `from` (a file, or a repository's snapshot).
fn restored_text(r: &aps_controller::operation::RestoreReport, from: &str) -> String {
    format!(
        "restored {} from {from} (made with version {}-{}) in {} ms{}",
        r.instance,
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
    check_instance_name("NAME", &args.name)?;
    check_instance_name("--to-instance", &args.to_instance)?;
    if args.name == args.to_instance {
        return Err(Failure::usage(format!(
            "--to-instance is {0:?}, the instance being migrated: name another registered \
             instance (register one with `aps-controller instance register --file …`)",
            args.name
        )));
    }
    let mut ctl = open_controller(&args.state)?;
    let progress = crate::progress::for_command(out.json);
    ctl.set_progress(progress.clone());
    let mut request = MigrateRequest::new(args.name, args.to_instance);
    request.keep = args.keep;
    request.timeout = args.timeout.map(Duration::from_secs);
    request.no_safety_snapshot = args.no_safety_snapshot;
    let result = ctl.migrate(&request);
    if let Some(p) = &progress {
        p.finish();
    }
    let r = result.map_err(|e| {
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
    Ok(out.success(&r, || {
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
    }))
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
