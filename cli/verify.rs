//! `aps-controller verify FILE | --instance NAME | --repository`: a backup checked end to end,
//! or the repository store.

use std::process::ExitCode;

use camino::Utf8PathBuf;

use aps_panel::service::verify;

use crate::common::{Failure, Out, StateArgs, cli_failure};
use crate::policy::{engine, finish, open};

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
    finish(out, verify_archive(out, args))
}

fn verify_archive(out: Out, args: VerifyArgs) -> Result<ExitCode, Failure> {
    if args.repository {
        return verify_repository(out, &args.state, args.read_sample.as_deref(), args.read_all);
    }
    let request = verify::ArchiveRequest {
        file: args.file,
        instance: args.instance,
        identity: args.identity,
    };
    request.check().map_err(cli_failure)?;
    let (panel, controller) = open(&args.state)?;
    let engine = engine(&panel, controller)?;
    let done = verify::verify_archive(&panel, &engine, &request).map_err(cli_failure)?;
    let (file, detail) = (&done.file, &done.detail);
    Ok(out.success(&done, || {
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
    use aps_panel::store::ReadData;
    let read = match (read_all, read_sample) {
        (true, _) => ReadData::All,
        (false, Some(s)) => ReadData::parse_sample(s).map_err(Failure::usage)?,
        (false, None) => ReadData::Sample(ReadData::DEFAULT_SAMPLE.to_owned()),
    };
    let (panel, _) = open(state)?;
    let report = verify::verify_repository(&panel, &read).map_err(cli_failure)?;
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
