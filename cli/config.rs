//! `aps-controller config show|check`: where the state folder is and why, which store is in
//! use, and the effective controller.toml and panel.toml (each value from the file or a
//! default); `check` loads both files and every registry record and names each problem.
//!
//! Exit codes (README): 0 ok; 2 controller.toml or panel.toml is wrong (or the store it names
//! is missing); 1 the state folder or the registry cannot be read.

use std::process::ExitCode;

use aps_controller::ErrorKind;
use aps_controller::controller::ControllerConfig;
use aps_controller::registry::{FileStore, InstanceStore, StateDir, StateSource};
use aps_panel::config::PanelConfig;
use aps_panel::periodicity::Periodicity;
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{Value, json};

use crate::common::{Failure, Out, StateArgs};

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// The state folder (and where it came from), the store, and every controller.toml and
    /// panel.toml value in effect with its source (the file, or the default).
    #[command(after_help = "EXAMPLES:\n  \
        aps-controller config show\n  \
        aps-controller config show --json")]
    Show {
        /// Print one JSON object (docs/json.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Load controller.toml, panel.toml and every registered instance's record; name every
    /// problem and exit non-zero (2: a configuration file, 1: the registry).
    #[command(after_help = "EXAMPLES:\n  \
        aps-controller config check\n  \
        aps-controller config check --json")]
    Check {
        /// Print one JSON object (docs/json.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
}

pub fn run(c: ConfigCommand) -> ExitCode {
    let (json, state, check) = match c {
        ConfigCommand::Show { json, state } => (json, state, false),
        ConfigCommand::Check { json, state } => (json, state, true),
    };
    let out = Out::new(json);
    out.finish(if check {
        run_check(out, &state)
    } else {
        run_show(out, &state)
    })
}

/// The state folder and where it came from.
pub fn resolve(state: &StateArgs) -> Result<(StateDir, StateSource), Failure> {
    StateDir::resolve_explained(state.state_dir.clone()).map_err(|e| Failure::usage(e.to_string()))
}

/// `state folder /x (the default for root)`: said by `register`, `run` and `config show`.
pub fn describe_state(dir: &StateDir, source: StateSource) -> String {
    format!("state folder {} ({})", dir.root(), source.describe())
}

/// One effective value: `key = value`, from the file or the default.
struct Setting {
    key: String,
    value: String,
    from_file: bool,
}

/// The keys a TOML file sets, dotted (`limits.max-files`); nothing when it is absent.
fn keys_set(path: &Utf8Path) -> Result<Option<toml::Table>, Failure> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.parse::<toml::Table>().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Failure::new(
            ErrorKind::Internal,
            format!("cannot read {path}: {e}"),
        )),
    }
}

fn is_set(table: &Option<toml::Table>, dotted: &str) -> bool {
    let Some(table) = table else { return false };
    let mut parts = dotted.split('.');
    let mut value = parts.next().and_then(|first| table.get(first));
    for part in parts {
        value = value.and_then(|v| v.get(part));
    }
    value.is_some()
}

/// Leaves of `table[section]` (`limits.instances.blog.max-files = 2048`): what only a file
/// can say, shown as it says it.
fn leaves(table: &Option<toml::Table>, section: &str) -> Vec<Setting> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<Setting>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    walk(&format!("{prefix}.{k}"), v, out);
                }
            }
            other => out.push(Setting {
                key: prefix.to_owned(),
                value: other.to_string(),
                from_file: true,
            }),
        }
    }
    let mut out = Vec::new();
    let mut value = table.as_ref().and_then(|t| {
        let mut parts = section.split('.');
        let first = t.get(parts.next()?);
        parts.fold(first, |v, p| v.and_then(|v| v.get(p)))
    });
    if let Some(v) = value.take() {
        walk(section, v, &mut out);
    }
    out
}

