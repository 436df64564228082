//! After a `run`: the `[notify]` of panel.toml told — a URL pinged with the run's JSON
//! (healthchecks.io's shape: the URL after a good run, `failure-url` or URL + `/fail` after a
//! failed one) and a command given the JSON on stdin, as its configured account. A
//! notification that fails is reported, never a reason to fail the run.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use aps_controller::account::Account;
use aps_controller::runner::ProcessSpec;
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::config::NotifyConfig;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of the ping's answer or the command's stderr kept in the report.
const TAIL: usize = 300;

/// What one notification did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notified {
    /// `url` or `command`.
    pub target: &'static str,
    /// The URL called, or the command line run.
    pub to: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Tells everyone `[notify]` names that a run ended (`ok`: every instance succeeded), with
/// `json`, the run's summary. One entry per notification.
pub fn notify(config: &NotifyConfig, ok: bool, json: &[u8]) -> Vec<Notified> {
    let timeout = config
        .timeout_secs
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let mut done = Vec::new();
    if let Some(url) = &config.url {
        let to = match (&config.failure_url, ok) {
            (_, true) => url.clone(),
            (Some(fail), false) => fail.clone(),
            (None, false) => format!("{}/fail", url.trim_end_matches('/')),
        };
        let result = ping(&to, json, timeout);
        done.push(Notified {
            target: "url",
            ok: result.is_ok(),
            error: result.err(),
            // The URL's secret part (a check's UUID) is the whole point of a ping URL; the
            // report goes to the same administrator who wrote it into panel.toml.
            to,
        });
    }
    if let Some(command) = &config.command {
        let result = run_command(command, config.user.as_deref(), json, timeout);
        done.push(Notified {
            target: "command",
            to: command.join(" "),
            ok: result.is_ok(),
            error: result.err(),
        });
    }
    done
}

/// One POST of `json` to `url`; an answer other than 2xx is an error.
fn ping(url: &str, json: &[u8], timeout: Duration) -> Result<(), String> {
    let agent = ureq::AgentBuilder::new().timeout(timeout).build();
    match agent
        .post(url)
        .set("Content-Type", "application/json")
        .set(
            "User-Agent",
            concat!("aps-controller/", env!("CARGO_PKG_VERSION")),
        )
        .send_bytes(json)
    {
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(code, answer)) => {
            let text = answer.into_string().unwrap_or_default();
            Err(format!("{url} answered {code}: {}", tail(text.trim())))
        }
        Err(ureq::Error::Transport(t)) => Err(format!("{url}: {t}")),
    }
}

/// The command, as its account, the JSON on its stdin (a private file of the controller's,
/// opened before the switch).
fn run_command(
    command: &[String],
    user: Option<&str>,
    json: &[u8],
    timeout: Duration,
) -> Result<(), String> {
    let (program, args) = command.split_first().ok_or("the command is empty")?;
    let program = Utf8PathBuf::from(program);
    let account = match user {
        Some(user) => Some(Account::lookup(user, None).map_err(|e| format!("user {user:?}: {e}"))?),
        None => {
            trusted_program(&program)?;
            None
        }
    };
    let mut stdin = tempfile::Builder::new()
        .prefix("aps-notify-")
        .tempfile()
        .map_err(|e| format!("a file for the command's stdin: {e}"))?;
    stdin
        .write_all(json)
        .and_then(|()| stdin.flush())
        .map_err(|e| format!("a file for the command's stdin: {e}"))?;
    let stdin_path = Utf8PathBuf::try_from(stdin.path().to_path_buf())
        .map_err(|e| format!("a file for the command's stdin: {e}"))?;
    let mut spec = ProcessSpec::for_tool(program.as_str())
        .args(args)
        .stdin_file(stdin_path)
        .timeout(timeout);
    if let Some(account) = account.filter(|a| !a.is_current()) {
        spec = spec.run_as(account);
    }
    match spec.run() {
        Ok(_) => Ok(()),
        Err(e) => Err(tail(&e.to_string())),
    }
}

/// A program the controller's own account may run: it and every folder above it belong to
/// root or that account, and nobody else can write them (else whoever can would choose what
/// root runs after every backup).
fn trusted_program(program: &Utf8Path) -> Result<(), String> {
    let me = rustix::process::geteuid().as_raw();
    let mut path = Some(program);
    while let Some(p) = path {
        let meta = std::fs::symlink_metadata(p).map_err(|e| format!("{p}: {e}"))?;
        if meta.file_type().is_symlink() {
            return Err(format!(
                "{p} is a symlink; name the program itself, or set [notify] user"
            ));
        }
        let others_write = meta.mode() & 0o022 != 0 && !(meta.mode() & 0o1000 != 0 && p != program);
        if (meta.uid() != 0 && meta.uid() != me) || others_write {
            return Err(format!(
                "{p} belongs to uid {} with mode {:04o}: a command run as the controller's account must belong to it or root, as must every folder above it, and nobody else may write them; fix that, or set [notify] user to run it as another account",
                meta.uid(),
                meta.mode() & 0o7777
            ));
        }
        path = p.parent().filter(|p| !p.as_str().is_empty());
    }
    Ok(())
}

fn tail(text: &str) -> String {
    match text.char_indices().rev().nth(TAIL) {
        Some((at, _)) => format!("…{}", &text[at..]),
        None => text.to_owned(),
    }
}
