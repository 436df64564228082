//! The README's "Quick start (installed binary)" runs as written: its fenced `sh` blocks, in
//! order, under `bash -euxo pipefail`, so that any command of it that fails (a wrong flag, a
//! refused INSTANCE.toml, a restore that does not bring the site back) fails this test. Then
//! the nightly service the quick start installs is run the way systemd would run it.
//!
//! What the test replaces, and nothing else (every other line runs as written):
//!
//! - `cargo install --path . --root /usr/local` → a symlink `<sandbox>/usr/local/bin/aps-controller`
//!   to the binary under test (a real install would rebuild the workspace: minutes);
//! - the absolute paths under `/etc/`, `/run/`, `/srv/`, `/usr/local/` and `/var/` → the same
//!   paths under the sandbox, and the state folder is given by `APS_CONTROLLER_STATE_DIR` (root's default,
//!   `/var/lib/aps-controller`, moved into the sandbox): nothing outside it is written;
//! - `useradd … site1` is not run and `site1` is the existing test account `aps-tenant1`
//!   (scripts/ci/test-user.sh), a real non-root account;
//! - `mariadb -u root` → the test MariaDB server's administrator (/tmp/aps-ci/services.env) and
//!   `port = 3306` → its port;
//! - the name `guestbook` (instance, database, login) → a name of this run, so that runs never
//!   share a database on the test server; the database and its login are dropped at the end;
//! - `systemctl …` is not run (no systemd here): instead the service the quick start copied
//!   runs its `ExecStart=` with only its `Environment=` and systemd's default `PATH`, for the
//!   periodicity the quick start enables, and a backup of that periodicity must appear
//!   (`<sandbox>/etc/systemd/system` is made first, as a machine with systemd has it);
//! - `crontab -u root examples/crontab` is not run (it would replace root's crontab): its entry
//!   for that periodicity runs through `sh` with only the crontab's variables, as cron runs it,
//!   and `/run/` is moved into the sandbox too.

use test_support as support;

use std::process::Command;

use aps_controller::database::DbKind;
use camino::{Utf8Path, Utf8PathBuf};
use test_support::database::{ServerLogin, TestServers};

use support::{Sandbox, assert_success, repo};

const SECTION: &str = "## Quick start (installed binary)";
const INSTALL: &str = "cargo install --path . --root /usr/local";
const ACCOUNT: &str = "site1";
const CRONTAB: &str = "crontab -u root examples/crontab";
const TENANT: &str = "aps-tenant1";
/// systemd's `PATH` for system services.
const SYSTEMD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Folders a real run of the quick start writes to; the test must leave them alone.
const REAL_PLACES: [&str; 3] = [
    "/var/lib/aps-controller",
    "/etc/aps-controller",
    "/etc/systemd/system/aps-controller-backup@.service",
];

/// The fenced `sh` blocks of the quick start section, in order.
fn quick_start_blocks(readme: &str) -> Vec<String> {
    let start = readme
        .find(SECTION)
        .unwrap_or_else(|| panic!("README.md has no `{SECTION}` section"));
    let body = &readme[start + SECTION.len()..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in body.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "unclosed code block in the quick start");
    blocks
}

