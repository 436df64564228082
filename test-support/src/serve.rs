//! `aps-controller serve` started for a test: a private token file, the allowed folders, and
//! the address it printed. Killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use serde_json::Value;

use crate::Sandbox;

/// The first line `serve` prints on stdout (`listening on …`; empty when it exited first).
pub fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line
}

pub struct Served {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub token: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` on a free loopback port, allowed to touch the folders `allow`.
pub fn serve_allowing(sb: &Sandbox, allow: &[&str]) -> Served {
    serve_with(sb, allow, &[])
}

/// [`serve_allowing`], also registering INSTANCE.toml files from the folders `register`
/// (`--register-dir`).
pub fn serve_with(sb: &Sandbox, allow: &[&str], register: &[&str]) -> Served {
    let token = "0123456789abcdef0123456789abcdef-test-token".to_owned();
    let token_file = sb.path("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    // serve refuses a token file others can read.
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        token_file.as_str(),
    ];
    for dir in allow {
        args.extend(["--allow-dir", dir]);
    }
    for dir in register {
        args.extend(["--register-dir", dir]);
    }
    let mut child = sb
        .command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = first_line(&mut child);
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .to_owned();
    Served { child, base, token }
}

impl Served {
    /// Status and JSON body of `METHOD path` with the right token (or `token`); every answer
    /// is checked against the one envelope.
    pub fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, Value) {
        let mut request = ureq::request(method, &format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let response = match request.send_string(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        assert_eq!(response.content_type(), "application/json");
        let status = response.status();
        if status == 401 {
            assert_eq!(response.header("WWW-Authenticate"), Some("Bearer"));
        }
        let body: Value = response.into_json().unwrap();
        // Every answer is the one envelope of docs/envelope.schema.json.
        crate::schema::Envelope::get()
            .check(&format!("{method} {path} -> {status}"), &body)
            .unwrap_or_else(|e| panic!("{e}"));
        (status, body)
    }

    /// `call_as` with the right token; a `Null` body is an empty body.
    pub fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        self.call_as(Some(&self.token), method, path, &body)
    }
}
