//! The lifecycle of an instance through the real `aps-controller` binary: install (and, as
//! they come, configure, enable/disable, upgrade, remove), each failure undone whole, and a
//! `kill -9` in each phase undone by the next command. One test binary for the subject.

mod configure;
mod enable;
mod install;
mod install_databases;
mod install_fixtures;
mod install_hostile;
mod install_http;
mod install_kill;
mod new_instance;
mod remove;
mod upgrade;
