//! One conformance run through the CLI and what the tests read of it: the exit code, the
//! envelope (checked against docs/envelope.schema.json), the JUnit XML parsed back, and the
//! check that the run left nothing behind.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use camino::Utf8PathBuf;
use serde_json::Value;

use aps_controller::database::DbKind;
use test_support as support;

use support::database::TestServers;
use support::schema::Envelope;
use support::{Sandbox, repo};

/// The exit code of a run where a step failed (README, "Exit codes").
pub const CONFORMANCE_FAILED: i32 = 26;

pub fn lifecycle(name: &str) -> Utf8PathBuf {
    repo().join("fixtures/lifecycle").join(name)
}

pub fn failing(name: &str) -> Utf8PathBuf {
    repo().join("fixtures/conformance").join(name)
}

/// Whether the run has what a conformance run needs (root and the database servers); false
/// only when the run skips them on purpose.
pub fn can_run(what: &str) -> bool {
    support::needs_root(what) && !support::skipped_on_purpose("APS_TEST_NO_DB", what)
}

/// A state folder whose controller.toml names both test servers, and a sandbox base of its
/// own (root's, 0755, inside a folder tenants may pass through).
pub struct Host {
    pub sb: Sandbox,
    pub base: Utf8PathBuf,
}

impl Host {
    pub fn new() -> Host {
        let sb = Sandbox::for_tenants();
        std::fs::create_dir_all(sb.state()).unwrap();
        let servers = TestServers::from_env().expect("the test database servers");
        // What the host offers packages (as tests/lifecycle's hosts): the PHP the sites run,
        // and the system's python.
        let mut toml = String::from(
            "php-version = \"8.2\"\n[interpreters]\npython = \"/usr/bin/python3\"\n\n",
        );
        toml.push_str(&servers.server_section(DbKind::Mysql, "maria", &sb.state()));
        toml.push('\n');
        toml.push_str(&servers.server_section(DbKind::Postgresql, "pg", &sb.state()));
        std::fs::write(sb.state().join("controller.toml"), toml).unwrap();
        let base = sb.path("sandboxes");
        std::fs::create_dir(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        Host { sb, base }
    }

    /// `aps-controller conformance PACKAGE --json --junit FILE --sandbox-base BASE ARGS…`.
    pub fn run(&self, package: &Utf8PathBuf, args: &[&str]) -> Ran {
        let junit = self.sb.path("junit.xml");
        let _ = std::fs::remove_file(&junit);
        let mut all = vec![
            "conformance",
            package.as_str(),
            "--json",
            "--junit",
            junit.as_str(),
            "--sandbox-base",
            self.base.as_str(),
        ];
        all.extend_from_slice(args);
        let out = self.sb.cli(&all);
        Ran::read(out, std::fs::read_to_string(&junit).ok(), package)
    }
}

/// What one run printed and wrote.
pub struct Ran {
    pub code: Option<i32>,
    pub envelope: Value,
    pub junit: Option<String>,
    pub stderr: String,
    pub what: String,
}

impl Ran {
    fn read(out: Output, junit: Option<String>, package: &Utf8PathBuf) -> Ran {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let what = format!("conformance {}", package.file_name().unwrap());
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "{what}: --json prints one object on stdout:\n{stdout}\nstderr:\n{stderr}"
        );
        let envelope: Value = serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {stdout}"));
        Envelope::get()
            .check(&what, &envelope)
            .unwrap_or_else(|e| panic!("{e}"));
        // Progress on stderr: one JSON line per step's start and end.
        for line in stderr.lines().filter(|l| l.starts_with('{')) {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{what}: a progress line is not JSON ({e}): {line}"));
            Envelope::get()
                .check(&what, &v)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        Ran {
            code: out.status.code(),
            envelope,
            junit,
            stderr,
            what,
        }
    }

    pub fn rows(&self) -> &Vec<Value> {
        self.envelope["result"]["rows"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no result.rows: {}", self.what, self.envelope))
    }

    /// The row of `step`; fails the test when there is none.
    pub fn row(&self, step: &str) -> &Value {
        self.rows()
            .iter()
            .find(|r| r["step"] == step)
            .unwrap_or_else(|| panic!("{}: no row `{step}`: {}", self.what, self.envelope))
    }

    pub fn status(&self, step: &str) -> &str {
        self.row(step)["status"].as_str().unwrap()
    }

    /// The steps whose row failed, in order.
    pub fn failed(&self) -> Vec<String> {
        self.rows()
            .iter()
            .filter(|r| r["status"] == "fail")
            .map(|r| r["step"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The kinds of the findings.
    pub fn findings(&self) -> Vec<String> {
        self.envelope["result"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["kind"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The JUnit XML parsed back: each test case's name and whether it has `failure` or
    /// `skipped`.
    pub fn junit_cases(&self) -> Vec<(String, Option<&'static str>)> {
        let text = self
            .junit
            .as_deref()
            .unwrap_or_else(|| panic!("{}: no JUnit file written", self.what));
        let doc = roxmltree::Document::parse(text)
            .unwrap_or_else(|e| panic!("{}: the JUnit XML does not parse: {e}\n{text}", self.what));
        let suite = doc
            .descendants()
            .find(|n| n.has_tag_name("testsuite"))
            .expect("a testsuite");
        let cases: Vec<_> = suite
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .map(|case| {
                let mark = if case.children().any(|c| c.has_tag_name("failure")) {
                    Some("failure")
                } else if case.children().any(|c| c.has_tag_name("skipped")) {
                    Some("skipped")
                } else {
                    None
                };
                (case.attribute("name").unwrap().to_owned(), mark)
            })
            .collect();
        let failures = cases.iter().filter(|(_, m)| *m == Some("failure")).count();
        assert_eq!(
            suite.attribute("failures"),
            Some(failures.to_string().as_str()),
            "{}: the suite's count",
            self.what
        );
        cases
    }

    /// The sandbox was removed: its account is gone and the base holds nothing.
    pub fn left_nothing(&self, host: &Host) {
        let ending = &self.envelope["result"]["sandbox"];
        assert_eq!(ending["ending"], "removed", "{}: {ending}", self.what);
        let name = ending["name"].as_str().unwrap();
        assert!(
            aps_controller::account::Account::lookup(name, None).is_err(),
            "{}: the account {name} is still there",
            self.what
        );
        let left: Vec<String> = host
            .base
            .read_dir_utf8()
            .unwrap()
            .map(|e| e.unwrap().file_name().to_owned())
            .collect();
        assert!(
            left.is_empty(),
            "{}: left in the sandbox base: {left:?}",
            self.what
        );
    }
}
