//! `aps-controller serve`: the HTTP adapter, for control panels written in other languages —
//! its start-up (arguments, token, folders, listener, workers). The same operations as the
//! CLI, through the same service layer, answering the same JSON bodies as its `--json`
//! (docs/http.md): [`routes`] maps a request to a handler, [`guard`] checks the token and
//! the paths, [`handlers`] call the service, [`read`] answers the read routes from [`cache`]
//! (`/metrics` in [`metrics`]' format), [`answer`] words its errors for HTTP, [`http`] is the
//! listener.
//!
//! Plain HTTP, so loopback only, and every request carries the bearer token of `--token-file`:
//! a panel on another machine goes through a TLS proxy. Operations run synchronously, one per
//! worker, so a long backup holds its worker until it ends; the controller's per-instance lock
//! answers `busy` (409) to a second operation on the same instance, as it does for the CLI.

mod answer;
mod cache;
mod guard;
mod handlers;
mod http;
mod metrics;
mod read;
mod routes;
mod upgrade;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::process::ExitCode;

use aps_controller::controller::Controller;
use camino::Utf8PathBuf;
use serde_json::json;

use crate::common::{Failure, Out, StateArgs, open_controller};
use answer::problem;
use aps_controller::paths::resolve_existing as resolve;

/// Request bodies are small JSON objects; anything bigger is refused unread.
pub const MAX_BODY_BYTES: u64 = 64 * 1024;
/// Shortest token accepted: a guessable token would make the loopback port a local hole.
const MIN_TOKEN_CHARS: usize = 32;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on: loopback only (127.0.0.1 or [::1]). Port 0 picks a free port; the
    /// first line on stdout says which.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8470")]
    listen: SocketAddr,
    /// File holding the token clients send as `Authorization: Bearer <token>` (at least 32
    /// characters; surrounding whitespace ignored).
    #[arg(long, value_name = "FILE")]
    token_file: Utf8PathBuf,
    /// Requests handled at once; an operation holds one until it ends.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,
    /// The first line on stdout is `{"ok":true,"type":"listening","url":…}` instead of
    /// `listening on URL`, and a failure to start is the JSON envelope (docs/json.md).
    #[arg(long)]
    json: bool,
    /// A folder requests may name paths in (`to`, `from`, `keep`, `identity`, `file`, `path`),
    /// after `..` and symlinks are resolved; repeat for more. Any other path is refused with
    /// 403 `path-not-allowed` before anything happens. Default: the backup store folder of
    /// panel.toml and `<state>/backups`.
    #[arg(long = "allow-dir", value_name = "DIR")]
    allow_dir: Vec<Utf8PathBuf>,
    /// The folder INSTANCE.toml files registered over HTTP (`POST /v1/instances`) must lie
    /// in; repeat for more. Without it, registration over HTTP is refused (403). It must
    /// belong to root or the controller's user and not be writable by others; no backup
    /// (`to`, `keep`) may be written into it.
    #[arg(long = "register-dir", value_name = "DIR")]
    register_dir: Vec<Utf8PathBuf>,
    #[command(flatten)]
    state: StateArgs,
}

pub fn run(args: ServeArgs) -> ExitCode {
    let out = Out::new(args.json);
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => out.failure(&f),
    }
}

fn usage_error(message: impl std::fmt::Display) -> Failure {
    Failure::usage(message.to_string())
}

fn libc_o_nofollow() -> i32 {
    libc::O_NOFOLLOW
}

