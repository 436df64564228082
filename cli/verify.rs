//! `aps-controller verify FILE | --instance NAME | --repository`: a backup checked end to end,
//! or the repository store.

use std::process::ExitCode;

use aps_controller::ErrorKind;
use aps_panel::PanelError;
use camino::Utf8PathBuf;
use serde_json::json;

use crate::common::{Failure, Out, StateArgs, check_instance_name};
use crate::policy::{engine, finish, open, require_registered};

/// `verify`'s arguments.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The backup file; or use --instance for an instance's newest good backup, or
    /// --repository.
    #[arg(
        required_unless_present_any = ["instance", "repository"],
        conflicts_with_all = ["instance", "repository"]
    )]
    file: Option<Utf8PathBuf>,
    /// Verify the newest good backup of this registered instance in the backup store.
    #[arg(long, value_name = "NAME", conflicts_with = "repository")]
    instance: Option<String>,
    /// Check the repository store (panel.toml [store] kind = "repository"): its structure
    /// (config, keys, indexes, every snapshot's trees) and a random tenth of its pack files
    /// read back and checked against their ids; exit 17 when anything is damaged.
    #[arg(long)]
    repository: bool,
    /// With --repository: which pack files to read back instead of a random tenth:
    /// `25%`, `1/7` (the first of 7 disjoint parts; `daily/week` takes today's part, so a
    /// week of runs reads everything), `500MiB`, or `none` (structure only).
    #[arg(
        long,
        value_name = "SUBSET",
        requires = "repository",
        conflicts_with = "read_all"
    )]
    read_sample: Option<String>,
    /// With --repository: read every pack file back (the whole repository).
    #[arg(long, requires = "repository")]
    read_all: bool,
    /// age identity file (AGE-SECRET-KEY-…), for encrypted backups.
    #[arg(long, value_name = "FILE")]
    identity: Option<Utf8PathBuf>,
    /// Print one JSON object (docs/json.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

pub fn run(args: VerifyArgs) -> ExitCode {
    let out = Out::new(args.json);
    finish(out, verify(out, args))
}

fn verify(out: Out, args: VerifyArgs) -> Result<ExitCode, Failure> {
    if args.repository {
        return verify_repository(out, &args.state, args.read_sample.as_deref(), args.read_all);
    }
    let VerifyArgs {
        file,
        instance,
        identity,
        state,
        ..
    } = args;
    if let Some(i) = &instance {
        check_instance_name("--instance", i)?;
    }
    let (panel, controller) = open(&state)?;
    let engine = engine(&panel, controller)?;
    let file = match (file, instance) {
        (Some(f), _) => f,
        (None, Some(i)) => {
            require_registered(engine.controller(), &i)?;
            aps_panel::manual::latest(&panel, &i).map_err(|e| Failure::from_panel(&e))?
        }
        (None, None) => {
            return Err(Failure::usage("give FILE or --instance NAME"));
        }
    };
    // `--identity`, else panel.toml's `identity-file`.
    let identity = identity.or_else(|| panel.config.identity_file(&panel.state_dir));
    let detail = engine
        .verify_archive(&file, identity.as_deref())
        .map_err(|e| Failure::from_panel(&PanelError::Engine(e)).with("file", file.as_str()))?;
    Ok(out.success(&json!({ "file": file, "detail": detail }), || {
        format!(
            "{file}: ok{}",
            if detail.is_empty() {
                String::new()
            } else {
                format!(" ({detail})")
            }
        )
    }))
}

/// `verify --repository`: the engine's check plus packs read back; damage is exit 17
/// (`invalid-backup`) with every finding in `error.errors`.
fn verify_repository(
    out: Out,
    state: &StateArgs,
    read_sample: Option<&str>,
    read_all: bool,
) -> Result<ExitCode, Failure> {
    use aps_panel::store::repository::RepositoryError;
    use aps_panel::store::repository::verify::ReadData;
    let read = match (read_all, read_sample) {
        (true, _) => ReadData::All,
        (false, Some(s)) => ReadData::parse_sample(s).map_err(Failure::usage)?,
        (false, None) => ReadData::Sample(ReadData::DEFAULT_SAMPLE.to_owned()),
    };
    let (panel, _) = open(state)?;
    let settings = panel.config.repository(&panel.state_dir).ok_or_else(|| {
        Failure::usage(format!(
            "{}/panel.toml does not choose the repository store: add [store] kind = \"repository\"",
            panel.state_dir
        ))
    })?;
    let fail = |e: RepositoryError| {
        let kind = match &e {
            RepositoryError::NotInitialised { .. } | RepositoryError::KeyFormat { .. } => {
                ErrorKind::Usage
            }
            _ => ErrorKind::Internal,
        };
        Failure::new(kind, e.to_string())
            .at("check-repository")
            .with("repository", settings.location.describe())
    };
    let store = aps_panel::store::repository::RepositoryStore::open(&settings).map_err(fail)?;
    let report = store.verify(&read).map_err(fail)?;
    if !report.is_ok() {
        return Err(Failure::new(
            ErrorKind::InvalidBackup,
            format!(
                "repository {} is damaged: {}",
                report.repository,
                report.errors.join("; ")
            ),
        )
        .at("check-repository")
        .with("repository", report.repository.clone())
        .with("errors", report.errors.clone())
        .with("warnings", report.warnings.clone()));
    }
    Ok(out.success(&report, || {
        let read = match &report.read_data {
            ReadData::None => "structure only".to_owned(),
            ReadData::All => "every pack read back".to_owned(),
            ReadData::Sample(s) => format!("packs read back: {s}"),
        };
        let mut text = format!(
            "repository {}: ok, {} snapshot(s), {read}",
            report.repository, report.snapshots
        );
        for w in &report.warnings {
            text += &format!("\n  note: {w}");
        }
        text
    }))
}
