//! `aps-controller run|prune|verify|backups|drill` (being written).
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Back up every instance for a periodicity (being written).
    Run,
}

pub fn run(_c: PolicyCommand) -> ExitCode {
    ExitCode::from(2)
}
