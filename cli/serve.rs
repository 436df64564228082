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
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aps_controller::controller::Controller;
use aps_controller::error::{ErrorKind, OperationError};
use aps_controller::operation::{BackupRequest, MigrateRequest, RestoreRequest};
use aps_controller::registry::{self, ParseError, RegisterError, StoreError, view};
use aps_meta::{Limits, check_package};
use camino::Utf8PathBuf;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::common::{EXIT_USAGE, StateArgs, failure_json, open_controller, success_json};

/// Request bodies are small JSON objects; anything bigger is refused unread.
const MAX_BODY_BYTES: u64 = 64 * 1024;
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
    #[command(flatten)]
    state: StateArgs,
}

pub fn run(args: ServeArgs) -> ExitCode {
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}

fn serve(args: ServeArgs) -> Result<(), ExitCode> {
    if !args.listen.ip().is_loopback() {
        return Err(usage_error(format!(
            "refusing to listen on {}: the adapter speaks plain HTTP; listen on loopback (127.0.0.1 or [::1]) and put a TLS proxy in front to reach it from elsewhere",
            args.listen
        )));
    }
    let token = read_token(&args.token_file).map_err(usage_error)?;
    // Opening the controller rolls back what a killed controller left unfinished.
    let ctl = open_controller(&args.state)?;
    let server = Server::http(args.listen)
        .map_err(|e| usage_error(format!("cannot listen on {}: {e}", args.listen)))?;
    // SIGTERM (systemd's stop), SIGINT, SIGHUP: running operations are rolled back (they
    // check the process's token), every worker stops taking requests, and serve exits 0.
    let server = std::sync::Arc::new(server);
    {
        let server = std::sync::Arc::clone(&server);
        let workers = args.workers;
        crate::signals::install(move || {
            for _ in 0..workers {
                server.unblock();
            }
        });
    }
    let addr = server
        .server_addr()
        .to_ip()
        .expect("Server::http listens on TCP");
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on http://{addr}");
    let _ = stdout.flush();

    let app = App { ctl, token };
    std::thread::scope(|s| {
        for _ in 0..args.workers {
            s.spawn(|| {
                // recv fails only when the listener is gone: nothing more will come.
                while !aps_controller::cancel::Cancel::process().is_requested()
                    && let Ok(request) = server.recv()
                {
                    app.handle(request);
                }
            });
        }
    });
    Ok(())
}

fn read_token(path: &Utf8PathBuf) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--token-file {path}: {e}"))?;
    if let Ok(meta) = std::fs::metadata(path)
        && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0
    {
        eprintln!(
            "warning: --token-file {path} can be read by other users; `chmod 600` it so only the panel's user can"
        );
    }
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
}

/// An HTTP status and the JSON body that goes with it.
type Answer = (u16, Value);
/// A route's answer; `Err` when the request was refused before anything ran.
type Handled = Result<Answer, Answer>;

fn problem(status: u16, kind: &str, message: impl Into<String>) -> Answer {
    (
        status,
        json!({"ok": false, "error": {"kind": kind, "message": message.into()}}),
    )
}

impl App {
    fn handle(&self, mut request: Request) {
        let started = Instant::now();
        let (status, body) = self.answer(&mut request);
        // Logged without query string or headers: the token never reaches a log.
        eprintln!(
            "{} {} -> {status} ({} ms)",
            request.method(),
            request.url().split('?').next().unwrap_or(""),
            started.elapsed().as_millis()
        );
        let header = Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
            .expect("a valid header");
        let mut response = Response::from_string(body.to_string())
            .with_status_code(status)
            .with_header(header);
        if status == 401 {
            response.add_header(
                Header::from_bytes(&b"WWW-Authenticate"[..], &b"Bearer"[..])
                    .expect("a valid header"),
            );
        }
        // A client that went away gets nothing; the operation itself is complete either way.
        let _ = request.respond(response);
    }

    fn answer(&self, request: &mut Request) -> Answer {
        self.route(request).unwrap_or_else(|refused| refused)
    }

    fn route(&self, request: &mut Request) -> Handled {
        if !self.authorized(request) {
            return Err(problem(
                401,
                "unauthorized",
                "missing or wrong bearer token: send `Authorization: Bearer <the token of --token-file>`",
            ));
        }
        let body = read_body(request)?;
        let path = request.url().split('?').next().unwrap_or("").to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (request.method(), segments.as_slice()) {
            (Method::Get, ["v1", "instances"]) => Ok(self.list()),
            (Method::Post, ["v1", "instances"]) => self.register(&body),
            (Method::Get, ["v1", "instances", name]) => Ok(self.show(name)),
            (Method::Delete, ["v1", "instances", name]) => Ok(self.remove(name)),
            (Method::Post, ["v1", "instances", name, "backup"]) => self.backup(name, &body),
            (Method::Post, ["v1", "instances", name, "restore"]) => self.restore(name, &body),
            (Method::Post, ["v1", "instances", name, "migrate"]) => self.migrate(name, &body),
            (Method::Post, ["v1", "packages", "check"]) => check(&body),
            (
                method,
                ["v1", "instances"]
                | ["v1", "instances", _]
                | ["v1", "instances", _, "backup" | "restore" | "migrate"]
                | ["v1", "packages", "check"],
            ) => Err(problem(
                405,
                "method-not-allowed",
                format!("{method} is not allowed on {path}; see docs/http.md"),
            )),
            (method, _) => Err(problem(
                404,
                "no-such-route",
                format!("no route {method} {path}; see docs/http.md"),
            )),
        }
    }

