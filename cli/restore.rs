//! `aps-controller restore NAME --from FILE | --latest | --snapshot ID`: the service's
//! [`aps_panel::service::restore`], in words.

use std::process::ExitCode;

use aps_panel::service::restore::{self, Restored};
use camino::Utf8PathBuf;

use crate::backup::parse_timeout;
use crate::common::{
    Failure, Out, StateArgs, cli_failure, open_controller, open_panel, print_rolled_back,
    with_progress,
};
use crate::migrate::NewInstanceArgs;

pub const RESTORE_EXAMPLES: &str = "\
EXAMPLES:
  # The newest good backup of the store (what `aps-controller backups blog` lists first):
  aps-controller restore blog --latest

  # With the repository store ([store] kind = \"repository\"): a snapshot `backups blog` lists:
  aps-controller restore blog --snapshot 3f0c9a1e

  # A given file, encrypted, with the age identity that decrypts it:
  aps-controller restore blog --from /srv/backups/blog.aps.tar.zst.age --identity key.txt

  # On a host where the instance never existed: install a new one from the backup's package
  # (given, or the one a registered instance runs at the backup's version), then restore:
  aps-controller restore --from /srv/backups/blog.aps.tar.zst --as-new blog --base-url https://blog.example/ --web-root /srv/www/blog --package /srv/packages/blog.app.zip --setting admin_password=changeme";

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from", "latest", "snapshot"])))]
pub struct RestoreArgs {
    /// The registered instance to restore into; with --as-new, the instance whose backups
    /// --latest/--snapshot look for (not needed with --from).
    #[arg(required_unless_present = "as_new")]
    name: Option<String>,
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
    /// Install this new instance from the backup's package, then restore into it; a failure
    /// removes it whole. Its settings are the package's defaults and --setting.
    #[arg(long, value_name = "N", conflicts_with_all = ["no_safety_snapshot", "from_other_instance"], requires_all = ["base_url", "web_root"])]
    as_new: Option<String>,
    /// With --as-new: the package to install (a folder or .app.zip), when no registered
    /// instance runs the backup's package at its version.
    #[arg(long, value_name = "PKG", requires = "as_new")]
    package: Option<Utf8PathBuf>,
    #[command(flatten)]
    new: NewInstanceArgs,
    /// Print one JSON object (docs/json.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

pub fn run(args: RestoreArgs) -> ExitCode {
    let out = Out::new(args.json);
    out.finish(run_restore(out, args))
}

fn run_restore(out: Out, args: RestoreArgs) -> Result<ExitCode, Failure> {
    let as_new = args.as_new.map(|name| args.new.request(name, args.package));
    let request = restore::Request {
        as_new,
        instance: args.name.unwrap_or_default(),
        from: args.from,
        latest: args.latest,
        snapshot: args.snapshot,
        timeout_secs: args.timeout,
        no_safety_snapshot: args.no_safety_snapshot,
        identity: args.identity,
        from_other_instance: args.from_other_instance,
    };
    request.check().map_err(cli_failure)?;
    let panel = if request.needs_panel() {
        Some(open_panel(&args.state)?)
    } else {
        None
    };
    request.check_store(panel.as_ref()).map_err(cli_failure)?;
    let mut ctl = open_controller(&args.state)?;
    let result = with_progress(out, &mut ctl, true, |ctl| {
        restore::restore(ctl, panel.as_ref(), &request)
    });
    let done = result.map_err(|e| {
        print_rolled_back(out, &e, || match &request.as_new {
            Some(new) => format!(
                "the new instance {} was removed whole (files, databases, record)",
                new.name
            ),
            None => rolled_back_text(&request.instance, request.no_safety_snapshot),
        });
        cli_failure(e)
    })?;
    Ok(out.success(&done, || restored_line(&done)))
}

fn restored_line(done: &Restored) -> String {
    let r = &done.report;
    if let Some(installed) = &done.installed {
        return format!(
            "installed {} ({} {}-{}); {}",
            installed.instance,
            installed.application,
            installed.version,
            installed.release,
            restored_text(r, r.file.as_ref())
        );
    }
    match &done.from_snapshot {
        Some(s) => restored_text(
            r,
            &format!("snapshot {} of {}", &s.snapshot.id[..8], s.repository),
        ),
        None => restored_text(r, r.file.as_ref()),
    }
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

fn rolled_back_text(instance: &str, no_safety_snapshot: bool) -> String {
    if no_safety_snapshot {
        format!(
            "nothing could be put back (--no-safety-snapshot): instance {instance} is as the stopped restore left it"
        )
    } else {
        format!(
            "instance {instance} is as it was before the restore (web folders and databases put back from the safety snapshot where they had changed)"
        )
    }
}