fn controller_settings(config: &ControllerConfig, file: &Option<toml::Table>) -> Vec<Setting> {
    let state = config.state.root();
    let opt = |v: Option<u64>, none: &str| v.map_or(none.to_owned(), |v| v.to_string());
    let mut rows: Vec<(&str, String)> = vec![
        ("timeout-secs", config.default_timeout.as_secs().to_string()),
        ("kill-grace-secs", config.kill_grace.as_secs().to_string()),
        (
            "php-version",
            config
                .host
                .php_version
                .as_ref()
                .map_or("(not set)".to_owned(), |v| format!("{v:?}")),
        ),
        (
            "php-extensions",
            match config.php_extensions.as_slice() {
                [] => "(not set)".to_owned(),
                list => format!("{list:?}"),
            },
        ),
        (
            "backup-key-file",
            format!(
                "{:?}",
                config
                    .backup_key_file
                    .clone()
                    .unwrap_or_else(|| state.join(aps_controller::backup_key::KEY_FILE_NAME))
            ),
        ),
        ("allow-root-scripts", config.allow_root_scripts.to_string()),
        (
            "journal-log-max-bytes",
            config.journal_limits.log_max_bytes.to_string(),
        ),
        (
            "journal-log-keep",
            config.journal_limits.log_keep.to_string(),
        ),
        (
            "journal-closed-max-days",
            (config.journal_limits.closed_max_age.as_secs() / 86_400).to_string(),
        ),
    ];
    let l = &config.limits;
    for (key, value) in [
        ("limits.max-file-size-mb", l.max_file_size_mb),
        ("limits.open-files", l.open_files),
        ("limits.cpu-secs", l.cpu_secs),
        ("limits.max-instance-size", l.max_instance_size),
        ("limits.max-files", l.max_files),
    ] {
        rows.push((key, opt(value, "unlimited")));
    }
    let mut out: Vec<Setting> = rows
        .into_iter()
        .map(|(key, value)| Setting {
            from_file: is_set(file, key),
            key: key.to_owned(),
            value,
        })
        .collect();
    out.extend(leaves(file, "limits.instances"));
    for language in config.interpreters.languages() {
        let key = format!("interpreters.{language}");
        if let Some(c) = config.interpreters.command(language) {
            out.push(Setting {
                from_file: is_set(file, &key),
                value: format!(
                    "{:?}",
                    [&[c.program.clone()][..], &c.args].concat().join(" ")
                ),
                key,
            });
        }
    }
    out
}

/// Where backups go, in words.
fn store_words(config: &PanelConfig, state: &Utf8Path) -> String {
    match config.repository(state) {
        Some(r) => format!("repository store at {}", r.location.describe()),
        None => format!("archive store in {}", config.store_dir(state)),
    }
}

fn panel_settings(
    config: &PanelConfig,
    state: &Utf8Path,
    file: &Option<toml::Table>,
) -> Vec<Setting> {
    let mut rows: Vec<(String, String)> = vec![
        ("store".into(), store_words(config, state)),
        (
            "compression".into(),
            serde_json::to_value(config.compression)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        ),
        (
            "age-recipients".into(),
            if config.age_recipients.is_empty() {
                "(none: archives are not encrypted)".into()
            } else {
                format!("{:?}", config.age_recipients)
            },
        ),
        (
            "jobs".into(),
            config.jobs.unwrap_or(DEFAULT_JOBS).to_string(),
        ),
    ];
    let all = &config.retention.all;
    for p in Periodicity::COUNTED {
        let own = match p {
            Periodicity::Hourly => all.hourly,
            Periodicity::Daily => all.daily,
            Periodicity::Weekly => all.weekly,
            Periodicity::Monthly => all.monthly,
            Periodicity::Bimonthly => all.bimonthly,
            Periodicity::Shutdown => all.shutdown,
            Periodicity::Manual => all.manual,
            Periodicity::All | Periodicity::Final => None,
        };
        let keep = own
            .or(all.keep)
            .unwrap_or(aps_panel::retention::DEFAULT_KEEP);
        rows.push((format!("retention.{p}"), keep.to_string()));
    }
    rows.push((
        "retention.keep-within".into(),
        all.keep_within
            .as_ref()
            .map_or("(not set)".to_owned(), |w| format!("{w:?}")),
    ));
    rows.push((
        "remote".into(),
        config
            .remote
            .as_ref()
            .map_or("(none: no off-site copy)".to_owned(), |r| {
                r.bucket.describe()
            }),
    ));
    let mut out: Vec<Setting> = rows
        .into_iter()
        .map(|(key, value)| {
            // A count set by `keep` alone counts as set in the file too.
            let from_file = is_set(file, &key)
                || (key.starts_with("retention.")
                    && key != "retention.keep-within"
                    && is_set(file, "retention.keep"));
            Setting {
                key,
                value,
                from_file,
            }
        })
        .collect();
    out.extend(leaves(file, "retention.instances"));
    out
}

/// `run`'s parallelism when neither `--jobs` nor panel.toml `jobs` says it.
pub const DEFAULT_JOBS: usize = 2;

fn settings_json(settings: &[Setting]) -> Value {
    Value::Array(
        settings
            .iter()
            .map(|s| {
                json!({
                    "key": s.key,
                    "value": s.value,
                    "source": if s.from_file { "file" } else { "default" },
                })
            })
            .collect(),
    )
}

fn settings_text(settings: &[Setting]) -> String {
    let width = settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
    settings
        .iter()
        .map(|s| {
            format!(
                "\n  {:<width$}  {:<9}  {}",
                s.key,
                if s.from_file { "file" } else { "default" },
                s.value
            )
        })
        .collect()
}

