//! The `aps-controller` command. Thin glue: parse arguments, call the libraries, print.

mod backup;
mod backups;
mod common;
mod config;
mod configure;
mod conformance;
mod drill;
mod enable;
mod failures;
mod generate;
mod import;
mod install;
mod instance;
mod key;
mod log;
mod migrate;
mod package;
mod policy;
mod progress;
mod prune;
mod remove;
mod restore;
mod run;
mod serve;
mod signals;
mod status;
mod store;
mod terminal;
mod upgrade;
mod verify;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// The top-level help's closing text; the state folder this user would get is added at run
/// time (`--help` is where a new administrator looks first).
const AFTER_HELP: &str = "EXAMPLES:\n  \
    aps-controller instance register --file examples/demo/INSTANCE.toml\n  \
    aps-controller backup demo-blog\n  \
    aps-controller backups demo-blog\n  \
    aps-controller restore demo-blog --latest\n  \
    aps-controller run --periodicity daily\n  \
    aps-controller config show\n\n\
    Every command takes --json (one JSON object: docs/json.md) and --state-dir DIR.\n\
    Exit codes: README, \"Exit codes\".";

#[derive(Parser)]
#[command(
    name = "aps-controller",
    version,
    about = "APS application instances: backup, restore, migrate, policies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check an APS package (folder or .app.zip) for its author.
    #[command(subcommand)]
    Package(package::PackageCommand),
    /// Run a package's whole life (install, backup, damage, restore, compare, configure,
    /// migrate, upgrade, remove, interrupted backup and restore) in a throwaway sandbox and
    /// check every step; exit 26 when a step failed.
    #[command(after_help = conformance::EXAMPLES)]
    Conformance(conformance::ConformanceArgs),
    /// Register, list, show and remove instances.
    #[command(subcommand)]
    Instance(instance::InstanceCommand),
    /// Back up an instance into the backup store, or into FILE (complete, or nothing at all);
    /// `backup import FILE` accepts a backup made elsewhere.
    #[command(after_help = backup::BACKUP_EXAMPLES)]
    Backup(backup::BackupCommand),
    /// Restore an instance from a backup file, or from its newest good backup; on failure the
    /// instance is put back as it was.
    #[command(after_help = restore::RESTORE_EXAMPLES)]
    Restore(restore::RestoreArgs),
    /// Back up NAME and restore it into another registered instance (or restore one of
    /// NAME's snapshots of the repository store into it).
    #[command(after_help = migrate::MIGRATE_EXAMPLES)]
    Migrate(migrate::MigrateArgs),
    /// Back up every registered instance but the staging ones (or the named ones) for a
    /// periodicity into the backup store, then copy off the machine and apply retention. Meant
    /// for systemd timers and cron.
    #[command(after_help = "EXAMPLES:\n  \
        aps-controller run --periodicity daily\n  \
        aps-controller run --periodicity hourly --instance blog --instance shop --jobs 4\n  \
        aps-controller run --periodicity daily --json   # JSON lines, the last one the summary")]
    Run(run::RunArgs),
    /// Apply retention (panel.toml [retention]) to the backup store and the remote, and to the
    /// repository store's snapshots (then prune its data) when panel.toml chooses it.
    #[command(after_help = "EXAMPLES:\n  \
        aps-controller prune --dry-run\n  \
        aps-controller prune --json")]
    Prune(prune::PruneArgs),
    /// Check a backup end to end (format, manifest, every part's hash), or the repository
    /// store (--repository); exit 17 when damaged.
    #[command(after_help = "EXAMPLES:\n  \
        aps-controller verify --instance blog\n  \
        aps-controller verify --repository\n  \
        aps-controller verify --repository --read-sample daily/week --json\n  \
        aps-controller verify --repository --read-all\n  \
        aps-controller verify /srv/backups/blog.aps.tar.zst.age --identity key.txt --json")]
    Verify(verify::VerifyArgs),
    /// List an instance's backups, newest first: periodicity, time, size, status, full path
    /// (with the repository store: its snapshots, with id, time, periodicity and package).
    #[command(after_help = "EXAMPLES:\n  \
        aps-controller backups blog\n  \
        aps-controller backups blog --remote --json")]
    Backups(backups::BackupsArgs),
    /// Restore the newest good backup of NAME into the staging instance and check it.
    #[command(after_help = "EXAMPLES:\n  \
        aps-controller drill blog --staging blog-staging\n  \
        aps-controller drill blog --staging blog-staging --remote --identity key.txt --json")]
    Drill(drill::DrillArgs),
    /// The repository store (panel.toml [store] kind = "repository"): init, backup, snapshots,
    /// restore into a staging folder, check.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Serve the operations over HTTP for control panels in other languages (loopback only,
    /// bearer token; docs/http.md).
    #[command(after_help = "EXAMPLES:\n  \
        openssl rand -hex 32 > /etc/aps-controller/token && chmod 600 /etc/aps-controller/token\n  \
        aps-controller serve --token-file /etc/aps-controller/token --listen 127.0.0.1:8470")]
    Serve(serve::ServeArgs),
    /// Encryption keys for backups (age).
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// The state folder, the store and the effective configuration (show); every problem of
    /// controller.toml, panel.toml and the registry (check).
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// The history of operations (all, or of instance NAME): what ran, when, how it ended,
    /// how long it took, what was rolled back.
    #[command(after_help = "EXAMPLES:\n  \
        # Every operation of instance blog in the last day:\n  \
        aps-controller log blog --since 24h\n\n  \
        # All operations since a given time, for a program:\n  \
        aps-controller log --since 2026-12-01T00:00:00Z --json")]
    Log(log::LogArgs),
    /// Per instance and periodicity: the last good backup (time, age, size, duration) and the
    /// last failure (time, kind); with --max-age, exit 27 when an instance has no good backup
    /// younger than that (for cron mail or a monitoring check: docs/monitoring.md).
    Status(status::StatusArgs),
    /// Print the shell completion script of aps-controller for bash, zsh, fish, elvish or
    /// powershell.
    #[command(after_help = "EXAMPLES:\n  \
        # bash, for every user (or `source <(aps-controller completions bash)` in ~/.bashrc):\n  \
        aps-controller completions bash > /etc/bash_completion.d/aps-controller\n\n  \
        aps-controller completions zsh > ~/.zfunc/_aps-controller\n  \
        aps-controller completions fish > ~/.config/fish/completions/aps-controller.fish")]
    Completions(generate::CompletionsArgs),
    /// Manual pages (roff) generated from these definitions: the main page on stdout, or one
    /// page per command into a folder.
    #[command(after_help = "EXAMPLES:\n  \
        aps-controller man | man -l -\n  \
        aps-controller man --out /usr/local/share/man/man1 && mandb")]
    Man(generate::ManArgs),
}

