//! `aps-controller instance …`: register, list, show and remove instances; install,
//! configure, enable and disable them (each in its own file).
//!
//! Exit codes (README): 0 ok, 2 usage (invalid INSTANCE.toml, duplicate or bad name),
//! 4 no such instance, 1 the registry itself failed.

use std::process::ExitCode;

use aps_controller::ErrorKind;
use aps_controller::controller::{Controller, ControllerConfig};
use aps_controller::registry::{self, FileStore, InstanceStore, StateDir, view};
use camino::Utf8PathBuf;
use serde_json::{Value, json};

use crate::common::{Failure, Out, StateArgs, check_instance_name, outln};
use crate::failures::{register_failure, store_failure};

#[derive(clap::Subcommand)]
pub enum InstanceCommand {
    /// Install a new instance from a package: requirements and settings checked, the files
    /// unpacked into the web root as the instance's account, the databases provided,
    /// `configure install` and the verification-script run, the instance recorded last.
    /// Any failure undoes everything it made (docs/lifecycle.md, "Install").
    #[command(after_help = crate::install::EXAMPLES)]
    Install(crate::install::InstallArgs),
    /// Register an instance described by an INSTANCE.toml (validated against its package,
    /// its web folders and databases not another instance's, each database's login tried;
    /// every problem is reported at once and nothing is stored).
    #[command(
        after_help = "EXAMPLES:\n  aps-controller instance register --file examples/demo/INSTANCE.toml\n  aps-controller instance register --file blog.toml --replace --json\n  aps-controller instance register --file blog.toml --no-connect   # its database is made later"
    )]
    Register {
        /// The INSTANCE.toml file (docs/instance-file.md).
        #[arg(long, value_name = "INSTANCE.toml")]
        file: Utf8PathBuf,
        /// Overwrite an instance of the same name.
        #[arg(long)]
        replace: bool,
        /// Do not connect to the databases to try their logins (for a database that does not
        /// exist yet); `aps-controller instance check NAME` tries them later.
        #[arg(long)]
        no_connect: bool,
        /// Print one JSON object (docs/json.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Check a registered instance again as registration does: its account, its web folders
    /// (there, not a system folder, owned by its account, no other instance's), its databases
    /// (no other instance's, the login works). Exits non-zero on any problem.
    #[command(
        after_help = "EXAMPLES:\n  aps-controller instance check blog\n  aps-controller instance check blog --json"
    )]
    Check {
        /// The registered instance.
        name: String,
        /// Print one JSON object (docs/json.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List registered instances.
    #[command(
        after_help = "EXAMPLES:\n  aps-controller instance list\n  aps-controller instance list --json"
    )]
    List {
        /// Print one JSON object (docs/json.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Show one instance (passwords are never printed).
    #[command(
        after_help = "EXAMPLES:\n  aps-controller instance show blog\n  aps-controller instance show blog --json"
    )]
    Show {
        /// The registered instance.
        name: String,
        /// Print one JSON object (docs/json.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Change an instance's settings: the changes checked as at install (an
    /// installation-only setting cannot change), `configure configure` run as the instance's
    /// account, the new settings recorded only once it succeeded (docs/lifecycle.md,
    /// "Configure").
    #[command(after_help = crate::configure::EXAMPLES)]
    Configure(crate::configure::ConfigureArgs),
    /// Switch an instance back on with its package's `configure enable` (only packages that
    /// declare status-control); recorded once it succeeded.
    #[command(after_help = crate::enable::ENABLE_EXAMPLES)]
    Enable(crate::enable::EnableArgs),
    /// Switch an instance off with its package's `configure disable` (only packages that
    /// declare status-control); recorded once it succeeded, shown by `instance list`. A
    /// disabled instance is still backed up.
    #[command(after_help = crate::enable::DISABLE_EXAMPLES)]
    Disable(crate::enable::EnableArgs),
    /// Upgrade an instance to a newer version of its package: the rule checked, a safety
    /// backup taken, the new files swapped in (writable folders kept), `configure upgrade`
    /// run, the record updated; any failure puts the instance back whole (docs/lifecycle.md,
    /// "Upgrade").
    #[command(after_help = crate::upgrade::EXAMPLES)]
    Upgrade(crate::upgrade::UpgradeArgs),
    /// Remove an instance: a final backup into the store, `configure remove`, then the files
    /// and databases its install made and its record. With --keep-data only the record and
    /// secrets (web folders, databases and backups kept, no script).
    #[command(after_help = crate::remove::EXAMPLES)]
    Remove(crate::remove::RemoveArgs),
}

pub fn run(c: InstanceCommand) -> ExitCode {
    let c = match c {
        InstanceCommand::Install(args) => return crate::install::run(args),
        InstanceCommand::Configure(args) => return crate::configure::run(args),
        InstanceCommand::Enable(args) => return crate::enable::run(args, true),
        InstanceCommand::Disable(args) => return crate::enable::run(args, false),
        InstanceCommand::Upgrade(args) => return crate::upgrade::run(args),
        InstanceCommand::Remove(args) => return crate::remove::run(args),
        other => other,
    };
    let out = Out::new(match &c {
        InstanceCommand::Install(args) => args.json,
        InstanceCommand::Configure(args) => args.json,
        InstanceCommand::Enable(args) | InstanceCommand::Disable(args) => args.json,
        InstanceCommand::Upgrade(args) => args.json,
        InstanceCommand::Remove(args) => args.json,
        InstanceCommand::Register { json, .. }
        | InstanceCommand::Check { json, .. }
        | InstanceCommand::List { json, .. }
        | InstanceCommand::Show { json, .. } => *json,
    });
    out.finish(run_inner(out, c))
}

