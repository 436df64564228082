//! `aps-controller instance install PACKAGE --name N --base-url URL --web-root DIR …`: a new
//! instance made from a package (docs/lifecycle.md, "Install").

use std::process::ExitCode;

use aps_controller::operation::install::InstallReport;
use aps_panel::service::install as service;
use camino::Utf8PathBuf;

use crate::common::{Failure, Out, StateArgs, cli_failure, open_controller};
use crate::terminal::escape;

#[derive(clap::Args)]
pub struct InstallArgs {
    /// The package: a folder or a `.app.zip` (checked as `package check` checks it).
    pub package: Utf8PathBuf,
    /// The new instance's name.
    #[arg(long)]
    pub name: String,
    /// Where the instance is served: http[s]://host[:port][/path].
    #[arg(long, value_name = "URL")]
    pub base_url: String,
    /// The folder the root url-mapping's files go to; made when it does not exist (its
    /// parent must).
    #[arg(long, value_name = "DIR")]
    pub web_root: Utf8PathBuf,
    /// The account the instance's files and scripts belong to (default: the owner of the web
    /// root, or of its parent when it is new). Never root.
    #[arg(long, value_name = "ACCOUNT")]
    pub user: Option<String>,
    /// A setting of the package, ID=VALUE; repeat an id for a list setting.
    #[arg(long, value_name = "ID=VALUE")]
    pub setting: Vec<String>,
    /// A TOML file of settings (`ID = "value"`, `ID = ["a", "b"]`); --setting wins over it.
    #[arg(long, value_name = "FILE")]
    pub settings_file: Option<Utf8PathBuf>,
    /// The database of a `db` requirement: ID=SERVER (a server of controller.toml's
    /// [database-servers]) or ID=existing:FILE (a file with the keys of INSTANCE.toml's
    /// [databases.ID]).
    #[arg(long, value_name = "ID=SERVER|existing:FILE")]
    pub database: Vec<String>,
    /// Install into a web root that already holds files, beside them (never over them).
    #[arg(long)]
    pub force: bool,
    /// Run every check (package, requirements, settings, web root) and make nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Timeout of each script, in seconds (default: controller.toml's).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Print one JSON object (docs/json.md).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

/// The help's closing text.
pub const EXAMPLES: &str = "EXAMPLES:\n  aps-controller instance install fixtures/packages/sh-sample --name demo --base-url https://demo.example/ --web-root /srv/www/demo --setting admin_password=s3cret --dry-run\n  aps-controller instance install blog.app.zip --name blog --base-url https://blog.example/ --web-root /home/alice/blog --user alice --settings-file blog-settings.toml --database main=existing:blog-db.toml --json";

pub fn run(args: InstallArgs) -> ExitCode {
    let out = Out::new(args.json);
    out.finish(install(out, args))
}

fn install(out: Out, args: InstallArgs) -> Result<ExitCode, Failure> {
    let request = service::Request {
        package: args.package,
        name: args.name,
        base_url: args.base_url,
        web_root: args.web_root,
        user: args.user,
        settings: args.setting,
        settings_file: args.settings_file,
        databases: args.database,
        force: args.force,
        dry_run: args.dry_run,
        timeout_secs: args.timeout,
    };
    request.check().map_err(cli_failure)?;
    let ctl = open_controller(&args.state)?;
    let report = service::install(&ctl, &request).map_err(cli_failure)?;
    Ok(out.success(&report, || human(&report)))
}

fn human(r: &InstallReport) -> String {
    let what = format!(
        "instance {} of {} {}-{} at {} into {}",
        escape(&r.instance),
        escape(&r.application),
        escape(&r.version),
        escape(&r.release),
        escape(&r.base_url),
        escape(r.web_root.as_str()),
    );
    let mut text = if r.dry_run {
        format!("dry run: {what} can be installed; nothing was made")
    } else {
        format!(
            "installed {what} ({} files, {} folders) in {} ms",
            r.files.files, r.files.folders, r.duration_ms
        )
    };
    if let Some(account) = &r.account {
        text += &format!("\n  account: {}", escape(account));
    }
    for db in &r.databases {
        text += &format!(
            "\n  database {}: {} {} on {}:{} ({})",
            escape(&db.id),
            db.kind,
            escape(&db.name),
            escape(&db.host),
            db.port,
            if db.created { "created" } else { "existing" }
        );
    }
    if !r.dry_run && !r.configure_output.is_empty() {
        text += &format!(
            "\n  configure install said: {}",
            escape(&r.configure_output)
        );
    }
    text
}
