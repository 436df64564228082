//! Hostile input through the real `aps-controller` binary, run as root against the real tenant
//! accounts: crafted archives and dumps, registrations, symlinks, web folders, long paths and
//! terminal escapes (issue 19's attacks). One test binary for the subject (cargo's
//! `tests/testsuite` shape); the fuzz targets keep their own binary (tests/fuzz.rs), whose
//! allocator bounds every allocation.

mod archives;
mod dumps;
mod long_paths;
mod registration;
mod symlinks;
mod tenant_accounts;
mod terminal_escapes;
mod walk;