fn serve(args: ServeArgs) -> Result<(), Failure> {
    if !args.listen.ip().is_loopback() {
        return Err(usage_error(format!(
            "refusing to listen on {}: the adapter speaks plain HTTP; listen on loopback (127.0.0.1 or [::1]) and put a TLS proxy in front to reach it from elsewhere",
            args.listen
        )));
    }
    let token = read_token(&args.token_file).map_err(usage_error)?;
    // Opening the controller rolls back what a killed controller left unfinished.
    let ctl = open_controller(&args.state)?;
    let allowed = allowed_dirs(&args.allow_dir, ctl.config().state.root()).map_err(usage_error)?;
    let register_dirs = register_dirs(&args.register_dir).map_err(usage_error)?;
    let listener = std::net::TcpListener::bind(args.listen)
        .map_err(|e| usage_error(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| usage_error(format!("cannot listen on {}: {e}", args.listen)))?;
    // SIGTERM (systemd's stop), SIGINT, SIGHUP: running operations are rolled back (they
    // check the process's token), the listener stops taking requests, and serve exits 0.
    crate::signals::install(move || http::wake(addr));
    let mut stdout = std::io::stdout();
    if args.json {
        let _ = writeln!(
            stdout,
            "{}",
            json!({"ok": true, "type": "listening", "url": format!("http://{addr}")})
        );
    } else {
        let _ = writeln!(stdout, "listening on http://{addr}");
    }
    let _ = stdout.flush();

    let app = App {
        ctl,
        token,
        allowed,
        register_dirs,
        cache: cache::ReadCache::default(),
        status_inputs: cache::Stamped::default(),
    };
    let (queue, requests) = std::sync::mpsc::sync_channel(http::MAX_QUEUED);
    let requests = std::sync::Mutex::new(requests);
    let stopping = || aps_controller::cancel::Cancel::process().is_requested();
    std::thread::scope(|s| {
        for _ in 0..args.workers {
            s.spawn(|| {
                // `None` only when the listener has stopped: nothing more will come.
                while !stopping()
                    && let Some(request) = http::next(&requests)
                {
                    app.handle(request);
                }
            });
        }
        http::accept_loop(listener, queue, stopping, |status, kind, message| {
            problem(status, kind, message).1
        });
    });
    Ok(())
}

fn read_token(path: &Utf8PathBuf) -> Result<String, String> {
    // The token grants whatever the controller may do (root's rights over every instance):
    // a file others can read, or that another user owns or could swap, is refused, not
    // warned about. Read through one descriptor opened without following a symlink.
    let mut file = std::fs::File::options()
        .read(true)
        .custom_flags(libc_o_nofollow())
        .open(path)
        .map_err(|e| format!("--token-file {path}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("--token-file {path}: {e}"))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "--token-file {path} can be read or written by other users; `chmod 600` it so only the panel's user can"
        ));
    }
    aps_controller::backup_key::private_file_problem(path, &meta)
        .map_err(|why| format!("--token-file {path} cannot be used: {why}"))?;
    let mut text = String::new();
    (&mut file)
        .take(4096)
        .read_to_string(&mut text)
        .map_err(|e| format!("--token-file {path}: {e}"))?;
    let token = text.trim();
    if token.chars().count() < MIN_TOKEN_CHARS || token.chars().any(char::is_whitespace) {
        return Err(format!(
            "--token-file {path}: expected one token of at least {MIN_TOKEN_CHARS} characters without spaces (e.g. `openssl rand -hex 32`)"
        ));
    }
    Ok(token.to_owned())
}

struct App {
    ctl: Controller,
    token: String,
    /// Folders request paths must lie in, canonical.
    allowed: Vec<Utf8PathBuf>,
    /// Folders INSTANCE.toml files registered over HTTP must lie in, canonical (none: no
    /// registration over HTTP).
    register_dirs: Vec<Utf8PathBuf>,
    /// The read routes' answers, kept while their folders are unchanged.
    cache: cache::ReadCache,
    /// What the status table is made of: the registry's instances and the status files.
    status_inputs: cache::Stamped<read::StatusInputs>,
}

/// `--register-dir`s: existing folders of root or the controller's user that others cannot
/// write, canonical.
fn register_dirs(given: &[Utf8PathBuf]) -> Result<Vec<Utf8PathBuf>, String> {
    use std::os::unix::fs::MetadataExt;
    let me = aps_controller::account::Account::current().uid;
    given
        .iter()
        .map(|d| {
            let d = aps_controller::controller::absolute(d);
            let real = d
                .canonicalize_utf8()
                .map_err(|e| format!("--register-dir {d}: {e}"))?;
            for folder in real.ancestors() {
                let meta = std::fs::metadata(folder)
                    .map_err(|e| format!("--register-dir {d}: {folder}: {e}"))?;
                let sticky = meta.mode() & 0o1000 != 0;
                let open = meta.mode() & 0o022 != 0 && !(sticky && folder != real);
                if (meta.uid() != 0 && meta.uid() != me) || open {
                    return Err(format!(
                        "--register-dir {d}: {folder} belongs to uid {} with mode {:04o}; the folder and those above it must belong to root or the controller's user and not be writable by others, or others could place files there to register",
                        meta.uid(),
                        meta.mode() & 0o7777
                    ));
                }
            }
            Ok(real)
        })
        .collect()
}

/// `--allow-dir`s (which must exist), or the defaults, canonical.
fn allowed_dirs(
    given: &[Utf8PathBuf],
    state: &camino::Utf8Path,
) -> Result<Vec<Utf8PathBuf>, String> {
    if !given.is_empty() {
        return given
            .iter()
            .map(|d| {
                let d = aps_controller::controller::absolute(d);
                d.canonicalize_utf8()
                    .map_err(|e| format!("--allow-dir {d}: {e}"))
            })
            .collect();
    }
    let mut dirs = vec![state.join("backups")];
    if let Ok(panel) = aps_panel::config::PanelConfig::load(state) {
        dirs.push(panel.store_dir(state));
    }
    Ok(dirs
        .iter()
        .map(|d| resolve(d).unwrap_or_else(|| d.clone()))
        .collect())
}
