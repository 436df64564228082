//! The `aps-controller` command. Thin glue: parse arguments, call the libraries, print.

mod backup;
mod common;
mod instance;
mod package;
mod policy;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Package(c) => package::run(c),
        Command::Instance(c) => instance::run(c),
        Command::Operation(c) => backup::run(c),
        Command::Policy(c) => policy::run(c),
    }
}
