//! `aps-controller serve`: the HTTP adapter, for control panels written in other languages.
//! The same operations as the CLI, answering the same JSON bodies as its `--json`
//! (docs/http.md).
//!
//! Plain HTTP, so loopback only, and every request carries the bearer token of `--token-file`:
//! a panel on another machine goes through a TLS proxy. Operations run synchronously, one per
//! worker, so a long backup holds its worker until it ends; the controller's per-instance lock
//! answers `busy` (409) to a second operation on the same instance, as it does for the CLI.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::process::ExitCode;
use std::time::Instant;

use aps_controller::controller::Controller;
use aps_controller::error::ErrorKind;
use aps_controller::registry::{self, RegisterError, StoreError, view};
use aps_meta::{Limits, check_package};
use camino::Utf8PathBuf;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::serve_http::{Reply, Request};

use crate::backup::{
    BackupInput, MigrateInput, RestoreInput, manual_backup, migrate_instance, repository_backup,
    restore_instance,
};
use crate::common::{Failure, Out, StateArgs, open_controller, open_panel, success_json};
use crate::instance::{register_failure, store_failure};

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
    crate::signals::install(move || crate::serve_http::wake(addr));
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
    };
    let (queue, requests) = std::sync::mpsc::sync_channel(crate::serve_http::MAX_QUEUED);
    let requests = std::sync::Mutex::new(requests);
    let stopping = || aps_controller::cancel::Cancel::process().is_requested();
    std::thread::scope(|s| {
        for _ in 0..args.workers {
            s.spawn(|| {
                // `None` only when the listener has stopped: nothing more will come.
                while !stopping()
                    && let Some(request) = crate::serve_http::next(&requests)
                {
                    app.handle(request);
                }
            });
        }
        crate::serve_http::accept_loop(listener, queue, stopping, |status, kind, message| {
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

/// Whether `path`, with symlinks and `..` resolved, lies inside one of `dirs`.
fn resolved_inside(path: &camino::Utf8Path, dirs: &[Utf8PathBuf]) -> bool {
    resolve(path).is_some_and(|real| dirs.iter().any(|d| real.starts_with(d)))
}

/// `dirs` as a message names them.
fn listed(dirs: &[Utf8PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `path` with symlinks and `..` resolved as far as it exists, the rest appended (a rest
/// holding `..` or `.` gives `None`: it cannot be placed without the folders existing).
fn resolve(path: &camino::Utf8Path) -> Option<Utf8PathBuf> {
    let mut existing = path.to_owned();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize_utf8() {
            let mut out = real;
            for c in rest.iter().rev() {
                out.push(c);
            }
            return Some(out);
        }
        let name = existing.file_name()?.to_owned();
        rest.push(name);
        existing = existing.parent()?.to_owned();
    }
}

/// An INSTANCE.toml, package or folder holding them that someone other than root or the
/// controller's user could change would let them choose what the controller registers and
/// runs: refused.
fn owned_by_us(field: &str, path: &camino::Utf8Path) -> Result<(), Answer> {
    use std::os::unix::fs::MetadataExt;
    let me = aps_controller::account::Account::current().uid;
    let mut checked = vec![path.to_owned()];
    if let Some(parent) = path.parent() {
        checked.push(parent.to_owned());
    }
    if path.is_dir() {
        checked.push(path.join("scripts"));
        checked.push(path.join("APP-META.xml"));
    }
    for p in checked {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let others_write = meta.mode() & 0o022 != 0 && !meta.file_type().is_symlink();
        if (meta.uid() != 0 && meta.uid() != me) || others_write {
            return Err(problem(
                403,
                "path-not-allowed",
                format!(
                    "`{field}`: {p} can be changed by a user other than root or the controller's (owner uid {}, mode {:o}); only files the control panel owns are registered",
                    meta.uid(),
                    meta.mode() & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

/// An HTTP status and the JSON body that goes with it.
type Answer = (u16, Value);
/// A route's answer; `Err` when the request was refused before anything ran.
type Handled = Result<Answer, Answer>;

/// A refusal of the adapter itself (`kind` one of the HTTP kinds of docs/json.md, or
/// `usage` for a body that is not what the route takes).
fn problem(status: u16, kind: &'static str, message: impl Into<String>) -> Answer {
    let f = if kind == "bad-request" {
        Failure::usage(message)
    } else {
        Failure::http(kind, message)
    };
    (status, f.envelope())
}

/// A failure of the libraries, phrased for HTTP, with the status of its kind.
fn failure_answer(f: Failure) -> Answer {
    let status = status_of_kind(f.kind);
    (status, f.for_http().envelope())
}

impl App {
    fn handle(&self, request: Request) {
        let started = Instant::now();
        let (status, body) = self.answer(&request);
        // Logged without query string or headers: the token never reaches a log. The method
        // is the client's text: only its letters are shown.
        let method: String = request
            .method
            .chars()
            .filter(char::is_ascii_alphabetic)
            .take(16)
            .collect();
        crate::common::errln!(
            "{method} {} -> {status} ({} ms)",
            request.url.split('?').next().unwrap_or("").escape_debug(),
            started.elapsed().as_millis()
        );
        // A client that went away gets nothing; the operation itself is complete either way.
        request.respond(Reply { status, body });
    }

    fn answer(&self, request: &Request) -> Answer {
        self.route(request).unwrap_or_else(|refused| refused)
    }

    fn route(&self, request: &Request) -> Handled {
        if !self.authorized(request) {
            return Err(problem(
                401,
                "unauthorized",
                "missing or wrong bearer token: send `Authorization: Bearer <the token of --token-file>`",
            ));
        }
        let body = &request.body;
        let path = request.url.split('?').next().unwrap_or("").to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (request.method.as_str(), segments.as_slice()) {
            ("GET", ["v1", "instances"]) => Ok(self.list()),
            ("POST", ["v1", "instances"]) => self.register(body),
            ("GET", ["v1", "instances", name]) => Ok(self.show(name)),
            ("DELETE", ["v1", "instances", name]) => Ok(self.remove(name)),
            ("GET", ["v1", "instances", name, "backups"]) => Ok(self.backups(name)),
            ("POST", ["v1", "instances", name, "backup"]) => self.backup(name, body),
            ("POST", ["v1", "instances", name, "restore"]) => self.restore(name, body),
            ("POST", ["v1", "instances", name, "migrate"]) => self.migrate(name, body),
            ("POST", ["v1", "packages", "check"]) => self.check(body),
            (
                method,
                ["v1", "instances"]
                | ["v1", "instances", _]
                | [
                    "v1",
                    "instances",
                    _,
                    "backup" | "backups" | "restore" | "migrate",
                ]
                | ["v1", "packages", "check"],
            ) => Err(problem(
                405,
                "method-not-allowed",
                format!(
                    "{} is not allowed on {}; see docs/http.md",
                    method.escape_debug(),
                    path.escape_debug()
                ),
            )),
            (method, _) => Err(problem(
                404,
                "no-such-route",
                format!(
                    "no route {} {}; see docs/http.md",
                    method.escape_debug(),
                    path.escape_debug()
                ),
            )),
        }
    }

    fn authorized(&self, request: &Request) -> bool {
        request
            .headers_named("Authorization")
            .filter_map(|v| v.strip_prefix("Bearer "))
            .any(|given| same_secret(given.trim().as_bytes(), self.token.as_bytes()))
    }

    /// `path` must be absolute and, resolved, lie inside one of the allowed folders.
    fn allowed(&self, field: &str, path: &Utf8PathBuf) -> Result<(), Answer> {
        absolute(field, path)?;
        if resolved_inside(path, &self.allowed) {
            return Ok(());
        }
        Err(problem(
            403,
            "path-not-allowed",
            format!(
                "`{field}` is {path}, which (with symlinks and `..` resolved) is not inside a folder the adapter may touch ({}); start `serve` with `--allow-dir` for it",
                listed(&self.allowed)
            ),
        ))
    }

    /// An INSTANCE.toml may be registered over HTTP only from a `--register-dir`: a file
    /// anywhere else may have been written by root on a tenant's behalf (a backup's `to`).
    fn registrable(&self, file: &Utf8PathBuf) -> Result<(), Answer> {
        if self.register_dirs.is_empty() {
            return Err(problem(
                403,
                "path-not-allowed",
                "registration over HTTP is off: start `serve` with `--register-dir DIR` and put the INSTANCE.toml files to register there (or register with the CLI)",
            ));
        }
        if resolved_inside(file, &self.register_dirs) {
            return Ok(());
        }
        Err(problem(
            403,
            "path-not-allowed",
            format!(
                "`file` is {file}, which (with symlinks and `..` resolved) is not inside a folder of `--register-dir` ({})",
                listed(&self.register_dirs)
            ),
        ))
    }

    /// A backup written at a path the controller reads as configuration would let a tenant
    /// (whose `sufficient` script writes the file's content) choose that configuration: no
    /// backup goes into a `--register-dir`, nor under a name the controller reads as an
    /// instance file or a package.
    fn never_configuration(&self, field: &str, path: &Utf8PathBuf) -> Result<(), Answer> {
        let name = path.file_name().unwrap_or("").to_ascii_lowercase();
        let read_as = [".toml", ".zip", ".xml"]
            .into_iter()
            .find(|suffix| name.ends_with(suffix));
        if let Some(suffix) = read_as {
            return Err(problem(
                403,
                "path-not-allowed",
                format!(
                    "`{field}` is {path}: a backup is never written under a {suffix} name, which the controller would read as an instance file or a package; choose another name (e.g. .aps.tar.zst)"
                ),
            ));
        }
        let real = resolve(path).unwrap_or_else(|| path.clone());
        if let Some(dir) = self.register_dirs.iter().find(|d| real.starts_with(d)) {
            return Err(problem(
                403,
                "path-not-allowed",
                format!(
                    "`{field}` is {path}, inside the --register-dir {dir}: a backup is never written where INSTANCE.toml files are registered from"
                ),
            ));
        }
        Ok(())
    }

    fn list(&self) -> Answer {
        match self.ctl.store().list() {
            Ok(all) => {
                let items: Vec<Value> = all.iter().map(view::summary_json).collect();
                (200, json!({"ok": true, "instances": items}))
            }
            Err(e) => store_problem(e),
        }
    }

    fn show(&self, name: &str) -> Answer {
        match self.ctl.store().get(name) {
            Ok(instance) => {
                let mut v = view::masked_json(&instance);
                v["ok"] = true.into();
                (200, v)
            }
            Err(e) => store_problem(e),
        }
    }

    fn register(&self, body: &[u8]) -> Handled {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            file: Utf8PathBuf,
            #[serde(default)]
            replace: bool,
            /// As `--no-connect`: the databases' logins are not tried.
            #[serde(default)]
            no_connect: bool,
        }
        let b: Body = parse(body)?;
        absolute("file", &b.file)?;
        self.registrable(&b.file)?;
        owned_by_us("file", &b.file)?;
        if let Ok(file) = registry::InstanceFile::load(&b.file) {
            // Relative paths were resolved against the file's folder; symlinks are resolved
            // here, so that what is checked is what will be opened.
            let package = file
                .package
                .canonicalize_utf8()
                .unwrap_or_else(|_| file.package.clone());
            owned_by_us("package", &package)?;
        }
        let config = self.ctl.config();
        let options = registry::RegisterOptions {
            replace: b.replace,
            connect: (!b.no_connect).then_some(config),
        };
        Ok(
            match registry::register_with(self.ctl.store(), &config.state, &b.file, &options) {
                Ok(instance) => (
                    201,
                    json!({"ok": true, "instance": view::summary_json(&instance)}),
                ),
                Err(RegisterError::Store(e)) => store_problem(e),
                // The file is the client's mistake: 422 with every problem (`problems`).
                Err(e) => (422, register_failure(e).for_http().envelope()),
            },
        )
    }

    fn remove(&self, name: &str) -> Answer {
        match self.ctl.store().remove(name) {
            Ok(instance) => (200, json!({"ok": true, "removed": instance.name})),
            Err(e) => store_problem(e),
        }
    }

    /// NAME's backups in the store, or its snapshots with the repository store, as
    /// `backups NAME --json` lists them.
    fn backups(&self, name: &str) -> Answer {
        self.panel()
            .and_then(|panel| crate::policy::backups_of(&self.ctl, &panel, name, false))
            .map(|done| (200, success_json(&done.json)))
            .unwrap_or_else(failure_answer)
    }

    fn backup(&self, name: &str, body: &[u8]) -> Handled {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            /// Absent: into the backup store, as `aps-controller backup NAME` does.
            to: Option<Utf8PathBuf>,
            #[serde(default)]
            force: bool,
            timeout_secs: Option<u64>,
            compression: Option<String>,
            #[serde(default)]
            recipients: Vec<String>,
        }
        let b: Body = parse(body)?;
        if let Some(to) = &b.to {
            self.allowed("to", to)?;
            self.never_configuration("to", to)?;
        }
        let input = BackupInput {
            instance: name.to_owned(),
            to: b.to,
            force: b.force,
            timeout_secs: b.timeout_secs,
            compression: b.compression,
            recipients: b.recipients,
            http: true,
            dry_run: false,
        };
        let answer = self
            .panel()
            .and_then(|panel| {
                // Without "to", into the store panel.toml chose: with the repository, one
                // snapshot, as `aps-controller backup NAME` makes.
                if input.goes_to_repository(&panel) {
                    repository_backup(&self.ctl, &panel, &input).map(|done| success_json(&done))
                } else {
                    manual_backup(&self.ctl, &panel, &input)
                }
            })
            .map(|v| (200, v))
            .unwrap_or_else(failure_answer);
        Ok(answer)
    }

    /// panel.toml, read per request so that a change applies without a restart.
    fn panel(&self) -> Result<aps_panel::Panel, Failure> {
        open_panel(&crate::common::StateArgs {
            state_dir: Some(self.ctl.config().state.root().to_owned()),
        })
    }

    fn restore(&self, name: &str, body: &[u8]) -> Handled {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            from: Option<Utf8PathBuf>,
            /// A snapshot of the repository store (id or unique prefix).
            snapshot: Option<String>,
            /// The newest good backup of the store (the repository: its newest snapshot).
            #[serde(default)]
            latest: bool,
            timeout_secs: Option<u64>,
            #[serde(default)]
            no_safety_snapshot: bool,
            identity: Option<Utf8PathBuf>,
            /// The file may be a backup of another instance (`--from-other-instance`).
            #[serde(default)]
            from_other_instance: bool,
        }
        let b: Body = parse(body)?;
        let input = RestoreInput {
            instance: name.to_owned(),
            from: b.from,
            latest: b.latest,
            snapshot: b.snapshot,
            timeout_secs: b.timeout_secs,
            no_safety_snapshot: b.no_safety_snapshot,
            identity: b.identity,
            from_other_instance: b.from_other_instance,
            http: true,
        };
        input.check().map_err(failure_answer)?;
        let paths = [
            input.from.as_ref().map(|p| ("from", p)),
            input.identity.as_ref().map(|p| ("identity", p)),
        ];
        for (field, path) in paths.into_iter().flatten() {
            self.allowed(field, path)?;
        }
        let panel = match input.from {
            Some(_) => None,
            None => Some(self.panel().map_err(failure_answer)?),
        };
        input.check_store(panel.as_ref()).map_err(failure_answer)?;
        Ok(
            restore_instance(&self.ctl, panel.as_ref(), &input, Out::new(true))
                .map(|done| (200, success_json(&done.json)))
                .unwrap_or_else(failure_answer),
        )
    }

    fn migrate(&self, name: &str, body: &[u8]) -> Handled {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            to_instance: String,
            keep: Option<Utf8PathBuf>,
            timeout_secs: Option<u64>,
            #[serde(default)]
            no_safety_snapshot: bool,
            /// A snapshot of the source in the repository store instead of a live backup.
            snapshot: Option<String>,
            /// The source's newest snapshot instead of a live backup.
            #[serde(default)]
            latest: bool,
        }
        let b: Body = parse(body)?;
        let input = MigrateInput {
            source: name.to_owned(),
            target: b.to_instance,
            keep: b.keep,
            timeout_secs: b.timeout_secs,
            no_safety_snapshot: b.no_safety_snapshot,
            snapshot: b.snapshot,
            latest: b.latest,
            http: true,
        };
        input.check().map_err(failure_answer)?;
        if let Some(keep) = &input.keep {
            self.allowed("keep", keep)?;
            self.never_configuration("keep", keep)?;
        }
        let panel = if input.uses_snapshot() {
            Some(self.panel().map_err(failure_answer)?)
        } else {
            None
        };
        // Out in JSON mode: nothing is printed, the answer is the body.
        Ok(
            migrate_instance(&self.ctl, panel.as_ref(), &input, Out::new(true))
                .map(|done| (200, success_json(&done.json)))
                .unwrap_or_else(failure_answer),
        )
    }
}

impl App {
    fn check(&self, body: &[u8]) -> Handled {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            path: Utf8PathBuf,
            limits: Option<Limits>,
        }
        let b: Body = parse(body)?;
        self.allowed("path", &b.path)?;
        Ok(
            match check_package(&b.path, &b.limits.unwrap_or_default()) {
                // The check ran: 200 whatever it found; `ok` says whether the package is valid.
                Ok(report) => (200, crate::package::report_json(&report)),
                Err(e) => (422, crate::package::check_failure(&e).envelope()),
            },
        )
    }
}

/// A JSON object body; an empty body is `{}`.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Answer> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        problem(
            400,
            "bad-request",
            format!("the body is not the JSON object this route takes: {e}"),
        )
    })
}

/// Paths in requests are the server's paths; a relative one would depend on its working folder.
fn absolute(field: &str, path: &Utf8PathBuf) -> Result<(), Answer> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(problem(
            400,
            "bad-request",
            format!("`{field}` is {path:?}; expected an absolute path"),
        ))
    }
}

/// The status of a kind named in the README's table (500 for anything else).
fn status_of_kind(kind: &str) -> u16 {
    ErrorKind::named(kind).map_or(500, status_of)
}

/// The HTTP status of an operation's error; `error.kind` in the body is the precise answer.
fn status_of(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::InstanceNotFound => 404,
        ErrorKind::Busy => 409,
        ErrorKind::DestinationRefused
        | ErrorKind::InvalidBackup
        | ErrorKind::UntrustedBackup
        | ErrorKind::AccountRefused
        | ErrorKind::InvalidPackage => 422,
        ErrorKind::PathNotAllowed => 403,
        ErrorKind::Usage => 400,
        ErrorKind::NoSpace => 507,
        ErrorKind::Interrupted => 503,
        ErrorKind::InterpreterMissing
        | ErrorKind::ScriptFailed
        | ErrorKind::TimedOut
        | ErrorKind::ResourceFailed
        | ErrorKind::RollbackFailed
        | ErrorKind::Internal => 500,
    }
}

fn store_problem(e: StoreError) -> Answer {
    let status = match e {
        StoreError::NotFound { .. } => 404,
        StoreError::AlreadyExists { .. } => 409,
        StoreError::InvalidName { .. } => 400,
        StoreError::Io { .. } | StoreError::Corrupt { .. } => 500,
    };
    (status, store_failure(e).for_http().envelope())
}

/// Equal without an early exit, so response times do not reveal how much of a guess was right.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}