/// Puts absolute paths under `/etc/`, `/run/`, `/srv/`, `/usr/local/` and `/var/` under `root`, where they
/// start a word (after a space, a quote, `=` or the line's start).
fn into_sandbox(text: &str, root: &Utf8Path) -> String {
    let mut out = String::new();
    let mut prev: Option<char> = None;
    let mut rest = text;
    while let Some(ch) = rest.chars().next() {
        let starts_word = prev.is_none_or(|p| p.is_whitespace() || "\"'=".contains(p));
        if ch == '/'
            && starts_word
            && ["/etc/", "/run/", "/srv/", "/usr/local/", "/var/"]
                .iter()
                .any(|p| rest.starts_with(p))
        {
            out.push_str(root.as_str());
        }
        out.push(ch);
        prev = Some(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

fn mariadb_admin(login: &ServerLogin) -> String {
    format!(
        "mariadb -h {} -P {} -u {} --password={}",
        login.host,
        login.port,
        login.user,
        login.password.expose()
    )
}

/// The quick start as the sandbox runs it (see the module's comment), and the periodicity its
/// `systemctl enable` line names.
fn sandboxed_script(
    blocks: &[String],
    root: &Utf8Path,
    bin: &Utf8Path,
    login: &ServerLogin,
    name: &str,
) -> (String, String) {
    let mut script = String::new();
    let mut periodicity = None;
    let (mut installs, mut accounts, mut admin_logins) = (0, 0, 0);
    for line in blocks.join("").lines() {
        let line = if line == INSTALL {
            installs += 1;
            format!(
                "mkdir -p {root}/usr/local/bin && ln -s {bin} {root}/usr/local/bin/aps-controller"
            )
        } else if line.starts_with("useradd ") {
            assert!(line.ends_with(&format!(" {ACCOUNT}")), "{line}");
            accounts += 1;
            format!(": useradd not run: the site owner is the test account {TENANT}")
        } else if let Some(args) = line.strip_prefix("systemctl ") {
            if let Some(unit) = args.strip_prefix("enable --now aps-controller-backup@") {
                periodicity = unit.strip_suffix(".timer").map(str::to_owned);
            }
            format!(": systemctl not run: {args}")
        } else {
            admin_logins += line.matches("mariadb -u root").count();
            into_sandbox(line, root)
                .replace("mariadb -u root", &mariadb_admin(login))
                .replace("port = 3306", &format!("port = {}", login.port))
                .replace(ACCOUNT, TENANT)
                .replace("guestbook", name)
        };
        script.push_str(&line);
        script.push('\n');
    }
    // Each replacement must have found what it replaces: a quick start that changed would
    // otherwise pass with a step silently gone.
    assert_eq!(installs, 1, "the quick start no longer says `{INSTALL}`");
    assert_eq!(
        accounts, 1,
        "the quick start no longer makes the account {ACCOUNT}"
    );
    assert!(
        admin_logins >= 3,
        "the quick start's `mariadb -u root` lines"
    );
    let periodicity = periodicity.expect("the quick start enables no aps-controller-backup@ timer");
    (script, periodicity)
}

/// Drops the run's database and login, however the test ends.
struct DropDatabase<'a> {
    login: &'a ServerLogin,
    name: String,
}

impl Drop for DropDatabase<'_> {
    fn drop(&mut self) {
        let sql = format!(
            "DROP DATABASE IF EXISTS {0}; DROP USER IF EXISTS '{0}'@'127.0.0.1';",
            self.name
        );
        let _ = Command::new("bash")
            .arg("-c")
            .arg(format!("{} -e \"$1\"", mariadb_admin(self.login)))
            .arg("bash")
            .arg(sql)
            .status();
    }
}

/// Files anywhere under `dir` whose name starts with `prefix`.
fn files_starting(dir: &Utf8Path, prefix: &str) -> Vec<Utf8PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = dir.read_dir_utf8() else {
        return found;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let path = entry.path().to_owned();
        if entry.file_type().unwrap().is_dir() {
            found.extend(files_starting(&path, prefix));
        } else if entry.file_name().starts_with(prefix) {
            found.push(path);
        }
    }
    found
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    let Some(servers) = TestServers::from_env() else {
        return;
    };
    let login = servers.login(DbKind::Mysql).clone();
    let before: Vec<bool> = REAL_PLACES.iter().map(support::exists).collect();

    let sb = Sandbox::for_tenants();
    let root = sb.root();
    // The quick start runs from the checkout: its relative paths (examples/…) resolve there.
    std::os::unix::fs::symlink(repo().join("examples"), root.join("examples")).unwrap();
    // A machine with systemd has this folder.
    std::fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
    let name = format!("qsguest{}", std::process::id());
    let _drop = DropDatabase {
        login: &login,
        name: name.clone(),
    };

    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks = quick_start_blocks(&readme);
    let (script, periodicity) = sandboxed_script(
        &blocks,
        &root,
        Utf8Path::new(env!("CARGO_BIN_EXE_aps-controller")),
        &login,
        &name,
    );
    let script_file = root.join("quick-start.sh");
    std::fs::write(&script_file, &script).unwrap();

    let state = root.join("var/lib/aps-controller");
    let path = format!(
        "{root}/usr/local/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euxo", "pipefail"])
        .arg(script_file.as_str())
        .current_dir(&root)
        .env("PATH", path)
        .env("APS_CONTROLLER_STATE_DIR", state.as_str())
        .output()
        .unwrap();
    assert_success(&out, &format!("the quick start, as run:\n{script}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The `cat` and the `SELECT` after the restore: both came back.
    assert!(stdout.contains("<h1>Guestbook</h1>"), "{stdout}");
    assert!(stdout.contains("first post"), "{stdout}");
    // The instance's files are the site owner's again.
    let index = root.join("srv/www").join(&name).join("index.php");
    let meta = std::fs::symlink_metadata(&index).unwrap();
    let tenant = aps_controller::account::Account::lookup(TENANT, None).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        tenant.uid,
        "{index}"
    );

    // The nightly service, as systemd would start it: the unit file the quick start copied.
    let unit = root.join("etc/systemd/system/aps-controller-backup@.service");
    let unit = std::fs::read_to_string(&unit).unwrap_or_else(|e| panic!("{unit}: {e}"));
    let mut exec = None;
    let mut env = vec![("PATH".to_owned(), SYSTEMD_PATH.to_owned())];
    for line in unit.lines() {
        let line = into_sandbox(&line.replace("%i", &periodicity), &root);
        if let Some(cmd) = line.strip_prefix("ExecStart=") {
            exec = Some(cmd.to_owned());
        } else if let Some(assignment) = line.strip_prefix("Environment=") {
            let (key, value) = assignment.split_once('=').unwrap();
            env.push((key.to_owned(), value.to_owned()));
        }
    }
    let exec = exec.expect("the unit has no ExecStart=");
    let mut words = exec.split_whitespace();
    let out = Command::new(words.next().unwrap())
        .args(words)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .output()
        .unwrap();
    assert_success(&out, &format!("the unit's ExecStart={exec} with {env:?}"));
    let made = files_starting(&state, &format!("{name}_{periodicity}_"));
    assert_eq!(made.len(), 1, "{periodicity} backups in {state}: {made:?}");

    // Without systemd: the crontab the quick start names, its entry for that periodicity run
    // by `sh` with only the crontab's variables, as cron does.
    assert!(readme[readme.find(SECTION).unwrap()..].contains(CRONTAB));
    let crontab = std::fs::read_to_string(repo().join("examples/crontab")).unwrap();
    let mut cron_env = Vec::new();
    let mut entry = None;
    for line in crontab.lines().filter(|l| !l.starts_with('#')) {
        let line = into_sandbox(line, &root);
        if let Some((key, value)) = line.split_once('=').filter(|(k, _)| !k.contains(' ')) {
            cron_env.push((key.to_owned(), value.to_owned()));
        } else if line.contains(&format!("--periodicity {periodicity} ")) {
            // The five time fields, then the command.
            entry = Some(
                line.split_whitespace()
                    .skip(5)
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
    }
    let entry = entry.unwrap_or_else(|| panic!("examples/crontab has no {periodicity} entry"));
    std::fs::create_dir_all(root.join("run")).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(&entry)
        .env_clear()
        .envs(cron_env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .output()
        .unwrap();
    assert_success(&out, &format!("crontab: {entry} with {cron_env:?}"));
    let made = files_starting(&state, &format!("{name}_{periodicity}_"));
    assert_eq!(made.len(), 2, "{periodicity} backups in {state}: {made:?}");

    // Nothing of a real installation was touched.
    for (place, existed) in REAL_PLACES.iter().zip(before) {
        assert_eq!(support::exists(place), existed, "{place}");
    }
    assert!(!support::exists(format!("/srv/www/{name}")));
}
