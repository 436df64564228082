//! `aps-controller store …`: the repository store (panel.toml `[store] kind = "repository"`,
//! docs/policies.md). Thin glue: arguments → aps_panel's repository store → print, in the
//! common JSON envelope with `--json`.

use std::process::ExitCode;

use aps_controller::error::human_bytes;
use aps_panel::config::RepositorySettings;
use aps_panel::store::repository::{RepositoryError, RepositoryStore};
use aps_panel::{Panel, Periodicity};
use camino::Utf8PathBuf;
use serde_json::json;

use crate::common::{Failure, Out, StateArgs, check_instance_name, open_controller, open_panel};

#[derive(clap::Subcommand)]
pub enum StoreCommand {
    /// Create the repository of panel.toml [store] (kind = "repository") with a new key file
    /// and password file (mode 0600). Refuses when either file or the repository exists.
    #[command(after_help = "EXAMPLES:\n  \
        # panel.toml: [store] kind = \"repository\"\n  \
        aps-controller store init\n  \
        aps-controller store init --json")]
    Init {
        /// Print one JSON object (docs/json.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Back NAME up as one snapshot, as `backup NAME` does with the repository store, with the
    /// periodicity given.
    #[command(after_help = "EXAMPLES:\n  \
        aps-controller store backup blog\n  \
        aps-controller store backup blog --periodicity daily --json")]
    Backup {
        /// The registered instance to back up.
        name: String,
        /// The periodicity recorded in the snapshot's tags (default manual).
        #[arg(long, default_value = "manual")]
        periodicity: Periodicity,
        /// Print one JSON object (docs/json.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List the snapshots of NAME (or of every instance), older to newer.
    #[command(after_help = "EXAMPLES:\n  \
        aps-controller store snapshots\n  \
        aps-controller store snapshots blog --json")]
    Snapshots {
        /// Only this instance's snapshots.
        name: Option<String>,
        /// Print one JSON object (docs/json.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Restore a snapshot of NAME into a new staging folder DIR (web/ and databases/ in it);
    /// the live instance is not touched.
    #[command(after_help = "EXAMPLES:\n  \
        aps-controller store restore blog --latest --to /srv/staging/blog\n  \
        aps-controller store restore blog --snapshot 3f0c9a1e --to /srv/staging/blog --json")]
    Restore {
        /// The instance whose snapshot is restored.
        name: String,
        /// The newest snapshot of NAME.
        #[arg(
            long,
            conflicts_with = "snapshot",
            required_unless_present = "snapshot"
        )]
        latest: bool,
        /// A snapshot id, or a unique prefix of one.
        #[arg(long, value_name = "ID")]
        snapshot: Option<String>,
        /// The staging folder: created, or empty.
        #[arg(long, value_name = "DIR")]
        to: Utf8PathBuf,
        /// Print one JSON object (docs/json.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Check the repository's structure; with --read-data also read and verify every pack.
    /// Exit 17 when anything is damaged (as `verify --repository`).
    #[command(after_help = "EXAMPLES:\n  \
        aps-controller store check\n  \
        aps-controller store check --read-data --json")]
    Check {
        /// Also read every pack and check its contents (reads the whole repository).
        #[arg(long)]
        read_data: bool,
        /// Print one JSON object (docs/json.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
}

fn repository_failure(step: &'static str, e: RepositoryError) -> Failure {
    Failure::from_problem(&aps_panel::store::repository::front::problem(
        &e,
        Some(step),
    ))
}

pub fn run(c: StoreCommand) -> ExitCode {
    let out = Out::new(match &c {
        StoreCommand::Init { json, .. }
        | StoreCommand::Backup { json, .. }
        | StoreCommand::Snapshots { json, .. }
        | StoreCommand::Restore { json, .. }
        | StoreCommand::Check { json, .. } => *json,
    });
    out.finish(dispatch(out, c))
}

fn settings(state: &StateArgs) -> Result<(Panel, RepositorySettings), Failure> {
    let panel = open_panel(state)?;
    let settings = panel.config.repository(&panel.state_dir).ok_or_else(|| {
        Failure::usage(format!(
            "{}/panel.toml does not choose the repository store: add [store] kind = \"repository\"",
            panel.state_dir
        ))
    })?;
    Ok((panel, settings))
}

fn open(settings: &RepositorySettings) -> Result<RepositoryStore, Failure> {
    RepositoryStore::open(settings).map_err(|e| repository_failure("open-repository", e))
}

fn dispatch(out: Out, c: StoreCommand) -> Result<ExitCode, Failure> {
    match c {
        StoreCommand::Init { state, .. } => {
            let (_, settings) = settings(&state)?;
            let r = RepositoryStore::init(&settings).map_err(|e| repository_failure("init", e))?;
            Ok(out.success(&r, || {
                format!(
                    "repository {} created; key file {}, password file {} (keep copies of both \
                     off this machine)",
                    r.repository, r.key_file, r.password_file
                )
            }))
        }
        StoreCommand::Backup {
            name,
            periodicity,
            state,
            ..
        } => {
            check_instance_name("NAME", &name)?;
            let (panel, settings) = settings(&state)?;
            let controller = open_controller(&state)?;
            let store = open(&settings)?;
            let snap = aps_panel::store::repository::front::backup(
                &panel.cx(),
                &controller,
                &store,
                &name,
                periodicity,
            )
            .map_err(|p| Failure::from_problem(&p))?;
            Ok(out.success(&json!({"snapshot": snap}), || {
                format!(
                    "snapshot {} of {name}: {} files, {} read, {} added",
                    &snap.id[..8],
                    snap.files,
                    human_bytes(snap.bytes_read),
                    human_bytes(snap.bytes_added)
                )
            }))
        }
        StoreCommand::Snapshots { name, state, .. } => {
            if let Some(name) = &name {
                check_instance_name("NAME", name)?;
            }
            let (_, settings) = settings(&state)?;
            let store = open(&settings)?;
            let list = store
                .snapshots(name.as_deref())
                .map_err(|e| repository_failure("list", e))?;
            Ok(out.success(&json!({"snapshots": list}), || {
                list.iter()
                    .map(|s| {
                        format!(
                            "{}  {}  {}  {}  {} files  +{}",
                            &s.id[..8],
                            s.instance,
                            s.periodicity.map_or("-".to_owned(), |p| p.to_string()),
                            s.time,
                            s.files,
                            human_bytes(s.bytes_added)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }))
        }
        StoreCommand::Restore {
            name,
            latest,
            snapshot,
            to,
            state,
            ..
        } => {
            check_instance_name("NAME", &name)?;
            let (_, settings) = settings(&state)?;
            let store = open(&settings)?;
            let id = match (latest, snapshot) {
                (_, Some(id)) => id,
                (true, None) => {
                    store
                        .snapshot(&name, None)
                        .map_err(|e| repository_failure("find-snapshot", e))?
                        .id
                }
                (false, None) => unreachable!("clap requires --latest or --snapshot"),
            };
            let staged = store
                .restore_to_staging(&name, &id, &to)
                .map_err(|e| repository_failure("restore", e))?;
            Ok(out.success(&staged, || {
                format!(
                    "snapshot {} of {name} restored into {} (staging folder; the instance is \
                     unchanged)",
                    &staged.snapshot[..8],
                    staged.target
                )
            }))
        }
        StoreCommand::Check {
            read_data, state, ..
        } => {
            let (_, settings) = settings(&state)?;
            let store = open(&settings)?;
            use aps_panel::store::ReadData;
            let read = if read_data {
                ReadData::All
            } else {
                ReadData::None
            };
            let report = store
                .verify(&read)
                .map_err(|e| repository_failure("check", e))?;
            // Damage is `invalid-backup` (17), as for `verify --repository`.
            if !report.is_ok() {
                return Err(Failure::new(
                    aps_controller::ErrorKind::InvalidBackup,
                    format!(
                        "repository {} is damaged: {}",
                        report.repository,
                        report.errors.join("; ")
                    ),
                )
                .at("check")
                .with("errors", report.errors));
            }
            Ok(out.success(
                &json!({"repository": store.describe(), "read_data": read_data}),
                || format!("repository {} is consistent", store.describe()),
            ))
        }
    }
}