fn main() -> ExitCode {
    common::command_started();
    let state = match aps_controller::registry::StateDir::resolve_explained(None) {
        Ok((dir, source)) => format!(
            "State folder (without --state-dir): {} ({}).",
            dir.root(),
            source.describe()
        ),
        Err(e) => format!("State folder: {e}."),
    };
    let parsed = Cli::command()
        .after_help(format!("{AFTER_HELP}\n{state}"))
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => return parse_error(e),
    };
    // Commands that run operations stop them on SIGINT/SIGTERM/SIGHUP and roll back
    // (`serve` installs its own, which also stops taking requests).
    if matches!(
        cli.command,
        Command::Backup(_)
            | Command::Restore(_)
            | Command::Migrate(_)
            | Command::Run(_)
            | Command::Drill(_)
            | Command::Instance(instance::InstanceCommand::Install(_))
            | Command::Instance(instance::InstanceCommand::Configure(_))
            | Command::Instance(instance::InstanceCommand::Enable(_))
            | Command::Instance(instance::InstanceCommand::Disable(_))
            | Command::Instance(instance::InstanceCommand::Remove(_))
            | Command::Store(store::StoreCommand::Backup { .. })
            | Command::Instance(instance::InstanceCommand::Upgrade(_))
            | Command::Conformance(_)
    ) {
        signals::install(|| {});
    }
    // Every controller error formatted by a command names its overrides as the CLI's flags
    // (`serve`'s threads name them as JSON fields).
    aps_panel::service::worded(&common::Flags, || dispatch(cli.command))
}

fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Package(c) => package::run(c),
        Command::Conformance(a) => conformance::run(a),
        Command::Instance(c) => instance::run(c),
        Command::Backup(c) => backup::run(c),
        Command::Restore(a) => restore::run(a),
        Command::Migrate(a) => migrate::run(a),
        Command::Run(a) => run::run(a),
        Command::Prune(a) => prune::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Backups(a) => backups::run(a),
        Command::Drill(a) => drill::run(a),
        Command::Store(c) => store::run(c),
        Command::Serve(a) => serve::run(a),
        Command::Key(c) => key::run(c),
        Command::Log(a) => log::run(a),
        Command::Status(a) => status::run(a),
        Command::Completions(a) => generate::completions(a),
        Command::Man(a) => generate::man(a),
        Command::Config(c) => config::run(c),
    }
}

/// Bad arguments: with `--json` among them, the usage envelope on stdout (a program asked for
/// JSON); else clap's own message. Help and version are printed as they are.
fn parse_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind as K;
    let wants_json = std::env::args_os().any(|a| a == "--json");
    if matches!(e.kind(), K::DisplayHelp | K::DisplayVersion) || !wants_json {
        e.exit();
    }
    let rendered = e.render().to_string();
    // clap's usage lines are for a person at a terminal; the envelope keeps the finding.
    let message = rendered
        .split("Usage:")
        .next()
        .unwrap_or_default()
        .trim()
        .trim_start_matches("error: ")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
        + " (`--help` lists the arguments)";
    common::Out::new(true).failure(&common::Failure::usage(message))
}
