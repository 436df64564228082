//! The operations of the standard through the real `aps-controller` binary: backup (by the
//! package's script or by the controller), restore, migrate, a restore of another instance's
//! backup, and interruption at every step. One test binary for the subject (cargo's
//! `tests/testsuite` shape).

mod backup;
mod backup_resources;
mod interrupt;
mod migrate;
mod other_instance_restore;
mod restore;
mod restore_aside;
