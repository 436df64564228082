//! `aps-controller instance …` (being written).
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum InstanceCommand {
    /// List instances (being written).
    List,
}

pub fn run(_c: InstanceCommand) -> ExitCode {
    ExitCode::from(2)
}
