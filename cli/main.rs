//! The `aps-controller` command. Thin glue: parse arguments, call the libraries, print.

mod backup;
mod common;
mod instance;
mod log;
mod package;
mod policy;
mod progress;
mod serve;
mod signals;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Register, list, show and remove instances.
    #[command(subcommand)]
    Instance(instance::InstanceCommand),
    #[command(flatten)]
    Operation(backup::OperationCommand),
    #[command(flatten)]
    Policy(policy::PolicyCommand),
    /// Serve the operations over HTTP for control panels in other languages (loopback only,
    /// bearer token; docs/http.md).
    Serve(serve::ServeArgs),
    /// The history of operations (all, or of instance NAME): what ran, when, how it ended,
    /// how long it took, what was rolled back.
    Log(log::LogArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that run operations stop them on SIGINT/SIGTERM/SIGHUP and roll back
    // (`serve` installs its own, which also stops taking requests).
    if matches!(
        cli.command,
        Command::Operation(_)
            | Command::Policy(
                policy::PolicyCommand::Run { .. } | policy::PolicyCommand::Drill { .. }
            )
    ) {
        signals::install(|| {});
    }
    match cli.command {
        Command::Package(c) => package::run(c),
        Command::Instance(c) => instance::run(c),
        Command::Operation(c) => backup::run(c),
        Command::Policy(c) => policy::run(c),
        Command::Serve(a) => serve::run(a),
        Command::Log(a) => log::run(a),
    }
}