fn file_line(path: &Utf8Path) -> String {
    if path.exists() {
        path.to_string()
    } else {
        format!("{path} (absent: every value is the default)")
    }
}

fn run_show(out: Out, state: &StateArgs) -> Result<ExitCode, Failure> {
    let (dir, source) = resolve(state)?;
    let root = dir.root().to_owned();
    let controller_path = root.join(ControllerConfig::FILE_NAME);
    let panel_path = root.join(aps_panel::config::FILE_NAME);
    let controller_file = keys_set(&controller_path)?;
    let panel_file = keys_set(&panel_path)?;
    // A file that does not load is `config check`'s to explain, with every problem.
    let check_hint = |e: String| {
        Failure::usage(e).with(
            "hint",
            "`aps-controller config check` lists every problem of the configuration",
        )
    };
    let controller = ControllerConfig::load(dir.clone()).map_err(|e| check_hint(e.to_string()))?;
    let panel = PanelConfig::load(&root).map_err(|e| check_hint(e.to_string()))?;
    let instances = count_instances(&dir);
    let c = controller_settings(&controller, &controller_file);
    let p = panel_settings(&panel, &root, &panel_file);
    let store = store_words(&panel, &root);
    let instances_text = match &instances {
        Ok(n) => format!("{n} registered"),
        Err(e) => format!("unreadable: {e}"),
    };
    let json = json!({
        "state_dir": root,
        "state_source": source.as_str(),
        "state_exists": root.is_dir(),
        "instances": instances.as_ref().ok(),
        "store": store,
        "controller_toml": {
            "path": controller_path,
            "exists": controller_path.exists(),
            "values": settings_json(&c),
        },
        "panel_toml": {
            "path": panel_path,
            "exists": panel_path.exists(),
            "values": settings_json(&p),
        },
    });
    Ok(out.success(&json, || {
        format!(
            "{}{}\ninstances: {instances_text}\nstore: {store}\ncontroller.toml: {}{}\npanel.toml: {}{}",
            describe_state(&dir, source),
            if root.is_dir() {
                ""
            } else {
                " — does not exist yet (made by the first registration)"
            },
            file_line(&controller_path),
            settings_text(&c),
            file_line(&panel_path),
            settings_text(&p),
        )
    }))
}

/// Registered instances; 0 when the state folder was never made.
fn count_instances(dir: &StateDir) -> Result<usize, String> {
    if !dir.root().exists() {
        return Ok(0);
    }
    FileStore::new(dir.clone())
        .list()
        .map(|l| l.len())
        .map_err(|e| e.to_string())
}

fn run_check(out: Out, state: &StateArgs) -> Result<ExitCode, Failure> {
    let (dir, source) = resolve(state)?;
    let root: Utf8PathBuf = dir.root().to_owned();
    // Configuration problems (exit 2) and registry problems (exit 1), all of them.
    let mut config_problems: Vec<String> = Vec::new();
    let mut registry_problems: Vec<String> = Vec::new();
    if let Err(e) = ControllerConfig::load(dir.clone()) {
        config_problems.push(e.to_string());
    }
    match aps_panel::Panel::open(&root) {
        Ok(_) => {}
        Err(e) => config_problems.push(crate::common::Failure::from_panel(&e).message),
    }
    let mut checked = 0usize;
    if root.exists() {
        let store = FileStore::new(dir.clone());
        match store.list() {
            Ok(all) => {
                for inst in all {
                    // The record with its secrets, as an operation loads it.
                    match store.get(&inst.name) {
                        Ok(_) => checked += 1,
                        Err(e) => registry_problems.push(e.to_string()),
                    }
                }
            }
            Err(e) => registry_problems.push(e.to_string()),
        }
    }
    let place = describe_state(&dir, source);
    if config_problems.is_empty() && registry_problems.is_empty() {
        return Ok(out.success(
            &json!({
                "state_dir": root,
                "state_source": source.as_str(),
                "instances": checked,
            }),
            || {
                format!(
                    "ok: {place}; controller.toml, panel.toml and {checked} instance record(s) load"
                )
            },
        ));
    }
    // A wrong file is the person's to fix (usage); an unreadable registry is the state's.
    let kind = if config_problems.is_empty() {
        ErrorKind::Internal
    } else {
        ErrorKind::Usage
    };
    let all: Vec<String> = config_problems
        .into_iter()
        .chain(registry_problems)
        .collect();
    Err(Failure::new(
        kind,
        format!("{} problem(s) ({place}): {}", all.len(), all.join("; ")),
    )
    .with("problems", all))
}
