//! The CLI's front door and its HTTP twin, through the real `aps-controller` binary: commands,
//! flags, the JSON envelope, documented examples, registration, the state folder and `serve`.
//! One test binary for the subject (cargo's `tests/testsuite` shape): linking one binary per
//! file cost more than compiling them.

mod comforts;
mod documented_commands;
mod first_hour;
mod http_adapter;
mod instance_cli;
mod json_envelope;
mod monitoring;
mod package_check;
mod policy_cli;
mod quick_start;
mod registration_checks;
mod staging_role;
mod state_folder;