fn open(state: StateArgs) -> Result<(StateDir, FileStore), Failure> {
    open_explained(state).map(|(dir, store, _)| (dir, store))
}

fn open_explained(
    state: StateArgs,
) -> Result<(StateDir, FileStore, aps_controller::registry::StateSource), Failure> {
    let (dir, source) =
        StateDir::resolve_explained(state.state_dir).map_err(|e| Failure::usage(e.to_string()))?;
    recover(&dir);
    Ok((dir.clone(), FileStore::new(dir), source))
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
        Err(e) => crate::common::errln!("warning: could not roll back interrupted operations: {e}"),
    }
}

fn run_inner(out: Out, c: InstanceCommand) -> Result<ExitCode, Failure> {
    match c {
        InstanceCommand::Install(args) => Ok(crate::install::run(args)),
        InstanceCommand::Configure(args) => Ok(crate::configure::run(args)),
        InstanceCommand::Enable(args) => Ok(crate::enable::run(args, true)),
        InstanceCommand::Disable(args) => Ok(crate::enable::run(args, false)),
        InstanceCommand::Upgrade(args) => Ok(crate::upgrade::run(args)),
        InstanceCommand::Remove(args) => Ok(crate::remove::run(args)),
        InstanceCommand::Register {
            file,
            replace,
            no_connect,
            json: _,
            state,
        } => {
            let (dir, store, source) = open_explained(state)?;
            // The tools run as an operation would run them, which controller.toml decides.
            let config = if no_connect {
                None
            } else {
                Some(
                    ControllerConfig::load(dir.clone())
                        .map_err(|e| Failure::usage(e.to_string()))?,
                )
            };
            let options = registry::RegisterOptions {
                replace,
                connect: config.as_ref(),
            };
            let inst =
                registry::register_with(&store, &dir, &file, &options).map_err(register_failure)?;
            // Where it went: the run of a timer with another state folder would not see it.
            Ok(out.success(
                &json!({
                    "instance": view::summary_json(&inst),
                    "state_dir": dir.root(),
                    "state_source": source.as_str(),
                }),
                || {
                    format!(
                        "registered instance {} in the {}",
                        inst.name,
                        crate::config::describe_state(&dir, source)
                    )
                },
            ))
        }
        InstanceCommand::Check {
            name,
            json: _,
            state,
        } => {
            check_instance_name("NAME", &name)?;
            check(out, &name, &state)
        }
        InstanceCommand::List { json: _, state } => {
            let (_, store) = open(state)?;
            let all = store.list().map_err(store_failure)?;
            let items: Vec<Value> = all.iter().map(view::summary_json).collect();
            Ok(out.success(&json!({ "instances": items }), || {
                all.iter()
                    .map(|i| {
                        use crate::terminal::escape;
                        // More columns only for a staging or a disabled instance.
                        format!(
                            "{}\t{}\t{}{}{}",
                            escape(&i.name),
                            escape(&i.base_url.to_string()),
                            escape(i.package.as_str()),
                            i.role
                                .map(|r| format!("\t{}", r.as_str()))
                                .unwrap_or_default(),
                            match i.status.is_enabled() {
                                true => String::new(),
                                false => format!("\t{}", i.status.as_str()),
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }))
        }
        InstanceCommand::Show {
            name,
            json: _,
            state,
        } => {
            check_instance_name("NAME", &name)?;
            let (_, store) = open(state)?;
            let inst = store.get(&name).map_err(store_failure)?;
            let text = view::masked_toml(&inst);
            Ok(out.success(&view::masked_json(&inst), || text.trim_end().to_owned()))
        }
    }
}

/// `instance check NAME`: every check on a line (`ok` or `problem`), then a summary; with
/// `--json` the envelope with `checks`. A problem fails with the kind an operation would meet
/// (of the first problem: account and folders `account-refused`, a login `resource-failed`,
/// a folder or database shared with another instance `usage`) and its exit code.
fn check(out: Out, name: &str, state: &StateArgs) -> Result<ExitCode, Failure> {
    let controller = crate::common::open_controller(state)?;
    let store = controller.store();
    let instance = store.get(name).map_err(store_failure)?;
    let others = store.list().map_err(store_failure)?;
    let checks = registry::check::check_instance(
        controller.config(),
        &instance,
        &others,
        registry::check::CONNECT_TIMEOUT,
    );
    let problems: Vec<&registry::check::Check> = checks.iter().filter(|c| !c.ok).collect();
    if !out.json {
        for c in &checks {
            outln!(
                "{:<8} {}: {}",
                if c.ok { "ok" } else { "problem" },
                c.check,
                c.message
            );
        }
    }
    let Some(first) = problems.first() else {
        return Ok(
            out.success(&json!({"instance": name, "checks": checks}), || {
                format!("instance {name}: all {} checks passed", checks.len())
            }),
        );
    };
    let list: Vec<String> = problems
        .iter()
        .map(|c| format!("{}: {}", c.check, c.message))
        .collect();
    let failure = Failure::new(
        first.kind.unwrap_or(ErrorKind::Usage),
        format!(
            "instance {name}: {} problem(s) in {} check(s): {}",
            problems.len(),
            checks.len(),
            list.join("; ")
        ),
    )
    .at("check")
    .with("problems", list);
    if out.json {
        let mut envelope = failure.envelope();
        envelope["instance"] = name.into();
        envelope["checks"] = serde_json::to_value(&checks).expect("checks serialize");
        outln!("{envelope}");
        return Ok(ExitCode::from(failure.exit));
    }
    Err(failure)
}
