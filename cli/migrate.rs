//! `aps-controller migrate NAME --to-instance OTHER`: the service's
//! [`aps_panel::service::migrate`], in words.

use std::process::ExitCode;

use aps_controller::error::human_bytes;
use aps_panel::service::install;
use aps_panel::service::migrate::{self, Migrated};
use camino::Utf8PathBuf;

use crate::backup::parse_timeout;
use crate::common::{
    Failure, Out, StateArgs, cli_failure, open_controller, open_panel, print_rolled_back,
    with_progress,
};

pub const MIGRATE_EXAMPLES: &str = "\
EXAMPLES:
  # Copy blog into the registered instance blog-staging (its own URL, folders, databases):
  aps-controller migrate blog --to-instance blog-staging --keep /tmp/blog-migrate.aps.tar.zst

  # With the repository store: blog's newest snapshot, or one `backups blog` lists, into
  # blog-staging (blog itself is not read):
  aps-controller migrate blog --to-instance blog-staging --latest
  aps-controller migrate blog --to-instance blog-staging --snapshot 3f0c9a1e --json

  # Into a new instance installed from blog's package with blog's settings (a `uniq`
  # setting needs a new value), its databases made on controller.toml's servers:
  aps-controller migrate blog --to-new blog2 --base-url https://blog2.example/ --web-root /srv/www/blog2 --setting site_code=blog2";

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The source instance.
    name: String,
    /// The registered target instance (its own URL, folders and databases); it is
    /// overwritten, and must differ from NAME.
    #[arg(long, value_name = "OTHER", required_unless_present = "to_new")]
    to_instance: Option<String>,
    /// A new instance to install from NAME's package (NAME's settings but `uniq` ones, under
    /// those given with --setting) and migrate into; a failure removes it whole.
    #[arg(long, value_name = "N", conflicts_with_all = ["to_instance", "snapshot", "latest"], requires_all = ["base_url", "web_root"])]
    to_new: Option<String>,
    #[command(flatten)]
    new: NewInstanceArgs,
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

pub fn run(args: MigrateArgs) -> ExitCode {
    let out = Out::new(args.json);
    out.finish(run_migrate(out, args))
}

fn run_migrate(out: Out, args: MigrateArgs) -> Result<ExitCode, Failure> {
    let to_new = args.to_new.map(|name| args.new.request(name, None));
    let request = migrate::Request {
        source: args.name,
        target: args.to_instance.unwrap_or_default(),
        to_new,
        keep: args.keep,
        timeout_secs: args.timeout,
        no_safety_snapshot: args.no_safety_snapshot,
        snapshot: args.snapshot,
        latest: args.latest,
    };
    request.check().map_err(cli_failure)?;
    let panel = if request.uses_snapshot() {
        Some(open_panel(&args.state)?)
    } else {
        None
    };
    let mut ctl = open_controller(&args.state)?;
    let result = with_progress(out, &mut ctl, true, |ctl| {
        migrate::migrate(ctl, panel.as_ref(), &request)
    });
    let done = result.map_err(|e| {
        print_rolled_back(out, &e, || rolled_back_text(&request));
        cli_failure(e)
    })?;
    Ok(out.success(&done, || migrated_text(&done)))
}

/// The new instance of `--to-new` / `--as-new`: where it is served and kept.
#[derive(clap::Args)]
pub struct NewInstanceArgs {
    /// The new instance's URL: http[s]://host[:port][/path] (with --to-new / --as-new).
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// The new instance's web root, a folder that does not exist yet (its parent must).
    #[arg(long, value_name = "DIR")]
    web_root: Option<Utf8PathBuf>,
    /// The account the new instance belongs to (default: the owner of the web root's parent).
    #[arg(long, value_name = "ACCOUNT")]
    user: Option<String>,
    /// A setting of the new instance, ID=VALUE, over the copied ones; repeat for a list.
    #[arg(long, value_name = "ID=VALUE")]
    setting: Vec<String>,
    /// The new instance's database of a `db` requirement: ID=SERVER or ID=existing:FILE
    /// (default: made on the first suitable server of controller.toml).
    #[arg(long, value_name = "ID=SERVER|existing:FILE")]
    database: Vec<String>,
}

impl NewInstanceArgs {
    /// The install request of new instance `name` (`package`: `None` is left to the service).
    pub fn request(self, name: String, package: Option<Utf8PathBuf>) -> install::Request {
        install::Request {
            package: package.unwrap_or_default(),
            name,
            base_url: self.base_url.unwrap_or_default(),
            web_root: self.web_root.unwrap_or_default(),
            user: self.user,
            settings: self.setting,
            databases: self.database,
            ..install::Request::default()
        }
    }
}

/// What the rollback of an interrupted migration put back.
fn rolled_back_text(request: &migrate::Request) -> String {
    if let Some(new) = &request.to_new {
        return format!(
            "the new instance {} was removed whole (files, databases, record), {} was not changed",
            new.name, request.source
        );
    }
    if request.uses_snapshot() {
        return format!(
            "{} is as it was before (put back from its safety snapshot where it had changed), {} was not changed",
            request.target, request.source
        );
    }
    format!(
        "{} is as it was before (put back from its safety snapshot where it had changed), {}, {} was not changed",
        request.target,
        match &request.keep {
            Some(k) => format!("the backup at {k} is kept if it was complete"),
            None => "the intermediate backup was deleted".to_owned(),
        },
        request.source
    )
}

fn migrated_text(done: &Migrated) -> String {
    match done {
        Migrated::Live(r) => format!(
            "migrated {} into {} ({}) in {} ms{}",
            r.source,
            r.target,
            human_bytes(r.backup.size),
            r.duration_ms,
            r.kept
                .as_ref()
                .map(|k| format!("; backup kept at {k}"))
                .unwrap_or_default()
        ),
        Migrated::ToNew(m) => format!(
            "installed {} from {}'s package and migrated {} into it ({}) in {} ms",
            m.migration.target,
            m.migration.source,
            m.migration.source,
            human_bytes(m.migration.backup.size),
            m.migration.duration_ms + m.installed.duration_ms
        ),
        Migrated::Snapshot(m) => format!(
            "migrated {} into {} from snapshot {} of {} in {} ms",
            m.source,
            m.target,
            &m.snapshot.id[..8],
            m.repository,
            m.duration_ms
        ),
    }
}
