//! `aps-controller backup import FILE`: accept a backup this controller did not make, after
//! showing what it holds (docs/backup-format.md, "Backups from elsewhere").

use std::process::ExitCode;

use aps_controller::error::human_bytes;
use aps_controller::operation::import::ImportReport;
use aps_panel::service::import::Request as ImportRequest;
use camino::Utf8PathBuf;

use crate::common::{Failure, Out, StateArgs, cli_failure, open_controller};
use crate::terminal::escape;

#[derive(clap::Subcommand)]
pub enum BackupSubcommand {
    /// Accept a backup file made elsewhere (another controller's key, an older controller, an
    /// upload): it is checked end to end, what it holds is shown, and it is recorded as
    /// trusted so that restore, migrate, drill and verify take it. The file is not changed.
    Import(ImportArgs),
}

const IMPORT_EXAMPLES: &str = "\
EXAMPLES:
  # Show what a backup from elsewhere holds, recording nothing:
  aps-controller backup import /srv/incoming/blog.aps.tar.zst --dry-run

  # Accept it: restore, migrate, drill and verify take it from now on:
  aps-controller backup import /srv/incoming/blog.aps.tar.zst

  # A sufficient backup-script's own file, for the instance whose package made it:
  aps-controller backup import /srv/incoming/blog.tgz --instance blog";

#[derive(clap::Args)]
#[command(after_help = IMPORT_EXAMPLES)]
pub struct ImportArgs {
    /// The backup file.
    file: Utf8PathBuf,
    /// age identity file, for an encrypted archive.
    #[arg(long, value_name = "FILE")]
    identity: Option<Utf8PathBuf>,
    /// For the file of a `sufficient` backup-script (not an aps-controller archive): the
    /// instance whose package made it.
    #[arg(long, value_name = "NAME")]
    instance: Option<String>,
    /// Only show what the file holds; record nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object (docs/json.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

pub fn run(command: BackupSubcommand) -> ExitCode {
    let BackupSubcommand::Import(args) = command;
    let out = Out::new(args.json);
    out.finish(import(out, args))
}

fn import(out: Out, args: ImportArgs) -> Result<ExitCode, Failure> {
    let ctl = open_controller(&args.state)?;
    let request = ImportRequest {
        file: args.file,
        identity: args.identity,
        instance: args.instance,
        dry_run: args.dry_run,
    };
    let r = aps_panel::service::import::import(&ctl, &request).map_err(cli_failure)?;
    Ok(out.success(&r, || describe(&r)))
}

fn describe(r: &ImportReport) -> String {
    let mut out = String::new();
    match &r.manifest {
        Some(m) => {
            let h = &m.header;
            // Every header field is the file's author's, not ours: one line each, escaped, so
            // that none can hide or fake what the admin is asked to accept.
            out.push_str(&format!(
                "{}: backup of instance {} of {} {}-{} ({}), made {} by controller {}\n",
                escape(r.file.as_str()),
                escape(&h.instance),
                escape(&h.package_name),
                escape(&h.version),
                escape(&h.release),
                if h.package_id.is_empty() {
                    "no id".into()
                } else {
                    escape(&h.package_id)
                },
                h.created,
                escape(&h.controller_version)
            ));
            for p in &m.parts {
                out.push_str(&format!(
                    "  {:<24} {:>10}  sha256 {}\n",
                    escape(&p.name),
                    human_bytes(p.size),
                    escape(&p.sha256)
                ));
            }
            out.push_str(&format!("  manifest sha256 {}, tag: {}\n", r.sha256, r.tag));
        }
        None => out.push_str(&format!(
            "{}: a backup-script's own file, sha256 {}\n",
            escape(r.file.as_str()),
            r.sha256
        )),
    }
    match (&r.record, r.tag) {
        (_, "valid") => out.push_str("already this controller's own backup: nothing to do"),
        (None, _) => out.push_str("dry run: nothing recorded"),
        (Some(path), _) => out.push_str(&format!("imported: recorded as trusted in {path}")),
    }
    out
}
