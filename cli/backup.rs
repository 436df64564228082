//! `aps-controller backup|restore|migrate` (being written).
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum OperationCommand {
    /// Back up an instance (being written).
    Backup { name: String },
}

pub fn run(_c: OperationCommand) -> ExitCode {
    ExitCode::from(2)
}
