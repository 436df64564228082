//! The backup stores through the real `aps-controller` binary: one store for `backup`,
//! `backups`, `verify`, `restore` and `drill`; the repository store, local and in S3, with its
//! retention, checks, crashes and scripts; policies of panel.toml kept. One test binary for the
//! subject (cargo's `tests/testsuite` shape).

mod one_store;
mod policies_kept;
mod repository_crash;
mod repository_drill;
mod repository_front_door;
mod repository_retention_cli;
mod repository_s3_cli;
mod repository_scripts;
mod repository_serve_migrate;
mod repository_store_cli;
mod repository_verify_cli;