    fn authorized(&self, request: &Request) -> bool {
        request
            .headers()
            .iter()
            .filter(|h| h.field.equiv("Authorization"))
            .filter_map(|h| h.value.as_str().strip_prefix("Bearer "))
            .any(|given| same_secret(given.trim().as_bytes(), self.token.as_bytes()))
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
        }
        let b: Body = parse(body)?;
        absolute("file", &b.file)?;
        let state = &self.ctl.config().state;
        Ok(
            match registry::register(self.ctl.store(), state, &b.file, b.replace) {
                Ok(instance) => (
                    201,
                    json!({"ok": true, "instance": view::summary_json(&instance)}),
                ),
                Err(RegisterError::Store(e)) => store_problem(e),
                Err(e @ RegisterError::Parse(ParseError::Read { .. })) => {
                    problem(422, "unreadable-file", e.to_string())
                }
                Err(e) => problem(422, "invalid-instance", e.to_string()),
            },
        )
    }

    fn remove(&self, name: &str) -> Answer {
        match self.ctl.store().remove(name) {
            Ok(instance) => (200, json!({"ok": true, "removed": instance.name})),
            Err(e) => store_problem(e),
        }
    }

    fn backup(&self, name: &str, body: &[u8]) -> Handled {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            to: Utf8PathBuf,
            #[serde(default)]
            force: bool,
            timeout_secs: Option<u64>,
            compression: Option<String>,
            #[serde(default)]
            recipients: Vec<String>,
        }
        let b: Body = parse(body)?;
        absolute("to", &b.to)?;
        let compression = b.compression.as_deref().unwrap_or("zstd");
        let archive = crate::backup::archive_options(compression, &b.recipients)
            .map_err(|message| problem(400, "bad-request", message))?;
        let request = BackupRequest {
            instance: name.to_owned(),
            destination: b.to,
            force: b.force,
            timeout: b.timeout_secs.map(Duration::from_secs),
            archive,
        };
        Ok(operation_answer(self.ctl.backup(&request)))
    }

    fn restore(&self, name: &str, body: &[u8]) -> Handled {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            from: Utf8PathBuf,
            timeout_secs: Option<u64>,
            #[serde(default)]
            no_safety_snapshot: bool,
            identity: Option<Utf8PathBuf>,
        }
        let b: Body = parse(body)?;
        let paths = [
            Some(("from", &b.from)),
            b.identity.as_ref().map(|p| ("identity", p)),
        ];
        for (field, path) in paths.into_iter().flatten() {
            absolute(field, path)?;
        }
        let request = RestoreRequest {
            instance: name.to_owned(),
            source: b.from,
            timeout: b.timeout_secs.map(Duration::from_secs),
            no_safety_snapshot: b.no_safety_snapshot,
            identity: b.identity,
        };
        Ok(operation_answer(self.ctl.restore(&request)))
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
        }
        let b: Body = parse(body)?;
        if let Some(keep) = &b.keep {
            absolute("keep", keep)?;
        }
        let mut request = MigrateRequest::new(name, b.to_instance);
        request.keep = b.keep;
        request.timeout = b.timeout_secs.map(Duration::from_secs);
        request.no_safety_snapshot = b.no_safety_snapshot;
        Ok(operation_answer(self.ctl.migrate(&request)))
    }
}

fn check(body: &[u8]) -> Handled {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        path: Utf8PathBuf,
        limits: Option<Limits>,
    }
    let b: Body = parse(body)?;
    absolute("path", &b.path)?;
    Ok(
        match check_package(&b.path, &b.limits.unwrap_or_default()) {
            // The check ran: 200 whatever it found; `ok` says whether the package is valid.
            Ok(report) => (200, crate::package::report_json(&report)),
            Err(e) => problem(422, crate::package::check_error_kind(&e), e.to_string()),
        },
    )
}

/// The body, at most [`MAX_BODY_BYTES`].
fn read_body(request: &mut Request) -> Result<Vec<u8>, Answer> {
    let too_large = || {
        problem(
            413,
            "body-too-large",
            format!("request bodies are at most {MAX_BODY_BYTES} bytes"),
        )
    };
    if request
        .body_length()
        .is_some_and(|n| n as u64 > MAX_BODY_BYTES)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_BODY_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| problem(400, "bad-request", format!("cannot read the body: {e}")))?;
    if body.len() as u64 > MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(body)
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

fn operation_answer<T: serde::Serialize>(result: Result<T, OperationError>) -> Answer {
    match result {
        Ok(report) => (200, success_json(&report)),
        Err(e) => (status_of(e.kind()), failure_json(&e)),
    }
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
        | ErrorKind::Internal => 500,
    }
}

fn store_problem(e: StoreError) -> Answer {
    let (status, kind) = match e {
        StoreError::NotFound { .. } => (404, ErrorKind::InstanceNotFound.as_str()),
        StoreError::AlreadyExists { .. } => (409, "already-exists"),
        StoreError::InvalidName { .. } => (400, "invalid-name"),
        StoreError::Io { .. } | StoreError::Corrupt { .. } => (500, ErrorKind::Internal.as_str()),
    };
    problem(status, kind, e.to_string())
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
