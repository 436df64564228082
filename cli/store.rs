//! `aps-controller store …`: the repository store (panel.toml `[store] kind = "repository"`,
//! docs/policies.md). Thin glue: arguments → aps_panel's repository store → print, in the
//! common JSON envelope with `--json`.

use std::process::ExitCode;

use aps_controller::ErrorKind;
use aps_panel::config::RepositorySettings;
use aps_panel::store::repository::{BackupInput, RepositoryError, RepositoryStore};
use aps_panel::{Engine, Panel, Periodicity};
use camino::Utf8PathBuf;

use crate::common::StateArgs;

#[derive(clap::Subcommand)]
pub enum StoreCommand {
    /// Create the repository of panel.toml [store] (kind = "repository") with a new key file
    /// and password file (mode 0600). Refuses when either file or the repository exists.
    Init {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Back NAME up as one snapshot: its web folders and its databases, dumps streamed in.
    Backup {
        name: String,
        /// The periodicity recorded in the snapshot's tags (default manual).
        #[arg(long, default_value = "manual")]
        periodicity: Periodicity,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List the snapshots of NAME (or of every instance), older to newer.
    Snapshots {
        name: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Restore a snapshot of NAME into a new staging folder DIR (web/ and databases/ in it);
    /// the live instance is not touched.
    Restore {
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
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Check the repository's structure; with --read-data also read and verify every pack.
    Check {
        #[arg(long)]
        read_data: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
}

struct Failure {
    kind: ErrorKind,
    step: &'static str,
    message: String,
}

impl Failure {
    fn new(kind: ErrorKind, step: &'static str, message: impl ToString) -> Self {
        Failure {
            kind,
            step,
            message: message.to_string(),
        }
    }
}

fn repository_failure(step: &'static str, e: RepositoryError) -> Failure {
    let kind = match &e {
        RepositoryError::NoSnapshot { .. } => ErrorKind::InvalidBackup,
        RepositoryError::TargetNotEmpty { .. } => ErrorKind::DestinationRefused,
        RepositoryError::Exists { .. }
        | RepositoryError::NotInitialised { .. }
        | RepositoryError::KeyExists { .. }
        | RepositoryError::KeyFormat { .. } => ErrorKind::Usage,
        RepositoryError::Incomplete { .. } => ErrorKind::ResourceFailed,
        RepositoryError::Engine { .. } | RepositoryError::Io { .. } => ErrorKind::Internal,
    };
    Failure::new(kind, step, e)
}

pub fn run(c: StoreCommand) -> ExitCode {
    let json = match &c {
        StoreCommand::Init { json, .. }
        | StoreCommand::Backup { json, .. }
        | StoreCommand::Snapshots { json, .. }
        | StoreCommand::Restore { json, .. }
        | StoreCommand::Check { json, .. } => *json,
    };
    match dispatch(c) {
        Ok((report, human)) => {
            if json {
                let mut v = report;
                if let Some(o) = v.as_object_mut() {
                    o.insert("ok".into(), true.into());
                }
                println!("{v}");
            } else {
                println!("{human}");
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": {
                        "kind": f.kind.as_str(), "step": f.step, "message": f.message}})
                );
            } else {
                eprintln!(
                    "error [{}] at step {}: {}",
                    f.kind.as_str(),
                    f.step,
                    f.message
                );
            }
            ExitCode::from(f.kind.exit_code())
        }
    }
}

fn settings(state: StateArgs) -> Result<(Panel, RepositorySettings), Failure> {
    let usage = |e: &dyn ToString| Failure::new(ErrorKind::Usage, "config", e.to_string());
    let dir = aps_panel::engine::resolve_state_dir(state.state_dir).map_err(|e| usage(&e))?;
    let panel = Panel::open(&dir).map_err(|e| usage(&e))?;
    let settings = panel.config.repository(&panel.state_dir).ok_or_else(|| {
        usage(&format!(
            "{}/panel.toml does not choose the repository store: add [store] kind = \"repository\"",
            panel.state_dir
        ))
    })?;
    Ok((panel, settings))
}

fn open(settings: &RepositorySettings) -> Result<RepositoryStore, Failure> {
    RepositoryStore::open(settings).map_err(|e| repository_failure("open-repository", e))
}

type Printed = (serde_json::Value, String);

fn to_json(v: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(v).expect("reports serialise")
}

fn dispatch(c: StoreCommand) -> Result<Printed, Failure> {
    match c {
        StoreCommand::Init { state, .. } => {
            let (_, settings) = settings(state)?;
            let r = RepositoryStore::init(&settings).map_err(|e| repository_failure("init", e))?;
            let human = format!(
                "repository {} created; key file {}, password file {} (keep copies of both \
                 off this machine)",
                r.repository, r.key_file, r.password_file
            );
            Ok((to_json(&r), human))
        }
        StoreCommand::Backup {
            name,
            periodicity,
            state,
            ..
        } => {
            let (panel, settings) = settings(state)?;
            let store = open(&settings)?;
            let engine = Engine::open(&panel.state_dir)
                .map_err(|e| Failure::new(ErrorKind::Usage, "open-controller", e))?;
            let source = engine
                .repository_source(&name)
                .map_err(|e| Failure::new(ErrorKind::InstanceNotFound, "find-instance", e))?;
            let snap = store
                .backup(&BackupInput {
                    instance: &name,
                    periodicity,
                    package: source.package.clone(),
                    web_dirs: &source.instance.web_dirs,
                    databases: &source.instance.databases,
                })
                .map_err(|e| repository_failure("backup", e))?;
            let human = format!(
                "snapshot {} of {name}: {} files, {} bytes read, {} bytes added",
                &snap.id[..8],
                snap.files,
                snap.bytes_read,
                snap.bytes_added
            );
            Ok((serde_json::json!({"snapshot": snap}), human))
        }
        StoreCommand::Snapshots { name, state, .. } => {
            let (_, settings) = settings(state)?;
            let store = open(&settings)?;
            let list = store
                .snapshots(name.as_deref())
                .map_err(|e| repository_failure("list", e))?;
            let human = list
                .iter()
                .map(|s| {
                    format!(
                        "{}  {}  {}  {}  {} files  +{} bytes",
                        &s.id[..8],
                        s.instance,
                        s.periodicity.map_or("-".to_owned(), |p| p.to_string()),
                        s.time,
                        s.files,
                        s.bytes_added
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            Ok((serde_json::json!({"snapshots": list}), human))
        }
        StoreCommand::Restore {
            name,
            latest,
            snapshot,
            to,
            state,
            ..
        } => {
            let (_, settings) = settings(state)?;
            let store = open(&settings)?;
            let id = match (latest, snapshot) {
                (_, Some(id)) => id,
                (true, None) => {
                    store
                        .latest(&name)
                        .map_err(|e| repository_failure("find-snapshot", e))?
                        .ok_or_else(|| {
                            Failure::new(
                                ErrorKind::InvalidBackup,
                                "find-snapshot",
                                format!("the repository has no snapshot of {name}"),
                            )
                        })?
                        .id
                }
                (false, None) => unreachable!("clap requires --latest or --snapshot"),
            };
            let staged = store
                .restore_to_staging(&name, &id, &to)
                .map_err(|e| repository_failure("restore", e))?;
            let human = format!(
                "snapshot {} of {name} restored into {} (staging folder; the instance is \
                 unchanged)",
                &staged.snapshot[..8],
                staged.target
            );
            Ok((to_json(&staged), human))
        }
        StoreCommand::Check {
            read_data, state, ..
        } => {
            let (_, settings) = settings(state)?;
            let store = open(&settings)?;
            store
                .check(read_data)
                .map_err(|e| repository_failure("check", e))?;
            Ok((
                serde_json::json!({"repository": store.describe(), "read_data": read_data}),
                format!("repository {} is consistent", store.describe()),
            ))
        }
    }
}
