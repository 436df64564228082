//! `aps-controller package …` (being written).
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum PackageCommand {
    /// Lint a package (being written).
    Check { path: String },
}

pub fn run(_c: PackageCommand) -> ExitCode {
    ExitCode::from(2)
}
