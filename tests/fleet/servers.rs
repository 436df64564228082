//! One "server" of a fleet: a sandbox state folder whose repository store is in the Garage
//! cluster under its own host name, with instances of the `sh-sample` fixture.

use std::process::Output;

use test_support::garage::GarageEnv;
use test_support::{Sandbox, assert_success, json};

pub const SETTINGS: &str =
    "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\nsite_title = \"Demo\"\n";

pub struct Server {
    pub sb: Sandbox,
    pub host: String,
}

impl Server {
    /// A server named `host` whose repository is `<test prefix><sub>` through `endpoint`;
    /// `retention` is panel.toml's `[retention]` table, `store_extra` more `[store]` keys.
    pub fn new(
        g: &GarageEnv,
        host: &str,
        sub: &str,
        endpoint: &str,
        store_extra: &str,
        retention: &str,
    ) -> Server {
        let sb = Sandbox::new();
        let secret = sb.path("s3-secret");
        std::fs::write(&secret, format!("{}\n", g.secret_key)).unwrap();
        let server = Server {
            sb,
            host: host.to_owned(),
        };
        server.write_panel(g, sub, endpoint, store_extra, retention);
        server
    }

    pub fn write_panel(
        &self,
        g: &GarageEnv,
        sub: &str,
        endpoint: &str,
        store_extra: &str,
        retention: &str,
    ) {
        let store = g.panel_toml(
            sub,
            endpoint,
            &self.sb.path("s3-secret"),
            &format!("host = \"{}\"\n{store_extra}", self.host),
        );
        std::fs::create_dir_all(self.sb.state()).unwrap();
        std::fs::write(
            self.sb.state().join("panel.toml"),
            format!("jobs = 2\n{store}\n[retention]\n{retention}\n"),
        )
        .unwrap();
    }

    /// Registers `site-00` … as instances of `sh-sample` (a web folder of two tiny files
    /// and a backup-script).
    pub fn register(&self, count: usize) {
        for i in 0..count {
            self.sb.register(&site(i), "sh-sample", SETTINGS);
        }
    }

    pub fn init(&self) {
        assert_success(&self.sb.cli(&["store", "init", "--json"]), "store init");
    }

    /// Takes the repository's key and password from `other`: one repository, several servers.
    pub fn share_keys_of(&self, other: &Server) {
        for f in ["repository.key", "repository.password"] {
            std::fs::copy(other.sb.state().join(f), self.sb.state().join(f)).unwrap();
        }
    }

    /// `run --periodicity daily --json`, checked: every instance backed up.
    pub fn run_daily(&self) -> serde_json::Value {
        let out = self.sb.cli(&["run", "--periodicity", "daily", "--json"]);
        let summary = summary(&out);
        assert!(
            out.status.success() && summary["ok"] == true,
            "{}: run failed: {summary}\n{}",
            self.host,
            String::from_utf8_lossy(&out.stderr)
        );
        summary
    }

    /// `store snapshots --json`: (instance, id, bytes read) of this server's snapshots.
    pub fn snapshots(&self) -> Vec<(String, String, u64)> {
        let out = self.sb.cli(&["store", "snapshots", "--json"]);
        assert_success(&out, "store snapshots");
        json(&out)["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["instance"].as_str().unwrap().to_owned(),
                    s["id"].as_str().unwrap().to_owned(),
                    s["bytes_read"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// How many snapshots each of `count` instances has.
    pub fn counts(&self, count: usize) -> Vec<usize> {
        let snaps = self.snapshots();
        (0..count)
            .map(|i| snaps.iter().filter(|s| s.0 == site(i)).count())
            .collect()
    }
}

pub fn site(i: usize) -> String {
    format!("site-{i:02}")
}

/// The `summary` line of `run --json`.
pub fn summary(out: &Output) -> serde_json::Value {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary line: {out:?}"))
}

/// restic's snapshots of a repository: (hostname, tags).
pub fn restic_snapshots(
    g: &GarageEnv,
    sub: &str,
    password: &camino::Utf8Path,
) -> Vec<(String, Vec<String>)> {
    let out = g.restic(sub, password, &["snapshots", "--json"]);
    assert_success(&out, "restic snapshots");
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["hostname"].as_str().unwrap().to_owned(),
                s["tags"]
                    .as_array()
                    .map(|t| t.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// `restic check` passes on the repository.
pub fn restic_check(g: &GarageEnv, sub: &str, password: &camino::Utf8Path) {
    let out = g.restic(sub, password, &["check"]);
    assert_success(&out, &format!("restic check of {sub}"));
}
