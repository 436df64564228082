//! `aps-controller instance …`: register, list, show and remove instances.
//!
//! Exit codes: 0 ok, 1 invalid input (validation, duplicate name), 2 usage or I/O problem,
//! 4 no such instance.

use std::process::ExitCode;

use aps_controller::controller::{Controller, ControllerConfig};
use aps_controller::registry::{
    self, FileStore, InstanceStore, RegisterError, StateDir, StoreError, view,
};
use camino::Utf8PathBuf;
use serde_json::{Value, json};

/// Options every instance subcommand takes.
#[derive(clap::Args, Debug)]
pub struct StateArgs {
    /// State folder [default: $XDG_STATE_HOME/aps-controller or ~/.local/state/aps-controller].
    #[arg(
        long,
        value_name = "DIR",
        env = "APS_CONTROLLER_STATE_DIR",
        global = true
    )]
    pub state_dir: Option<Utf8PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum InstanceCommand {
    /// Register an instance described by an INSTANCE.toml (validated against its package).
    Register {
        /// The INSTANCE.toml file.
        #[arg(long, value_name = "INSTANCE.toml")]
        file: Utf8PathBuf,
        /// Overwrite an instance of the same name.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List registered instances.
    List {
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Show one instance (passwords are never printed).
    Show {
        name: String,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Remove an instance's record and secrets. Its web folders and databases are kept.
    Remove {
        name: String,
        #[command(flatten)]
        state: StateArgs,
    },
}

const EXIT_INVALID: u8 = 1;
const EXIT_IO: u8 = 2;
const EXIT_NOT_FOUND: u8 = 4;

pub fn run(c: InstanceCommand) -> ExitCode {
    match run_inner(c) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("aps-controller: {message}");
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, String);

fn store_failure(e: StoreError) -> Failure {
    let code = match e {
        StoreError::NotFound { .. } => EXIT_NOT_FOUND,
        StoreError::AlreadyExists { .. } | StoreError::InvalidName { .. } => EXIT_INVALID,
        StoreError::Io { .. } | StoreError::Corrupt { .. } => EXIT_IO,
    };
    (code, e.to_string())
}

fn open(state: StateArgs) -> Result<(StateDir, FileStore), Failure> {
    let dir = StateDir::resolve(state.state_dir).map_err(|e| (EXIT_IO, e.to_string()))?;
    recover(&dir);
    Ok((dir.clone(), FileStore::new(dir)))
}

/// Every command first rolls back what a killed controller left unfinished (docs/scripts.md):
/// opening the controller does that. Listing or showing instances must still work when it
/// cannot (a broken controller.toml), so a failure is a warning here; the operations report
/// it as their error.
fn recover(dir: &StateDir) {
    if !dir.root().exists() {
        return; // nothing was ever done here, so nothing to roll back
    }
    let opened = ControllerConfig::load(dir.clone())
        .map_err(|e| e.to_string())
        .and_then(|config| Controller::open(config).map_err(|e| e.to_string()));
    match opened {
        Ok(controller) => crate::common::report_recovered(controller.recovered()),
        Err(e) => eprintln!("warning: could not roll back interrupted operations: {e}"),
    }
}

fn run_inner(c: InstanceCommand) -> Result<(), Failure> {
    match c {
        InstanceCommand::Register {
            file,
            replace,
            state,
        } => {
            let (dir, store) = open(state)?;
            let inst = registry::register(&store, &dir, &file, replace).map_err(|e| match e {
                RegisterError::Store(s) => store_failure(s),
                RegisterError::Parse(registry::ParseError::Read { .. }) => (EXIT_IO, e.to_string()),
                RegisterError::Parse(_) | RegisterError::Invalid(_) => {
                    (EXIT_INVALID, e.to_string())
                }
            })?;
            println!("registered instance {}", inst.name);
            Ok(())
        }
        InstanceCommand::List { json, state } => {
            let (_, store) = open(state)?;
            let all = store.list().map_err(store_failure)?;
            if json {
                let items: Vec<Value> = all.iter().map(view::summary_json).collect();
                println!("{}", json!({ "instances": items }));
            } else {
                for i in &all {
                    println!("{}\t{}\t{}", i.name, i.base_url, i.package);
                }
            }
            Ok(())
        }
        InstanceCommand::Show { name, json, state } => {
            let (_, store) = open(state)?;
            let inst = store.get(&name).map_err(store_failure)?;
            if json {
                println!("{}", view::masked_json(&inst));
            } else {
                print!("{}", view::masked_toml(&inst));
            }
            Ok(())
        }
        InstanceCommand::Remove { name, state } => {
            let (_, store) = open(state)?;
            let inst = store.remove(&name).map_err(store_failure)?;
            println!(
                "removed instance {} (web folders and databases kept)",
                inst.name
            );
            Ok(())
        }
    }
}
